"""/metrics after real traffic: each counter of the tenant moved by exactly what the traffic did.

A fresh tenant per test, so every sample labelled with it starts at zero; the test still reads
/metrics before and after and compares the differences, and asserts the whole set of changes, so a
counter that moves twice, or one that should not move at all, fails it too.
"""

from __future__ import annotations

import time

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.threads import deferToThread

from harness import Node, http_get
from wamp_clients import JoinRefused, sleep

EVENTS_WRITTEN = "mics_events_total{outcome=ok,sink=file}"
HELD = "mics_buffer_held_messages{}"
Sample = tuple[str, tuple[tuple[str, str], ...]]  # (name, sorted labels without "tenant")


async def scrape(node: Node, tenant_id: str) -> dict[Sample, float]:
    """The tenant's counter and gauge samples (histogram buckets and sums left out)."""
    # the shared test node holds every earlier test's tenants: a large page, on a busy machine
    status, body = await deferToThread(http_get, f"{node.http}/metrics", 10.0)
    assert status == 200
    samples: dict[Sample, float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.labels.get("tenant") != tenant_id or sample.name.endswith(("_bucket", "_sum", "_created")):
                continue
            labels = tuple(sorted((k, v) for k, v in sample.labels.items() if k != "tenant"))
            samples[(sample.name, labels)] = sample.value
    return samples


async def eventually_moved(
    node: Node, tenant_id: str, before: dict[Sample, float], key: str, want: float, timeout: float = 10.0
) -> dict[str, float]:
    """The changes since `before`, once `key` moved by `want` (or after `timeout`)."""
    deadline = time.monotonic() + timeout
    while True:
        moved = changes(before, await scrape(node, tenant_id))
        if moved.get(key, 0) >= want or time.monotonic() > deadline:
            return moved
        await sleep(0.05)


def changes(before: dict[Sample, float], after: dict[Sample, float]) -> dict[str, float]:
    """`name{label=value,...}` -> how much it moved, for every sample that moved."""
    moved = {}
    for key in before.keys() | after.keys():
        delta = after.get(key, 0.0) - before.get(key, 0.0)
        if delta:
            name, labels = key
            moved[name + "{" + ",".join(f"{k}={v}" for k, v in labels) + "}"] = delta
    return moved


@pytest_twisted.ensureDeferred
async def test_counters_move_by_exactly_what_the_traffic_did(make_tenant, node):
    tenant = await make_tenant(max_payload_bytes=100)
    tenant.logic.groups["team"] = ["alice", "bob"]
    before = await scrape(node, tenant.tenant_id)

    alice = await tenant.user("alice")
    bob = await tenant.user("bob")
    with pytest.raises(JoinRefused):
        await tenant.raw_user("not-a-token")
    await bob.listen("mics.inbox.bob")
    for text in ("one", "two"):
        await alice.call("mics.message.send", to_user_id="bob", body=text)
    await alice.call("mics.message.send", to_user_id="carol", body="while you are away")
    await alice.call("mics.group.send", group_id="team", body="hello team")
    with pytest.raises(ApplicationError):
        await alice.call("mics.message.send", to_user_id="bob", body="this is forbidden")
    with pytest.raises(ApplicationError):
        await alice.call("mics.message.send", to_user_id="bob", body="x" * 200)

    # events reach their sink a moment after the sends: wait for the seven (two connects, four messages,
    # the offline push trigger for carol); the buffer gauges follow the node's expiry tick (every 5 s):
    # wait for the six held messages too
    await eventually_moved(node, tenant.tenant_id, before, EVENTS_WRITTEN, 7)
    moved = await eventually_moved(node, tenant.tenant_id, before, HELD, 6)
    assert moved == {
        "mics_joins_total{outcome=ok}": 2,
        "mics_joins_total{outcome=invalid_token}": 1,
        "mics_connections{}": 2,
        "mics_messages_total{delivered=online,type=chat}": 2,
        "mics_messages_total{delivered=buffered,type=chat}": 1,
        "mics_messages_total{delivered=online,type=group_chat}": 1,
        "mics_send_failures_total{reason=rejected}": 1,
        "mics_send_failures_total{reason=payload_too_large}": 1,
        "mics_limit_hits_total{limit=max_payload_bytes}": 1,
        "mics_offline_push_total{outcome=emitted}": 1,  # carol had no device online
        "mics_hook_calls_total{hook=auth,outcome=ok}": 2,
        "mics_hook_calls_total{hook=auth,outcome=rejected}": 1,
        # the hook answered all five; "rejected" counts hooks that refused to answer (an auth hook's no)
        "mics_hook_calls_total{hook=check_message,outcome=ok}": 5,
        "mics_hook_calls_total{hook=group_members,outcome=ok}": 1,
        "mics_hook_duration_seconds_count{hook=auth}": 3,
        "mics_hook_duration_seconds_count{hook=check_message}": 5,
        "mics_hook_duration_seconds_count{hook=group_members}": 1,
        "mics_procedure_duration_seconds_count{procedure=mics.message.send}": 5,  # refused ones too
        "mics_procedure_duration_seconds_count{procedure=mics.group.send}": 1,
        EVENTS_WRITTEN: 7,
        # held for sync: two chats to bob and one to carol, each with alice's copy, 256 bytes each
        # beyond the body's encoded size ("one", "two": 5; "while you are away": 20)
        HELD: 6,
        "mics_buffer_held_bytes{}": 2 * (2 * (256 + 5) + 256 + 20),
    }
