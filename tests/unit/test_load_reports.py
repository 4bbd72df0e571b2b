"""The load exchange behind cluster-wide limits (mics.cluster.load) between in-process cluster
members on a real redis-server of their own: shares and connection counts from the other members'
reports, and per-node limits once Redis has been unreachable for STALE_S."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest_twisted
from twisted.internet import reactor, task

from harness import start_redis
from mics.cluster import Cluster
from mics.cluster.load import LoadReports
from mics.quota import STALE_S, Quotas


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Tenant:
    """What LoadReports reads of a tenant runtime."""

    tenant_id: str
    quotas: Quotas
    connections: int = 0


@dataclass
class Member:
    cluster: Cluster
    reports: LoadReports
    tenant: Tenant
    clock: Clock = field(default_factory=Clock)

    async def exchange(self) -> None:
        self.reports.tick([self.tenant])
        while self.reports._busy:
            await task.deferLater(reactor, 0.01, lambda: None)


@pytest_twisted.async_yield_fixture()
async def members(tmp_path: Path) -> AsyncIterator[tuple[Any, list[Member]]]:
    redis, url = start_redis(tmp_path)
    out: list[Member] = []

    async def nothing(*_args: Any) -> None:
        return None

    for n in range(2):
        cluster = Cluster(f"load-n{n}", url, reactor, lambda op, origin: None, nothing, lambda: None)
        await cluster.start()
        clock = Clock()
        tenant = Tenant("acme", Quotas(100, None, clock))
        out.append(Member(cluster, LoadReports(cluster, clock), tenant, clock))
    for m in out:  # each knows the other (the reaper's tick would do that within 2 s)
        m.cluster.peers = [o.cluster.node_id for o in out]
    yield redis, out
    for m in out:
        await m.cluster.stop()
    redis.stop()


@pytest_twisted.ensureDeferred
async def test_each_member_gets_its_share_and_the_others_connections(members):
    _redis, (a, b) = members
    a.tenant.connections, b.tenant.connections = 3, 4
    for _ in range(10):  # in half a second a's users attempt 10 sends (20/s), b's 90 (180/s)
        a.tenant.quotas.bucket.try_take()
    for _ in range(90):
        b.tenant.quotas.bucket.try_take()
    for m in (a, b):
        m.clock.now += 0.5
        await m.exchange()
    await a.exchange()  # a sees b's report of the same tick
    assert (a.tenant.quotas.elsewhere, b.tenant.quotas.elsewhere) == (4, 3)
    # max-min fairness: a asks for less than half and gets it, b gets the rest
    assert (a.tenant.quotas.bucket.share, b.tenant.quotas.bucket.share) == (20.0, 80.0)


@pytest_twisted.ensureDeferred
async def test_while_redis_is_unreachable_each_member_falls_back_to_the_whole_limit(members):
    redis, (a, b) = members
    a.tenant.connections = b.tenant.connections = 5
    for m in (a, b):
        await m.exchange()
    await a.exchange()
    assert a.tenant.quotas.elsewhere == 5 and a.tenant.quotas.bucket.share < 100
    redis.stop()
    await a.exchange()  # a failure shortly after the last report keeps the shares
    assert a.tenant.quotas.elsewhere == 5
    a.clock.now += STALE_S + 0.1
    await a.exchange()
    assert a.tenant.quotas.elsewhere == 0 and a.tenant.quotas.bucket.share == 100
