"""Each node's load, shared on every tick: what cluster-wide tenant limits are computed from.

Every 0.5 s (the node's tick) a node writes `{mics}:load:<node_id>` (msgpack {tenant_id:
[connections, sends attempted per second, {heavy user: sends per second}]}, expiring after
REPORT_TTL_MS) and reads the other members' reports in the same round trip (MGET: the `{mics}`
hash tag keeps them in one Redis Cluster slot). Each tenant's `Quotas` (mics.quota) turns them
into this node's shares. No report lands for STALE_S (Redis unreachable): per-node limits.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Protocol

import msgpack
from twisted.internet.defer import Deferred
from txaio import make_logger

from mics import metrics
from mics.cluster import Cluster
from mics.quota import STALE_S, Quotas

log = make_logger()

REPORT_TTL_MS = 3000  # a node that stopped reporting (dead, or cut off from Redis) counts for nothing after this


def load_key(node_id: str) -> str:
    return "{mics}:load:" + node_id


class Tenant(Protocol):
    tenant_id: str
    quotas: Quotas

    @property
    def connections(self) -> int: ...


class LoadReports:
    """This node's side of the exchange (one per node)."""

    def __init__(self, cluster: Cluster, clock: Any) -> None:
        self._cluster = cluster
        self._clock = clock
        self._heard: float | None = None  # when the last exchange succeeded
        self._busy = False

    def tick(self, tenants: Iterable[Tenant]) -> None:
        if self._busy:
            return  # the last exchange is still in flight (Redis slow): skip this one
        tenants = list(tenants)
        reports = {t.tenant_id: t.quotas.report(t.connections) for t in tenants}
        self._busy = True
        d = Deferred.fromCoroutine(self._exchange(tenants, reports))
        d.addErrback(self._failed, tenants)
        d.addBoth(self._done)

    async def _exchange(self, tenants: list[Tenant], reports: dict[str, Any]) -> None:
        cluster = self._cluster
        redis = cluster.redis
        packed = msgpack.packb(reports, use_bin_type=True)
        await redis.execute_command("SET", load_key(cluster.node_id), packed, "PX", REPORT_TTL_MS)
        peers = [n for n in cluster.peers if n != cluster.node_id]
        values = await redis.execute_command("MGET", *map(load_key, peers)) if peers else []
        others = [msgpack.unpackb(v, raw=False, strict_map_key=False) for v in values if v is not None]
        for tenant in tenants:
            tenant.quotas.apply([o[tenant.tenant_id] for o in others if tenant.tenant_id in o])
            metrics.RATE_SHARE.labels(tenant.tenant_id).set(tenant.quotas.bucket.share)
        self._heard = self._clock()

    def _failed(self, f: Any, tenants: list[Tenant]) -> None:
        metrics.REDIS_FAILURES.labels("load").inc()
        if self._heard is not None and self._clock() - self._heard < STALE_S:
            return  # keep the last shares a little while
        if self._heard is not None:
            log.warn("cluster load reports failed for {s}s: per-node limits until Redis answers ({error})",
                     s=STALE_S, error=f.getErrorMessage())  # fmt: skip
        self._heard = None
        for tenant in tenants:
            tenant.quotas.alone()
            metrics.RATE_SHARE.labels(tenant.tenant_id).set(tenant.quotas.bucket.share)

    def _done(self, _result: Any) -> None:
        self._busy = False
