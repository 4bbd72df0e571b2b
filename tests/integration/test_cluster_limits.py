"""Tenant limits hold across the cluster: two real nodes on one redis-server, users on both.

Without sharing, each node would admit a tenant's whole message rate and connection count (twice
the limit on two nodes). The nodes exchange their load every 0.5 s (mics.cluster.load), so the
tolerance is about one report: see docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.defer import Deferred, gatherResults

from cluster_tenants import TenantMaker, blast, online
from harness import Node
from wamp_clients import JoinRefused, sleep

REPORT_S = 0.5  # the node tick that exchanges load reports


@pytest_twisted.async_yield_fixture()
async def make(cluster_nodes: tuple[Node, Node]) -> AsyncIterator[Any]:
    maker = TenantMaker(cluster_nodes[0], "lim")
    yield maker
    await maker.close()


@pytest_twisted.ensureDeferred
async def test_the_tenants_message_rate_holds_across_two_nodes(cluster_nodes, make):
    a, b = cluster_nodes
    rate, seconds = 20, 5.0
    tenant = await make(max_message_qps=rate)
    alice, bob = await tenant.pair(a, b)
    await sleep(1.0)  # both nodes reported the tenant once
    (on_a, refused_a), (on_b, refused_b) = await gatherResults(
        [Deferred.fromCoroutine(blast(alice, "bob", seconds)), Deferred.fromCoroutine(blast(bob, "alice", seconds))]
    )
    admitted = on_a + on_b
    print(f"\nmax_message_qps {rate}, two nodes for {seconds:.0f} s: admitted {admitted} "
          f"({admitted / seconds:.1f}/s; A {on_a}, B {on_b}), refused {refused_a + refused_b}")  # fmt: skip
    # one node alone admits its burst (one second of the rate) plus the rate: the cluster as much,
    # plus at most one report of moved demand; two unshared nodes would admit twice that
    assert admitted <= rate * seconds + rate + rate * REPORT_S
    assert admitted >= rate * seconds * 0.8, "the rate is used, not starved"
    assert min(on_a, on_b) >= rate * seconds * 0.3, "both nodes get a fair part"


@pytest_twisted.ensureDeferred
async def test_the_tenants_connection_limit_counts_the_other_nodes(cluster_nodes, make):
    a, b = cluster_nodes
    tenant = await make(max_connections=3)
    u1 = await tenant.user(a, "u1")
    await tenant.user(b, "u2")
    await tenant.user(a, "u3")
    await sleep(REPORT_S * 3)  # node B learns node A's count from its next report
    with pytest.raises(JoinRefused) as refused:
        await tenant.user(b, "u4")
    assert refused.value.reason == "mics.error.connection_limit"
    await u1.close()  # u1 leaves node A: room again, on either node
    await sleep(REPORT_S * 3)
    assert (await tenant.user(b, "u4")).welcome.authid == "u4"


@pytest_twisted.ensureDeferred
async def test_a_users_devices_on_other_nodes_count_against_the_per_user_limit(cluster_nodes, make):
    a, b = cluster_nodes
    tenant = await make(max_connections_per_user=2)
    watcher = await tenant.user(a, "watcher")
    await tenant.user(a, "bob", "phone")
    await tenant.user(b, "bob", "laptop")
    assert await online(watcher, "bob")
    with pytest.raises(JoinRefused) as refused:
        await tenant.user(a, "bob", "tablet")
    assert refused.value.reason == "mics.error.connection_limit"
    moved = await tenant.user(a, "bob", "laptop")  # the laptop moves to node A: no new slot
    assert moved.welcome.authid == "bob"
