"""Three cluster members on their own redis-server: the tenant's limits split three ways, and one
backend, connected to one node, serves users on the two others.

Two nodes can hide a mistake that only shows with more (a share computed as "the other node"
rather than "every other node"); these run the same checks as test_cluster_limits.py and
test_cluster_wamp.py with three.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.types import RegisterOptions
from twisted.internet.defer import Deferred, gatherResults

from cluster_tenants import TenantMaker, blast, eventually, online
from harness import Node, start_nodes, start_redis
from wamp_clients import JoinRefused, sleep

REPORT_S = 0.5  # the node tick that exchanges load reports


@pytest.fixture(scope="module")
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Node]]:
    """Three members on a redis-server of their own (the session's two-node cluster is not in it)."""
    redis, url = start_redis(tmp_path_factory.mktemp("redis3"))
    try:
        nodes = start_nodes(tmp_path_factory.mktemp("three"), ["ta", "tb", "tc"], {"MICS_REDIS_URL": url})
        yield nodes
        for node in nodes:
            node.process.stop()
    finally:
        redis.stop()


@pytest_twisted.async_yield_fixture()
async def make(three: list[Node]) -> AsyncIterator[Any]:
    maker = TenantMaker(three[-1], "three")
    yield maker
    await maker.close()


@pytest_twisted.ensureDeferred
async def test_the_tenants_message_rate_holds_across_three_nodes(three, make):
    rate, seconds = 30, 5.0
    tenant = await make(max_message_qps=rate)
    senders = [await tenant.user(node, f"u{i}") for i, node in enumerate(three)]
    for i in range(3):
        assert await online(senders[0], f"u{i}")
    await sleep(1.0)  # every node reported the tenant once
    results = await gatherResults(
        [Deferred.fromCoroutine(blast(s, f"u{(i + 1) % 3}", seconds)) for i, s in enumerate(senders)]
    )
    per_node = [accepted for accepted, _ in results]
    admitted = sum(per_node)
    print(f"\nmax_message_qps {rate}, three nodes for {seconds:.0f} s: admitted {admitted} "
          f"({admitted / seconds:.1f}/s; per node {per_node}), refused {sum(r for _, r in results)}")  # fmt: skip
    # three unshared nodes would admit three times the rate; shared: the rate, its burst, and at
    # most a report's worth of moved demand per node
    assert admitted <= rate * seconds + rate + 2 * rate * REPORT_S
    assert admitted >= rate * seconds * 0.75, "the rate is used, not starved"
    assert min(per_node) >= rate * seconds * 0.15, f"every node gets a part: {per_node}"


@pytest_twisted.ensureDeferred
async def test_a_connection_limit_counts_every_other_node(three, make):
    a, b, c = three
    tenant = await make(max_connections=3)
    first = await tenant.user(a, "u1")
    await tenant.user(b, "u2")
    await tenant.user(c, "u3")
    await sleep(REPORT_S * 3)  # each node learns the two others' counts from their reports
    for node in three:
        with pytest.raises(JoinRefused) as refused:
            await tenant.user(node, "u4")
        assert refused.value.reason == "mics.error.connection_limit", node.node_id
    await first.close()  # room again, on any node
    await sleep(REPORT_S * 3)
    assert (await tenant.user(b, "u4")).welcome.authid == "u4"


@pytest_twisted.ensureDeferred
async def test_one_backend_on_one_node_serves_users_on_the_two_others(three, make):
    """Its WAMP hooks answer both other nodes' joins and checks, its `tenant.*` procedure serves
    their users, and a message between those two nodes goes through its check hook."""
    a, b, c = three
    tenant = await make("wamp", check_message_hook=True)
    await tenant.hooks_reach(a)
    await tenant.hooks_reach(b)
    backend = await tenant.backend(c, "backend-directory")

    def lookup(name: str, details: Any = None) -> dict[str, Any]:
        return {"name": name, "caller": details.caller_authid if details else None}

    await backend.register(lookup, "tenant.directory.lookup", options=RegisterOptions(details_arg="details"))
    alice, bob = await tenant.user(a, "alice"), await tenant.user(b, "bob")
    for session, who in ((alice, "alice"), (bob, "bob")):

        async def probe(session: Any = session) -> Any:
            try:
                return await session.call("tenant.directory.lookup", name="x")
            except Exception:
                return None

        assert await eventually(probe) == {"name": "x", "caller": who}
    assert await online(alice, "bob")
    ack = await alice.call("mics.message.send", to_user_id="bob", body="through three nodes")
    assert ack["delivered"] == "online"
    event = await bob.next_event("mics.inbox.bob")
    assert event["body"] == "through three nodes" and event["from_user_id"] == "alice"
    assert tenant.logic.calls["check_message"] >= 1
