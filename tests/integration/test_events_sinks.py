"""The file and WAMP event sinks end to end, alone and together (tenant `event_sinks`)."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest_twisted
from checks import in_thread, metric
from raw_ws import open_websocket

from wamp_clients import sleep


def read_lines(path: Path) -> list[bytes]:
    try:
        with open(path, "rb") as f:
            return f.read().splitlines()
    except FileNotFoundError:
        return []


async def file_events(path: Path, count: int, timeout: float = 10.0) -> list[dict[str, Any]]:
    """The first `count` JSON lines of a tenant's event file, once they are there."""
    deadline = time.monotonic() + timeout
    while True:
        lines = read_lines(path)
        if len(lines) >= count:
            return [json.loads(line) for line in lines[:count]]
        assert time.monotonic() < deadline, f"{path.name}: {len(lines)} of {count} events"
        await sleep(0.05)


@pytest_twisted.ensureDeferred
async def test_file_sink_writes_one_mq_event_per_line_with_the_message_decoded(make_tenant, mics_node):
    tenant = await make_tenant(event_sinks=["file"])
    alice = await tenant.user("alice", "phone")
    ack = await alice.call("mics.message.send", to_user_id="bob", body={"text": "to the file"})

    online, chat = await file_events(mics_node.data_dir / "events" / f"{tenant.tenant_id}.jsonl", 2)

    assert (online["event_type"], online["user_id"], online["device_id"]) == ("CONNECT_ONLINE", "alice", "phone")
    assert online["event_data"]["node_id"] == mics_node.node_id == online["node_id"]
    assert (chat["event_type"], chat["msg_id"], chat["to_user_id"]) == ("SINGLE_CHAT_MSG", ack["msg_id"], "bob")
    assert chat["tenant_id"] == tenant.tenant_id and chat["timestamp"] == ack["ts"]
    assert chat["event_data"]["body"] == {"text": "to the file"} and chat["event_data"]["from_user_id"] == "alice"


@pytest_twisted.ensureDeferred
async def test_wamp_sink_gives_backends_the_event_with_the_message_and_works_alongside_the_file_sink(
    make_tenant, mics_node
):
    tenant = await make_tenant(event_sinks=["wamp", "file"])
    watcher = await tenant.backend("backend-events")
    await watcher.listen("mics.event.single_chat_msg")
    await watcher.listen("mics.event.group_member_change")
    alice = await tenant.user("alice")
    ack = await alice.call("mics.message.send", to_user_id="bob", body={"text": "to the backend"})
    await watcher.call("mics.group.members_changed", group_id="g1", added=["bob"], removed=[])

    event = await watcher.next_event("mics.event.single_chat_msg")
    change = await watcher.next_event("mics.event.group_member_change")

    assert (event["event_type"], event["msg_id"], event["user_id"]) == ("SINGLE_CHAT_MSG", ack["msg_id"], "alice")
    message = event["event_data"]
    assert (message["msg_id"], message["to_user_id"], message["ts"]) == (ack["msg_id"], "bob", ack["ts"])
    assert message["body"] == {"text": "to the backend"} and message["from_device_id"] == "d1"
    assert change["group_id"] == "g1" and change["event_data"] == {"group_id": "g1", "added": ["bob"], "removed": []}
    written = await file_events(mics_node.data_dir / "events" / f"{tenant.tenant_id}.jsonl", 3)
    assert [e["event_type"] for e in written] == ["CONNECT_ONLINE", "SINGLE_CHAT_MSG", "GROUP_MEMBER_CHANGE"]


POISON_BODIES = {  # written as raw JSON: no well-behaved client library would send them
    "a lone surrogate": '"t\\udfff"',
    "an integer of 2**64": "18446744073709551616",
    "NaN": "NaN",
    "nesting 40 deep": "[" * 40 + "]" * 40,
}


@pytest_twisted.ensureDeferred
async def test_bodies_no_sink_could_carry_cost_no_other_event_through_a_real_node(make_tenant, mics_node):
    """Refused at the edge today; were one ever accepted, the sinks drop it alone and count it."""
    tenant = await make_tenant(event_sinks=["file", "wamp"])
    watcher = await tenant.backend("backend-events")
    await watcher.listen("mics.event.single_chat_msg")

    def sends() -> list[list[Any]]:
        ws = open_websocket(mics_node.port)
        try:
            assert ws.join(tenant.tenant_id, ticket="tok-alice")[0] == 2
            bodies = [json.dumps({"n": n}) for n in range(10)] + list(POISON_BODIES.values())
            bodies += [json.dumps({"n": n}) for n in range(10, 20)]
            replies = []
            for n, body in enumerate(bodies):
                ws.send(f'[48, {n + 1}, {{}}, "mics.message.send", [], {{"to_user_id": "bob", "body": {body}}}]')
                replies.append(ws.recv())
            return replies
        finally:
            ws.close()

    replies = await in_thread(sends)
    good = [r[3][0]["msg_id"] for r in replies[:10] + replies[-10:]]
    poison = replies[10:-10]
    accepted = [r[3][0]["msg_id"] for r in poison if r[0] == 50]
    path = mics_node.data_dir / "events" / f"{tenant.tenant_id}.jsonl"
    written = [e["msg_id"] for e in await file_events(path, 1 + len(good)) if e["event_type"] == "SINGLE_CHAT_MSG"]
    dropped = {s: metric(mics_node, "mics_events_dropped_total", tenant=tenant.tenant_id, sink=s) for s in ("file",
               "wamp")}  # fmt: skip
    expected = len(good) + len(accepted) - int(dropped["wamp"])
    published = [(await watcher.next_event("mics.event.single_chat_msg"))["msg_id"] for _ in range(expected)]

    refused = [r for r in poison if r[0] == 8]
    assert all(r[4] == "mics.error.invalid_message" for r in refused), refused
    assert len(refused) + len(accepted) == len(POISON_BODIES)
    assert [m for m in written if m in good] == good and [m for m in published if m in good] == good
    for sink, seen in (("file", written), ("wamp", published)):  # accepted poison: carried, or dropped and counted
        assert dropped[sink] == len([m for m in accepted if m not in seen])
