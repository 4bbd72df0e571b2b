"""Cluster mode: real nodes sharing a real redis-server, users spread over them, one node killed.

The tenant uses HTTP hooks, so one hook server answers every node. Each test makes its own tenant
(through the admin API of node A: node B learns it from Redis).
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from agent_servers import AgentLogic, HttpAgentServer, agent_config, stream, wamp_agent
from autobahn.wamp.exception import ApplicationError
from checks import fill_inbox, sync_pages

from cluster_tenants import ClusterTenant, eventually, online
from harness import ADMIN_SECRET, Node, http_get, http_post_json, start_node, start_redis
from hook_servers import HookLogic, HttpHookServer
from mics.cluster.redis import connect_pool
from mics.config import parse_url
from wamp_clients import JoinRefused, TestSession, admin, sleep, user


@pytest.fixture
def nodes(cluster_nodes: tuple[Node, Node]) -> tuple[Node, Node]:
    return cluster_nodes


@pytest_twisted.async_yield_fixture()
async def tenant(nodes: tuple[Node, Node]) -> AsyncIterator[ClusterTenant]:
    t = await ClusterTenant.create(nodes[0])
    yield t
    await t.close()


@pytest_twisted.ensureDeferred
async def test_a_tenant_upserted_on_one_node_serves_on_the_other(nodes, tenant):
    _a, b = nodes
    bob = await tenant.user(b, "bob")
    assert bob.welcome.authextra["node_id"] == b.node_id
    adm_b = await tenant.admin(b)
    got = await adm_b.call("mics.admin.tenant.get", tenant_id=tenant.tenant_id)
    assert got["config"]["hook_base_url"] == tenant.hooks.base_url.rstrip("/")


@pytest_twisted.ensureDeferred
async def test_one_to_one_across_nodes_with_presence(nodes, tenant):
    a, b = nodes
    alice, bob = await tenant.pair(a, b)
    got = await alice.call("mics.presence.get", user_ids=["bob", "nobody"])
    assert got == {"bob": {"online": True, "devices": ["d1"]}, "nobody": {"online": False, "devices": []}}
    ack = await alice.call("mics.message.send", to_user_id="bob", body={"text": "hi from A"})
    assert ack["delivered"] == "online"
    event = await bob.next_event("mics.inbox.bob")
    assert event["body"] == {"text": "hi from A"} and event["msg_id"] == ack["msg_id"] and event["seq"] == 1
    # and back, the other way
    await bob.call("mics.message.send", to_user_id="alice", body="hi from B")
    assert (await alice.next_event("mics.inbox.alice"))["body"] == "hi from B"
    # the forwarded deliveries and both members show in node B's metrics
    status, metrics = http_get(b.http + "/metrics")
    assert status == 200 and b'mics_cluster_received_total{op="deliver"}' in metrics
    assert await eventually(lambda: _members(b, 2))


@pytest_twisted.ensureDeferred
async def test_devices_of_one_user_on_two_nodes_share_one_inbox(nodes, tenant):
    a, b = nodes
    phone = await tenant.user(a, "alice", "phone")
    laptop = await tenant.user(b, "alice", "laptop")
    assert await eventually(lambda: _devices(phone, "alice", 2))
    ack = await phone.call("mics.message.send", to_user_id="bob", body="while bob is away")
    assert ack["delivered"] == "buffered"
    copy = await laptop.next_event("mics.inbox.alice")
    assert copy["msg_id"] == ack["msg_id"] and copy["seq"] == ack["seq"]
    assert await phone.no_event("mics.inbox.alice")
    # bob comes online on node B and catches up from the shared buffer
    bob = await tenant.user(b, "bob")
    synced = await bob.call("mics.inbox.sync", since_seq=0)
    assert [m["msg_id"] for m in synced["messages"]] == [ack["msg_id"]] and synced["complete"]
    # the laptop's stream (held copies) is the same on both nodes
    on_a = await phone.call("mics.inbox.sync", since_seq=0)
    on_b = await laptop.call("mics.inbox.sync", since_seq=0)
    assert on_a == on_b and on_a["last_seq"] == 1


@pytest_twisted.ensureDeferred
async def test_an_inbox_filled_past_the_frame_cap_on_one_node_syncs_in_pages_on_the_other(nodes):
    """The Redis script cuts each sync page: 30 near-max messages held through node A (15 MiB) reach
    bob on node B, msgpack, every one in order."""
    a, b = nodes
    tenant = await ClusterTenant.create(a, max_payload_bytes=512 * 1024, max_user_message_qps=1000)
    try:
        sent = await fill_inbox(await tenant.user(a, "mallory"), "bob", 30)
        got, pages = await sync_pages(await tenant.user(b, "bob", serializer="msgpack"))
        assert [m["msg_id"] for m in got] == sent and [m["seq"] for m in got] == list(range(1, 31)) and pages == 30
    finally:
        await tenant.close()


async def _devices(session: TestSession, user_id: str, count: int) -> bool:
    got = await session.call("mics.presence.get", user_ids=[user_id])
    return len(got[user_id]["devices"]) == count


@pytest_twisted.ensureDeferred
async def test_group_send_reaches_members_on_every_node(nodes, tenant):
    a, b = nodes
    tenant.logic.groups["g1"] = ["alice", "bob", "carol", "dave"]
    alice = await tenant.user(a, "alice")
    bob = await tenant.user(b, "bob")
    carol = await tenant.user(a, "carol")
    for s in (bob, carol):
        await s.listen("mics.group.g1")
    ack = await alice.call("mics.group.send", group_id="g1", body="hello all")
    assert ack["delivered"] == "online" and ack["recipients"] == 4
    assert (await bob.next_event("mics.group.g1"))["msg_id"] == ack["msg_id"]
    assert (await carol.next_event("mics.group.g1"))["msg_id"] == ack["msg_id"]


@pytest_twisted.ensureDeferred
async def test_group_buffering_holds_for_members_offline_on_every_node(nodes, tenant):
    a, b = nodes
    adm = await tenant.admin(a)
    await adm.call("mics.admin.tenant.upsert", tenant_id=tenant.tenant_id, config={"group_buffering": True})
    tenant.logic.groups["g3"] = ["alice", "bob", "carol"]
    alice, bob = await tenant.pair(a, b)
    ack = await alice.call("mics.group.send", group_id="g3", body="for everyone")
    assert ack["delivered"] == "online"
    carol = await tenant.user(b, "carol")
    held = await carol.call("mics.inbox.sync", since_seq=0)
    assert [m["msg_id"] for m in held["messages"]] == [ack["msg_id"]] and held["complete"]
    assert (await bob.call("mics.inbox.sync", since_seq=0))["messages"] == []  # bob was online


@pytest_twisted.ensureDeferred
async def test_a_group_whose_only_online_member_is_on_another_node_counts_as_online(nodes, tenant):
    a, b = nodes
    tenant.logic.groups["g2"] = ["alice", "bob"]
    alice, bob = await tenant.pair(a, b)
    await bob.listen("mics.group.g2")
    ack = await alice.call("mics.group.send", group_id="g2", body="x")
    assert ack["delivered"] == "online"
    assert (await bob.next_event("mics.group.g2"))["body"] == "x"


@pytest_twisted.ensureDeferred
async def test_backend_lists_and_kicks_sessions_on_another_node(nodes, tenant):
    a, b = nodes
    bob = await tenant.user(b, "bob")
    be = await tenant.backend(a)
    assert await online(await tenant.user(a, "alice"), "bob")
    listed = await be.call("mics.session.list", user_id="bob")
    assert [(s["user_id"], s["device_id"], s["node_id"]) for s in listed["sessions"]] == [("bob", "d1", b.node_id)]
    assert await be.call("mics.session.kick", user_id="bob") == {"kicked": 1}
    details = await bob.left
    assert details.reason == "mics.close.kicked"


@pytest_twisted.ensureDeferred
async def test_admin_sees_every_node_and_disabling_a_tenant_closes_its_sessions_everywhere(nodes, tenant):
    a, b = nodes
    alice, bob = await tenant.pair(a, b)
    adm = await tenant.admin(a)
    listed = await adm.call("mics.admin.session.list", tenant_id=tenant.tenant_id)
    assert sorted((s["user_id"], s["node_id"]) for s in listed["sessions"]) == [
        ("alice", a.node_id),
        ("bob", b.node_id),
    ]
    await adm.call("mics.admin.tenant.disable", tenant_id=tenant.tenant_id)
    for session in (alice, bob):
        assert (await session.left).reason == "mics.close.tenant_disabled"


@pytest_twisted.ensureDeferred
async def test_a_node_finds_a_tenant_in_redis_that_it_was_not_told_about(nodes, redis_url):
    """A join may overtake the upsert's broadcast: the node looks the tenant up in Redis."""
    _a, b = nodes
    pool = connect_pool(parse_url(redis_url), size=1)
    tenant_id = f"quiet{os.getpid() % 10000}"
    secret = f"secret-{tenant_id}-0123456789"
    logic = HookLogic()
    hooks = HttpHookServer(secret, logic, "json")
    try:
        config = {"secret": secret, "hook_transport": "http", "hook_base_url": hooks.base_url}
        await pool.hset("mics:tenants", tenant_id, json.dumps(config))  # as another node's upsert would
        carol = await user(b.url, tenant_id, "tok-carol", "d1")
        assert carol.welcome.authid == "carol"
        await carol.close()
        with pytest.raises(JoinRefused) as refused:
            await user(b.url, "nosuchtenant", "tok-carol", "d1")
        assert refused.value.reason == "mics.error.invalid_tenant"
    finally:
        await hooks.stop()
        await pool.disconnect()


@pytest_twisted.ensureDeferred
async def test_auth_hook_overrides_stay_on_their_node_and_out_of_redis(nodes, tenant):
    a, b = nodes
    tenant.logic.auth_config = {"heartbeat_timeout_s": 77}
    alice = await tenant.user(a, "alice")
    assert alice.welcome.authextra["heartbeat_timeout_s"] == 77
    adm_a, adm_b = await tenant.admin(a), await tenant.admin(b)
    await adm_a.call("mics.admin.tenant.upsert", tenant_id=tenant.tenant_id, config={"max_payload_bytes": 4096})

    async def both_updated() -> bool:
        got = [await adm.call("mics.admin.tenant.get", tenant_id=tenant.tenant_id) for adm in (adm_a, adm_b)]
        return all(g["config"]["max_payload_bytes"] == 4096 for g in got)

    assert await eventually(both_updated)
    for adm in (adm_a, adm_b):  # the upsert starts from the admin config, not from A's overrides
        got = await adm.call("mics.admin.tenant.get", tenant_id=tenant.tenant_id)
        assert got["config"]["heartbeat_timeout_s"] == 30


@pytest_twisted.ensureDeferred
async def test_the_same_device_joining_another_node_replaces_its_older_session(nodes, tenant):
    a, b = nodes
    watcher = await tenant.user(a, "watcher")
    old = await tenant.user(a, "bob", "phone")
    assert await online(watcher, "bob")
    new = await tenant.user(b, "bob", "phone")
    assert (await old.left).reason == "mics.close.replaced"
    await sleep(0.3)  # the old session's leave must not take the new one's presence with it
    got = await watcher.call("mics.presence.get", user_ids=["bob"])
    assert got["bob"] == {"online": True, "devices": ["phone"]}
    listed = await (await tenant.backend(a)).call("mics.session.list", user_id="bob")
    assert [(s["node_id"], s["session_id"]) for s in listed["sessions"]] == [(b.node_id, new.session_id)]


@pytest_twisted.ensureDeferred
async def test_a_device_that_moves_to_another_node_stays_online(nodes, tenant):
    a, b = nodes
    watcher = await tenant.user(a, "watcher")
    first = await tenant.user(a, "bob")
    assert await online(watcher, "bob")
    await first.close()
    await tenant.user(b, "bob")
    await sleep(0.3)  # the old session's leave must not remove the new session's presence
    listed = await watcher.call("mics.presence.get", user_ids=["bob"])
    assert listed["bob"]["online"]


@pytest_twisted.ensureDeferred
async def test_sigkilled_node_is_reaped_and_its_users_go_offline(nodes, tenant, tmp_path, redis_url):
    a, b = nodes
    doomed = start_node(tmp_path, "cdoomed", env={"MICS_REDIS_URL": redis_url})
    try:
        alice = await tenant.user(a, "alice")
        await alice.listen("mics.presence.bob")  # and on node B, watching bob live
        carol = await tenant.user(b, "carol")
        await carol.listen("mics.presence.bob")
        await tenant.user(doomed, "bob")
        assert await online(alice, "bob")
        for watcher in (alice, carol):
            assert (await watcher.next_event("mics.presence.bob"))["online"]
        os.killpg(doomed.process.proc.pid, signal.SIGKILL)
        doomed.process.proc.wait(5)
        for watcher in (alice, carol):  # the reaper told every node that watches bob
            gone = await watcher.next_event("mics.presence.bob", timeout=15)
            assert (gone["user_id"], gone["online"], gone["devices"]) == ("bob", False, [])
        assert await eventually(lambda: _offline(alice, "bob"), timeout=15)
        ack = await alice.call("mics.message.send", to_user_id="bob", body="are you there?")
        assert ack["delivered"] == "buffered"

        # whichever live node reaped the dead one reported bob's sessions offline
        async def lost() -> list[tuple[str, str, str]]:
            found = [e for n in (a, b) for e in _events(n.data_dir, tenant.tenant_id)]
            offline = [e for e in found if e["event_type"] == "CONNECT_OFFLINE"]
            return [(e["user_id"], e["event_data"]["reason"], e["node_id"]) for e in offline]

        assert await eventually(lost) == [("bob", "node_lost", doomed.node_id)]
        # bob comes back on node A and finds the message
        bob = await tenant.user(a, "bob")
        synced = await bob.call("mics.inbox.sync", since_seq=0)
        assert [m["body"] for m in synced["messages"]] == ["are you there?"]
    finally:
        doomed.process.stop()


@pytest_twisted.ensureDeferred
async def test_while_redis_is_down_sends_fail_clearly_and_recover_after(tmp_path):
    """Redis restarts empty (no persistence): sends fail with mics.error.unavailable meanwhile, and
    afterwards the node writes its sessions' presence again."""
    redis, url = start_redis(tmp_path)
    node = start_node(tmp_path, "cout", env={"MICS_REDIS_URL": url})
    logic = HookLogic()
    hooks = HttpHookServer("secret-outage-0123456789", logic, "json")
    sessions: list[TestSession] = []
    try:
        adm = await admin(node.url, ADMIN_SECRET)
        sessions.append(adm)
        config = {"secret": "secret-outage-0123456789", "hook_transport": "http", "hook_base_url": hooks.base_url}
        await adm.call("mics.admin.tenant.upsert", tenant_id="outage", config=config)
        alice = await user(node.url, "outage", "tok-alice", "d1")
        bob = await user(node.url, "outage", "tok-bob", "d1")
        sessions += [alice, bob]
        await bob.listen("mics.inbox.bob")
        assert (await alice.call("mics.message.send", to_user_id="bob", body="1"))["delivered"] == "online"
        port = int(url.rsplit(":", 1)[1].split("/")[0])
        redis.stop()
        with pytest.raises(ApplicationError) as failed:
            await alice.call("mics.message.send", to_user_id="bob", body="2", client_msg_id="c2")
        assert failed.value.error == "mics.error.unavailable"
        assert failed.value.kwargs["client_msg_id"] == "c2" and failed.value.kwargs["code"] == 503
        with pytest.raises(ApplicationError) as refused:  # nothing changes anywhere
            await adm.call("mics.admin.tenant.upsert", tenant_id="outage", config={"max_payload_bytes": 1000})
        assert refused.value.error == "mics.error.unavailable"
        got = await adm.call("mics.admin.tenant.get", tenant_id="outage")
        assert got["config"]["max_payload_bytes"] == 65536
        redis, _ = start_redis(tmp_path, port)  # same address, empty

        async def sent_online() -> bool:
            try:
                ack = await alice.call("mics.message.send", to_user_id="bob", body="3")
            except ApplicationError:
                return False
            return bool(ack["delivered"] == "online")  # bob's presence is back

        assert await eventually(sent_online, timeout=20)
        assert (await bob.next_event("mics.inbox.bob"))["body"] == "1"
        assert (await bob.next_event("mics.inbox.bob"))["body"] == "3"
    finally:
        for session in reversed(sessions):
            await session.close()
        await hooks.stop()
        node.process.stop()
        redis.stop()


# -- section 11 across nodes ---------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_a_message_sent_on_one_node_is_recalled_from_the_senders_device_on_another(nodes, tenant):
    a, b = nodes
    phone = await tenant.user(a, "alice", "phone")
    laptop = await tenant.user(b, "alice", "laptop")
    bob = await tenant.user(a, "bob")
    assert await eventually(lambda: _devices(phone, "alice", 2))
    sent = await phone.call("mics.message.send", to_user_id="bob", body="sent from A")
    assert (await bob.next_event("mics.inbox.bob"))["msg_id"] == sent["msg_id"]
    await laptop.next_event("mics.inbox.alice")
    mallory = await tenant.user(b, "mallory")
    with pytest.raises(ApplicationError) as foreign:
        await mallory.call("mics.message.recall", msg_id=sent["msg_id"])
    assert foreign.value.error == "mics.error.rejected"
    ack = await laptop.call("mics.message.recall", msg_id=sent["msg_id"])  # node B knows who sent it
    notice = await bob.next_event("mics.inbox.bob")
    assert (notice["type"], notice["ref_msg_id"], notice["msg_id"]) == ("recall", sent["msg_id"], ack["msg_id"])
    assert (await phone.next_event("mics.inbox.alice"))["type"] == "recall"
    for session in (bob, phone, laptop):  # the held copies are tombstones, whichever node syncs
        synced = (await session.call("mics.inbox.sync", since_seq=0))["messages"]
        assert synced[0]["msg_id"] == sent["msg_id"] and synced[0]["body"] is None and synced[0]["recalled"]
    with pytest.raises(ApplicationError) as again:
        await phone.call("mics.message.edit", msg_id=sent["msg_id"], body="back")
    assert again.value.error == "mics.error.not_found"


@pytest_twisted.ensureDeferred
async def test_an_agent_called_on_one_node_streams_to_the_conversations_devices_on_every_node(nodes, tenant):
    """An HTTP agent (reachable from any node) called from node B, and a WAMP agent whose backend is on
    node A: the chunks and the final message reach devices on both nodes."""
    a, b = nodes
    http = HttpAgentServer(tenant.secret, {"helper": AgentLogic()})
    try:
        scribe = await wamp_agent(a.url, tenant.tenant_id, tenant.secret, {"scribe": AgentLogic()})
        tenant.sessions.append(scribe)
        adm = await tenant.admin(a)
        agents = [agent_config("helper", "http", http), agent_config("scribe", "wamp")]
        await adm.call("mics.admin.tenant.upsert", tenant_id=tenant.tenant_id, config={"agents": agents})
        phone = await tenant.user(a, "alice", "phone")
        laptop = await tenant.user(b, "alice", "laptop")
        bob = await tenant.user(a, "bob")
        assert await eventually(lambda: _devices(phone, "alice", 2))
        ack = await laptop.call("mics.message.send", to_user_id="helper", body={"text": "from node B"})
        stream_id = ack["agents"][0]["stream_id"]
        for session in (phone, laptop):
            chunks, final = await stream(session, "mics.inbox.alice", stream_id)
            assert [c["chunk_seq"] for c in chunks] == [1, 2, 3] and final["type"] == "chat"
        tenant.logic.groups["team"] = ["alice", "bob"]
        await laptop.listen("mics.group.team")
        ack = await bob.call("mics.group.send", group_id="team", body={"text": "@scribe note"}, mentions=["scribe"])
        chunks, final = await stream(laptop, "mics.group.team", ack["agents"][0]["stream_id"])
        assert [c["chunk_seq"] for c in chunks] == [1, 2] and final["type"] == "group_chat"
        assert final["reply_to"] == ack["msg_id"] and final["from_user_id"] == "scribe"
    finally:
        await http.stop()


@pytest_twisted.ensureDeferred
async def test_a_watcher_on_one_node_hears_presence_changes_made_on_another(nodes, tenant):
    a, b = nodes
    carol = await tenant.user(b, "carol")
    await carol.listen("mics.presence.alice")
    await sleep(0.3)  # node B's watch reaches Redis (a watcher fetches the state once with mics.presence.get)
    phone = await tenant.user(a, "alice", "phone")
    assert (await carol.next_event("mics.presence.alice"))["devices"] == ["phone"]
    laptop = await tenant.user(b, "alice", "laptop")
    assert (await carol.next_event("mics.presence.alice"))["devices"] == ["laptop", "phone"]
    await phone.close()
    assert (await carol.next_event("mics.presence.alice"))["devices"] == ["laptop"]
    await laptop.close()
    last = await carol.next_event("mics.presence.alice")
    assert (last["online"], last["devices"]) == (False, [])
    assert await carol.no_event("mics.presence.alice")


@pytest_twisted.ensureDeferred
async def test_push_triggers_collapse_across_nodes_and_wait_for_a_user_back_on_any_node(nodes, tenant):
    a, b = nodes
    adm = await tenant.admin(a)
    await adm.call("mics.admin.tenant.upsert", tenant_id=tenant.tenant_id, config={"event_sinks": ["file"]})
    on_a, on_b = await tenant.user(a, "alice", "phone"), await tenant.user(b, "alice", "laptop")
    first = await on_a.call("mics.message.send", to_user_id="bob", body="from A")
    await on_b.call("mics.message.send", to_user_id="bob", body="from B, collapsed")

    async def pushes() -> list[tuple[str, str]]:
        found = [e for n in (a, b) for e in _events(n.data_dir, tenant.tenant_id)]
        return [(e["user_id"], e["msg_id"]) for e in found if e["event_type"] == "OFFLINE_PUSH"]

    assert await eventually(pushes) == [("bob", first["msg_id"])]
    await sleep(0.5)
    assert await pushes() == [("bob", first["msg_id"])], "one per conversation across both nodes"
    await adm.call("mics.admin.tenant.upsert", tenant_id=tenant.tenant_id, config={"push_delay_s": 2})
    adm_b = await tenant.admin(b)
    await eventually(lambda: _config_on(adm_b, tenant, "push_delay_s", 2))
    await on_a.call("mics.message.send", to_user_id="carol", body="carol comes back on B")
    await tenant.user(b, "carol")
    await sleep(2.5)
    assert [p for p in await pushes() if p[0] == "carol"] == [], "carol came back in time (on another node)"


async def _config_on(adm: TestSession, tenant: ClusterTenant, field: str, value: Any) -> bool:
    got = await adm.call("mics.admin.tenant.get", tenant_id=tenant.tenant_id)
    return bool(got["config"][field] == value)


async def _members(node: Node, count: int) -> bool:
    _status, metrics = http_get(node.http + "/metrics")
    return f"mics_cluster_members {float(count)}".encode() in metrics


async def _offline(session: TestSession, user_id: str) -> bool:
    got = await session.call("mics.presence.get", user_ids=[user_id])
    return not got[user_id]["online"]


def _events(data_dir: Path, tenant_id: str) -> list[dict[str, Any]]:
    path = data_dir / "events" / f"{tenant_id}.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest_twisted.ensureDeferred
async def test_a_node_with_two_router_workers_spreads_users_and_acts_as_one(tmp_path, redis_url):
    """MICS_ROUTER_WORKERS=2: two router workers on one port (SO_REUSEPORT), each a cluster member."""
    node = start_node(tmp_path, "multi", env={"MICS_REDIS_URL": redis_url, "MICS_ROUTER_WORKERS": "2"})
    workers = {f"{node.node_id}-w1", f"{node.node_id}-w2"}
    # Crossbar starts the workers one after the other: /ready answered by one says nothing of the other
    answered: set[str] = set()
    deadline = time.monotonic() + 30
    while answered != workers and time.monotonic() < deadline:
        status, body = http_get(node.http + "/health", 0.5)
        if status == 200:
            answered.add(json.loads(body)["node_id"])
        await sleep(0.05)
    assert answered == workers
    secret = "secret-multi-0123456789"
    hooks = HttpHookServer(secret, HookLogic(), "json")
    sessions: list[TestSession] = []
    try:
        adm = await admin(node.url, ADMIN_SECRET)
        sessions.append(adm)
        config = {"secret": secret, "hook_transport": "http", "hook_base_url": hooks.base_url}
        await adm.call("mics.admin.tenant.upsert", tenant_id="multi", config=config)
        users: list[TestSession] = []
        while {u.welcome.authextra["node_id"] for u in users} != workers:
            assert len(users) < 40, "the kernel put every connection on one worker"
            users.append(await user(node.url, "multi", f"tok-u{len(users)}", "d1"))
            await users[-1].listen(f"mics.inbox.u{len(users) - 1}")
        sessions += users
        for i, sender in enumerate(users):  # every user writes to the next, across workers or not
            await sender.call("mics.message.send", to_user_id=f"u{(i + 1) % len(users)}", body=f"from u{i}")
        for i, receiver in enumerate(users):
            got = await receiver.next_event(f"mics.inbox.u{i}")
            assert got["body"] == f"from u{(i - 1) % len(users)}"
    finally:
        for session in reversed(sessions):
            await session.close()
        await hooks.stop()
        node.process.stop()


@pytest_twisted.ensureDeferred
async def test_the_backend_http_api_of_any_node_reaches_users_on_every_node_and_refuses_replays_cluster_wide(
    nodes, tenant
):
    from twisted.internet.threads import deferToThread

    from mics_client.hooks.client import MicsHttpClient
    from mics_client.signing import sign_headers

    a, b = nodes
    bob = await tenant.user(a, "bob")
    alice_on_a = await tenant.user(a, "alice")
    assert await online(alice_on_a, "bob")
    via_b = MicsHttpClient(b.http, tenant.tenant_id, tenant.secret)
    ack = await deferToThread(via_b.send, "bob", {"text": "from a web service"}, "shop")
    message = await bob.next_event("mics.inbox.bob")
    assert message["msg_id"] == ack["msg_id"] and ack["delivered"] == "online" and message["type"] == "system"
    assert await deferToThread(via_b.kick, "alice") == 1, "a kick through node B ends a session on node A"
    body = b"{}"
    headers = sign_headers(tenant.tenant_id, tenant.secret, body)
    path = f"/api/v1/{tenant.tenant_id}/sessions"
    assert (await deferToThread(http_post_json, a.http + path, body, headers))[0] == 200
    status, answer = await deferToThread(http_post_json, b.http + path, body, headers)
    assert (status, answer["error"]) == (401, "mics.error.bad_signature"), "replayed on another node"
