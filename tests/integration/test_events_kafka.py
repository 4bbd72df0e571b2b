"""Events to Kafka end to end: a real node produces to a real Kafka-protocol broker (Tansu).

Records are read back with confluent-kafka, decoded with the generated protos, their signature
checked with the tenant secret; a broker outage sends events through retries to the dead-letter
spool, and admins re-push them once the broker is back.
"""

from __future__ import annotations

import base64
import json
import os
import sys
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from checks import RUN_COUNTS
from integration.conftest import TenantFactory, run_mics
from kafka_broker import KafkaBroker
from twisted.internet.utils import getProcessOutputAndValue

from harness import ROOT, Node, free_port, http_get, start_node
from mics.events import encode
from wamp_clients import sleep

PARTITIONS = 3


@pytest.fixture(scope="module")
def kafka_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaBroker]:
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka"))
    broker.start()
    yield broker
    broker.stop()


@pytest.fixture(scope="module")
def kafka_node(tmp_path_factory: pytest.TempPathFactory, kafka_broker: KafkaBroker) -> Iterator[Node]:
    """A node of its own whose tenants default to the Kafka sink; short timeouts so outages show fast."""
    node = start_node(
        tmp_path_factory.mktemp("kafkanode"),
        "kafkanode",
        node={"kafka_bootstrap": kafka_broker.bootstrap, "kafka_partitions": PARTITIONS},
        env={"MICS_KAFKA_MESSAGE_TIMEOUT_MS": "1500", "MICS_KAFKA_RETRY_BACKOFF_MS": "100"},
    )
    yield node
    node.process.stop()


@pytest_twisted.async_yield_fixture()
async def make_kafka_tenant(kafka_node: Node) -> AsyncIterator[TenantFactory]:
    factory = TenantFactory(kafka_node)
    yield factory
    await factory.close()


def decoded(record: Any, secret: str) -> dict[str, Any]:
    """A consumed record as its MqEvent dict, after checking headers and signature as a tenant would."""
    headers = dict(record.headers())
    assert encode.verify(secret, record.value(), headers["x-mics-signature"])
    event = encode.decode(record.value())
    assert headers["x-mics-tenant"].decode() == event["tenant_id"]
    assert headers["x-mics-event-type"].decode() == event["event_type"]
    event["_key"] = record.key().decode()
    return event


def metric(node: Node, tenant_id: str, outcome: str) -> float:
    _, body = http_get(f"{node.http}/metrics")
    wanted = f'mics_events_total{{outcome="{outcome}",sink="kafka",tenant="{tenant_id}"}}'
    for line in body.decode().splitlines():
        if line.startswith(wanted):
            return float(line.split()[-1])
    return 0.0


@pytest_twisted.ensureDeferred
async def test_joins_sends_member_changes_and_leaves_reach_the_tenant_topic_signed_and_keyed(
    make_kafka_tenant, kafka_broker, kafka_node
):
    tenant = await make_kafka_tenant()
    tenant.logic.groups["team"] = ["alice", "bob"]
    alice = await tenant.user("alice", "phone")
    bob = await tenant.user("bob", "laptop")
    single = await alice.call("mics.message.send", to_user_id="bob", body={"text": "hi bob"})
    group = await alice.call("mics.group.send", group_id="team", body="hi team")
    ops = await tenant.backend("backend-ops")
    await ops.call("mics.group.members_changed", group_id="team", added=["carol"], removed=["bob"])
    await bob.close()

    consumer = kafka_broker.consumer(encode.topic(tenant.tenant_id))
    records = await consumer.take(6)
    consumer.close()
    events = [decoded(r, tenant.secret) for r in records]
    by_type: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        by_type.setdefault(event["event_type"], []).append(event)

    assert kafka_broker.partitions(encode.topic(tenant.tenant_id)) == PARTITIONS
    assert all(e["tenant_id"] == tenant.tenant_id and e["node_id"] == kafka_node.node_id for e in events)
    online = sorted(by_type["CONNECT_ONLINE"], key=lambda e: e["user_id"])
    assert [(e["user_id"], e["device_id"], e["_key"]) for e in online] == [
        ("alice", "phone", "alice"),
        ("bob", "laptop", "bob"),
    ]
    assert online[0]["event_data"]["node_id"] == kafka_node.node_id and online[0]["event_data"]["session_id"] > 0
    [offline] = by_type["CONNECT_OFFLINE"]
    assert (offline["user_id"], offline["device_id"], offline["_key"]) == ("bob", "laptop", "bob")
    assert offline["event_data"]["session_id"] == online[1]["event_data"]["session_id"]

    [chat] = by_type["SINGLE_CHAT_MSG"]
    assert (chat["msg_id"], chat["user_id"], chat["device_id"]) == (single["msg_id"], "alice", "phone")
    assert (chat["to_user_id"], chat["_key"], chat["timestamp"]) == ("bob", "bob", single["ts"])
    assert chat["event_data"]["msg_id"] == single["msg_id"] and chat["event_data"]["body"] == {"text": "hi bob"}
    [team] = by_type["GROUP_CHAT_MSG"]
    assert (team["msg_id"], team["group_id"], team["_key"]) == (group["msg_id"], "team", "team")
    assert team["event_data"]["body"] == "hi team" and team["event_data"]["group_id"] == "team"
    [change] = by_type["GROUP_MEMBER_CHANGE"]
    assert (change["group_id"], change["_key"]) == ("team", "team")
    assert change["event_data"] == {"group_id": "team", "added": ["carol"], "removed": ["bob"]}


async def alice_with_a_working_sink(make_kafka_tenant: Any, kafka_broker: KafkaBroker) -> tuple[Any, Any]:
    """A new tenant and its user alice, once alice's CONNECT_ONLINE is in Kafka (topic made, sink works)."""
    tenant = await make_kafka_tenant()
    alice = await tenant.user("alice")
    consumer = kafka_broker.consumer(encode.topic(tenant.tenant_id))
    await consumer.take(1)
    consumer.close()
    return tenant, alice


async def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    """Poll `predicate` (an async callable) until true; fails after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not await predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        await sleep(0.1)


async def mics_cli(node: Node, *args: str) -> tuple[int, dict[str, Any]]:
    run = await run_mics(*args, "--json", "--url", node.url)
    assert run.code == 0, run.err
    return run.code, json.loads(run.out)


@pytest_twisted.ensureDeferred
async def test_events_during_a_broker_outage_are_retried_dead_lettered_and_repushed_when_it_is_back(
    make_kafka_tenant, kafka_broker, kafka_node
):
    tenant, alice = await alice_with_a_working_sink(make_kafka_tenant, kafka_broker)

    kafka_broker.stop()
    try:
        acks = [await alice.call("mics.message.send", to_user_id="bob", body={"n": n}) for n in (1, 2)]
        assert all(ack["status"] == "SENT" for ack in acks)  # the outage never slows or fails a send

        async def two_dead_letters() -> bool:
            listing = await tenant.admin.call("mics.admin.dlq.list", tenant_id=tenant.tenant_id)
            return bool(listing["total"] == 2)

        await wait_for(two_dead_letters)
        listing = await tenant.admin.call("mics.admin.dlq.list", tenant_id=tenant.tenant_id, limit=1)
        _, from_cli = await mics_cli(kafka_node, "dlq", "list", tenant.tenant_id)
        as_table = await run_mics("dlq", "list", tenant.tenant_id, "--url", kafka_node.url)
        during = http_get(f"{kafka_node.http}/ready")
    finally:
        kafka_broker.start()

    [first] = listing["dead_letters"]
    assert listing["total"] == 2 and first["attempts"] == 4 and first["key"] == "bob"
    assert first["event_type"] == "SINGLE_CHAT_MSG" and first["event"]["msg_id"] == acks[0]["msg_id"]
    assert first["event"]["event_data"]["body"] == {"n": 1}
    assert [d["event"]["msg_id"] for d in from_cli["dead_letters"]] == [a["msg_id"] for a in acks]
    header, *rows, summary = as_table.out.splitlines()
    assert header.split() == ["ID", "FAILED_AT", "EVENT_TYPE", "KEY", "ATTEMPTS", "ERROR"]
    assert [r.split()[2:5] for r in rows] == [["SINGLE_CHAT_MSG", "bob", "4"]] * 2
    assert summary == "2 dead letters held, 0 dropped"
    assert metric(kafka_node, tenant.tenant_id, "retry") == 6 and metric(kafka_node, tenant.tenant_id, "dead") == 2
    spool = kafka_node.data_dir / "dlq" / f"{tenant.tenant_id}.jsonl"
    assert len(spool.read_bytes().splitlines()) == 2

    repushed = await run_mics("dlq", "repush", tenant.tenant_id, "--url", kafka_node.url)
    assert (repushed.code, repushed.out) == (0, "re-pushed 2 dead letters\n")
    consumer = kafka_broker.consumer(encode.topic(tenant.tenant_id))  # the in-memory broker restarted empty
    records = await consumer.take(2)
    consumer.close()
    events = sorted((decoded(r, tenant.secret) for r in records), key=lambda e: e["event_data"]["body"]["n"])
    assert [e["msg_id"] for e in events] == [a["msg_id"] for a in acks]
    assert (await tenant.admin.call("mics.admin.dlq.list", tenant_id=tenant.tenant_id))["total"] == 0
    assert metric(kafka_node, tenant.tenant_id, "repushed") == 2
    assert during[0] == 200 and json.loads(during[1])["kafka"] == "down", "reported, not fatal: events are spooled"
    assert json.loads(http_get(f"{kafka_node.http}/ready")[1])["kafka"] == "up"


@pytest_twisted.ensureDeferred
async def test_repush_needs_a_kafka_sink_and_a_valid_limit(make_kafka_tenant):
    tenant = await make_kafka_tenant(event_sinks=["file"])
    with pytest.raises(ApplicationError) as no_sink:
        await tenant.admin.call("mics.admin.dlq.repush", tenant_id=tenant.tenant_id)
    assert no_sink.value.error == "mics.error.invalid_config"
    with pytest.raises(ApplicationError) as bad_limit:
        await tenant.admin.call("mics.admin.dlq.list", tenant_id=tenant.tenant_id, limit=0)
    assert bad_limit.value.error == "mics.error.invalid_message"
    listing = await tenant.admin.call("mics.admin.dlq.list", tenant_id=tenant.tenant_id)
    assert listing == {"dead_letters": [], "total": 0, "dropped": 0}


@pytest_twisted.ensureDeferred
async def test_events_still_undelivered_when_the_node_stops_go_to_the_dead_letter_spool(tmp_path):
    unreachable = f"127.0.0.1:{free_port()}"  # nothing listens: the topic can never be created
    node = start_node(tmp_path, "stopping", node={"kafka_bootstrap": unreachable})
    factory = TenantFactory(node)
    try:
        tenant = await factory()
        alice = await tenant.user("alice")
        ack = await alice.call("mics.message.send", to_user_id="bob", body="never reached kafka")
        await factory.close()
    finally:
        node.process.stop()

    spool = node.data_dir / "dlq" / f"{tenant.tenant_id}.jsonl"
    letters = [json.loads(line) for line in spool.read_bytes().splitlines()]
    by_type = {letter["event_type"]: letter for letter in letters}
    assert by_type["SINGLE_CHAT_MSG"]["error"].startswith("node shut")
    assert encode.decode(base64.b64decode(by_type["SINGLE_CHAT_MSG"]["value"]))["msg_id"] == ack["msg_id"]
    assert by_type["CONNECT_ONLINE"]["key"] == "alice"


@pytest_twisted.ensureDeferred
async def test_the_example_consumer_verifies_and_prints_a_tenants_events(make_kafka_tenant, kafka_broker):
    tenant = await make_kafka_tenant()
    alice = await tenant.user("alice")
    ack = await alice.call("mics.message.send", to_user_id="bob", body={"text": "for the example"})
    example = str(ROOT / "examples" / "kafka_consumer.py")
    args = [example, "--bootstrap", kafka_broker.bootstrap, "--tenant", tenant.tenant_id, "--secret", tenant.secret,
            "--from-beginning", "--count", "2", "--group", f"example-{tenant.tenant_id}"]  # fmt: skip
    out, err, code = await getProcessOutputAndValue(sys.executable, args, env=dict(os.environ))

    assert code == 0, err.decode()
    printed = sorted((json.loads(line) for line in out.splitlines()), key=lambda e: e["event_type"])
    assert [e["event_type"] for e in printed] == ["CONNECT_ONLINE", "SINGLE_CHAT_MSG"]
    assert printed[1]["msg_id"] == ack["msg_id"] and printed[1]["event_data"]["body"] == {"text": "for the example"}


@pytest_twisted.ensureDeferred
async def test_events_of_a_short_broker_outage_are_delivered_later_or_dead_lettered_none_silently_lost(
    make_kafka_tenant, kafka_broker, kafka_node
):
    tenant, alice = await alice_with_a_working_sink(make_kafka_tenant, kafka_broker)
    ok, dead = metric(kafka_node, tenant.tenant_id, "ok"), metric(kafka_node, tenant.tenant_id, "dead")

    kafka_broker.stop()
    try:
        acks = [await alice.call("mics.message.send", to_user_id="bob", body={"n": n}) for n in range(10)]
        await sleep(1.0)
    finally:
        kafka_broker.start()  # back, empty (in memory): the sink creates the topic again

    async def settled() -> bool:
        done = metric(kafka_node, tenant.tenant_id, "ok") - ok + metric(kafka_node, tenant.tenant_id, "dead") - dead
        return done >= len(acks)

    await wait_for(settled)
    delivered_count = int(metric(kafka_node, tenant.tenant_id, "ok") - ok)
    consumer = kafka_broker.consumer(encode.topic(tenant.tenant_id))
    delivered = [decoded(r, tenant.secret)["msg_id"] for r in await consumer.take(delivered_count)]
    consumer.close()
    listing = await tenant.admin.call("mics.admin.dlq.list", tenant_id=tenant.tenant_id)
    spooled = [d["event"]["msg_id"] for d in listing["dead_letters"]]

    counts = RUN_COUNTS["faults"]
    counts["kafka outages"] += 1
    counts["kafka events delivered late"] += len(delivered)
    counts["kafka events dead-lettered"] += len(spooled)
    counts["messages checked"] += len(acks)
    counts["lost"] += len({a["msg_id"] for a in acks} - set(delivered) - set(spooled))
    assert sorted(delivered + spooled) == sorted(a["msg_id"] for a in acks), "each event delivered or spooled, once"
    assert metric(kafka_node, tenant.tenant_id, "dead") - dead == len(spooled)
