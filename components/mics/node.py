"""The MICS node inside one Crossbar router worker: the runtime every component shares.

Crossbar loads our authenticator, router components and web resources separately, in one
process; they meet here. `NODE` is created on import and started by the control component.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Mapping
from typing import Any

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred, DeferredList
from twisted.internet.task import LoopingCall
from txaio import make_logger

from mics import errors, events, heartbeat, metrics
from mics.cluster import DELIVER, KICK, PRESENCE, RELAYED, REPLACE, TENANT, Cluster, Operation
from mics.cluster import redis as cluster_keys
from mics.cluster.load import LoadReports
from mics.config import MicsConfig, NodeSettings, TenantConfig, is_valid_tenant_id
from mics.engine import EngineFactory
from mics.engine.memory import MemoryEngines
from mics.errors import ConfigError
from mics.limits import FairShare
from mics.realms import RealmManager
from mics.router import speedups
from mics.tenants import TenantRegistry, TenantRuntime
from mics.types import MsgIdFactory, now_ms

log = make_logger()

EVENT_DRAIN_S = 0.05
EXPIRE_EVERY_TICKS = 10
DRAIN_GRACE_S = 0.5
LAG_PROBE_S = 0.05
LAG_SATURATED_S = 0.1  # a timer 100 ms late: the worker is fully behind
# timer lag counts as load only while the worker itself uses at least this much of a core: on a
# machine starved by other processes a light worker runs late too, and refusing its few sends
# would not help anyone
LAG_CPU_FLOOR = 0.5


def worker_load(cpu_fraction: float, lag_s: float) -> float:
    """The router worker's load for fair sharing (1.0: fully saturated): its CPU fraction, or its
    timer lag as a fraction of LAG_SATURATED_S when it is busy itself, whichever is higher."""
    if cpu_fraction < LAG_CPU_FLOOR:
        return cpu_fraction
    return max(cpu_fraction, min(lag_s / LAG_SATURATED_S, 1.5))


class Node:
    """Settings, tenants, realms and timers of this node."""

    def __init__(self, reactor: Any = default_reactor) -> None:
        self.reactor = reactor
        self.settings: NodeSettings | None = None
        self.tenants: TenantRegistry | None = None
        self.realms: RealmManager | None = None
        self.msg_ids: MsgIdFactory | None = None
        self.cluster: Cluster | None = None
        self.engines: EngineFactory | None = None
        self.load: LoadReports | None = None  # cluster mode: tenant limits shared between nodes
        self.is_ready = False
        self.drained = 0  # user sessions closed with mics.close.shutdown
        self._waiters: list[Deferred[None]] = []
        self._ticks = 0
        self._timers: list[LoopingCall] = []
        self.fair = FairShare(reactor.seconds)
        self._cpu = (time.process_time(), time.monotonic())
        self._lag_due, self._lag_max = time.monotonic(), 0.0

    async def start(self, config: MicsConfig, controller: Any) -> None:
        """Load tenants, start their realms and the timers; then accept sessions."""
        settings = config.node
        self.settings = settings
        self.msg_ids = MsgIdFactory(settings.node_id)
        if settings.redis_url:  # cluster mode: the one place that decides it
            from mics.engine.redis import RedisEngines

            self.cluster = Cluster(
                settings.node_id,
                settings.redis_url,
                self.reactor,
                self._on_operation,
                self._reap,
                self._restore_presence,
            )
            self.engines = RedisEngines(self.cluster)
            self.load = LoadReports(self.cluster, self.reactor.seconds)
        else:
            self.engines = MemoryEngines(settings.node_id)
        self.tenants = TenantRegistry(settings, self.reactor, self.engines, self.msg_ids, self.fair)
        self.realms = RealmManager(controller, dict(settings.backend_components), self._realm_started)
        for tenant_config in config.tenants.values():
            self.tenants.add(tenant_config)
        if self.cluster is not None:
            await self._load_cluster_tenants()
            await self.cluster.start()
        for tenant in self.tenants:
            await self.realms.ensure(tenant.tenant_id)
        self.reactor.addSystemEventTrigger("before", "shutdown", self.drain)
        self._start_timer(self._tick, heartbeat.TICK_S)
        self._start_timer(self._drain_events, EVENT_DRAIN_S)
        self._lag_due = time.monotonic() + LAG_PROBE_S
        self._start_timer(self._probe_lag, LAG_PROBE_S)
        if settings.speedups:
            speedups.apply()
        self.is_ready = True
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            waiter.callback(None)
        log.info(
            "MICS node ready: node_id={node_id} tenants={count}", node_id=settings.node_id, count=len(self.tenants)
        )

    async def when_ready(self) -> None:
        if not self.is_ready:
            waiter: Deferred[None] = Deferred()
            self._waiters.append(waiter)
            await waiter

    def _start_timer(self, fn: Any, interval: float) -> None:
        timer = LoopingCall(fn)
        timer.clock = self.reactor
        timer.start(interval, now=False).addErrback(lambda f: log.failure("timer failed", failure=f))
        self._timers.append(timer)

    def _tick(self) -> None:
        assert self.tenants is not None
        now = self.reactor.seconds()
        heartbeat.sweep(self.tenants, now)
        self._share_fairly()
        for tenant in self.tenants:
            tenant.engine.presence.retry()
        if self.load is not None:
            self.load.tick(self.tenants)
        self._ticks += 1
        if self._ticks % EXPIRE_EVERY_TICKS == 0:
            for tenant in self.tenants:
                tenant.engine.buffer.expire()
                tenant.sessions.sweep_pending(now)
                tenant.sweep_limits()
                if tenant.relay is not None:
                    tenant.relay.tick()
                held = tenant.engine.buffer.stats()
                metrics.BUFFER_HELD.labels(tenant.tenant_id).set(held["held_messages"])
                metrics.BUFFER_BYTES.labels(tenant.tenant_id).set(held["held_bytes"])

    def _probe_lag(self) -> None:
        """How late the reactor runs a 50 ms timer: a backlog of work shows here even when the OS
        gives the worker less than a core (a CPU fraction alone would miss that)."""
        now = time.monotonic()
        self._lag_max = max(self._lag_max, now - self._lag_due)
        self._lag_due = now + LAG_PROBE_S

    def _share_fairly(self) -> None:
        """Saturated: the tenants over their fair share are refused first (mics.limits.FairShare),
        by the load `worker_load` reads from the CPU time and the timer lag since the last tick."""
        cpu, wall = time.process_time(), time.monotonic()
        cpu_fraction = (cpu - self._cpu[0]) / max(wall - self._cpu[1], 1e-3)
        self._cpu = (cpu, wall)
        lag, self._lag_max = self._lag_max, 0.0
        busy = worker_load(cpu_fraction, lag)
        metrics.ROUTER_BUSY.set(round(busy, 3))
        before = self.fair.capped()
        self.fair.tick(busy)
        after = self.fair.capped()
        for tenant_id in before.keys() | after.keys():
            cap = after.get(tenant_id)
            if cap is None:
                metrics.FAIR_SHARE_CAP.remove(tenant_id)
                log.info("fair share: tenant_id={tenant_id} no longer capped", tenant_id=tenant_id)
            else:
                metrics.FAIR_SHARE_CAP.labels(tenant_id).set(round(cap, 1))
                if tenant_id not in before:
                    log.warn("node saturated (busy {busy}): tenant_id={tenant_id} over its fair share, capped to "
                             "{cap} sends/s", busy=round(busy, 2), tenant_id=tenant_id, cap=round(cap))  # fmt: skip

    def _drain_events(self) -> None:
        assert self.tenants is not None
        for tenant in self.tenants:
            if tenant.events.items:
                tenant.events.drain()

    # -- tenants ----------------------------------------------------------------------------------
    async def upsert_tenant(self, tenant_id: str, changes: Mapping[str, Any]) -> tuple[TenantRuntime, bool]:
        """Create or change a tenant (admin API); in a cluster every node takes the change."""
        assert self.tenants is not None
        config, created = self.tenants.merged(tenant_id, changes)
        if self.cluster is not None:  # Redis first: a failed write changes nothing anywhere
            await self.cluster.redis.hset(cluster_keys.TENANTS, tenant_id, json.dumps(config.to_dict()))
        tenant = self.tenants.add(config)
        await self._tenant_changed(tenant)
        if self.cluster is not None:
            self.cluster.broadcast([TENANT, tenant_id])
        return tenant, created

    async def find_tenant(self, tenant_id: str) -> TenantRuntime | None:
        """This node's tenant, or in a cluster one just upserted on another node (not yet broadcast
        here), once it knows what backends on other nodes serve (its hooks may live there)."""
        tenant = self.tenants.get(tenant_id) if self.tenants else None
        if tenant is None and self.cluster is not None and is_valid_tenant_id(tenant_id):
            await self._load_cluster_tenants(tenant_id)
            tenant = self.tenants.get(tenant_id) if self.tenants else None
        if tenant is not None and tenant.relay is not None:
            await tenant.relay.ready()
        return tenant

    def _realm_started(self, realm: str, router: Any) -> None:
        """A tenant realm exists now: its runtime can reach the router."""
        tenant = self.tenants.get(realm) if self.tenants else None
        if tenant is not None:
            tenant.port.bind_router(router)

    async def _tenant_changed(self, tenant: TenantRuntime) -> None:
        assert self.realms is not None
        if tenant.enabled:
            await self.realms.ensure(tenant.tenant_id)
        else:
            tenant.close_all(errors.CLOSE_TENANT_DISABLED, "the tenant was disabled")

    async def _load_cluster_tenants(self, only: str | None = None) -> None:
        """Tenants upserted through the admin API on any node live in Redis, over the router config."""
        assert self.cluster is not None and self.tenants is not None
        redis = self.cluster.redis
        if only is None:
            flat = await redis.execute_command("HGETALL", cluster_keys.TENANTS)
            stored = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
        else:
            stored = {only: await redis.hget(cluster_keys.TENANTS, only)}
        for tenant_id, raw in stored.items():
            if raw is None:
                continue
            try:
                tenant = self.tenants.add(TenantConfig.parse(tenant_id, json.loads(raw)))
            except (ConfigError, ValueError) as e:
                log.error("tenant config in Redis refused: tenant_id={tenant_id} error={error}",
                          tenant_id=tenant_id, error=str(e))  # fmt: skip
                continue
            if self.is_ready:
                await self._tenant_changed(tenant)

    # -- cluster ------------------------------------------------------------------------------------
    def _on_operation(self, operation: Operation, origin: str) -> None:
        """What another node asks of this one (see mics.cluster)."""
        kind, tenant_id, *args = operation
        if kind == TENANT:
            Deferred.fromCoroutine(self._load_cluster_tenants(tenant_id)).addErrback(
                lambda f: log.failure("tenant reload failed", failure=f)
            )
            return
        tenant = self.tenants.get(tenant_id) if self.tenants else None
        if tenant is None:
            return
        if kind == DELIVER:
            tenant.deliver_forwarded(*args)
        elif kind == KICK:
            tenant.kick_local(*args)
        elif kind == REPLACE:
            tenant.close_session(args[0], errors.CLOSE_REPLACED, "the same device connected again")
        elif kind == PRESENCE:
            tenant.publish_presence(*args)
        elif kind in RELAYED and tenant.relay is not None:
            tenant.relay.on_operation(kind, args, origin)

    def _restore_presence(self) -> None:
        assert self.tenants is not None
        for tenant in self.tenants:
            presence = tenant.engine.presence
            for info in list(tenant.sessions.by_id.values()):
                presence.joined(info)
            rewatch = getattr(presence, "rewatch", None)
            if rewatch is not None:
                rewatch()
            if tenant.relay is not None:
                tenant.relay.rejoined()

    async def _reap(self, node_id: str, announce: bool = True) -> None:
        """A node died (or this node restarted): its sessions leave presence, with an offline event
        (`announce`; a clean shutdown has sent those events already)."""
        assert self.tenants is not None
        for tenant in self.tenants:
            if tenant.relay is not None:
                await tenant.relay.node_lost(node_id)
            lost = await tenant.engine.presence.reap(node_id)
            for entry in lost if announce else ():
                tenant.events.put(
                    events.Event(
                        tenant_id=tenant.tenant_id,
                        event_type=events.CONNECT_OFFLINE,
                        timestamp=now_ms(),
                        node_id=entry["node_id"],
                        data={**entry, "reason": "node_lost"},
                        user_id=entry["user_id"],
                        device_id=entry["device_id"],
                    )
                )

    def drain(self) -> Deferred[None] | None:
        """Before the worker's reactor stops: let the GOODBYEs of drained sessions reach the wire,
        and leave the cluster (our presence goes with us)."""
        waits: list[Deferred[Any]] = []
        if self.drained:
            log.info("drained {count} user sessions", count=self.drained)
            done: Deferred[None] = Deferred()
            self.reactor.callLater(DRAIN_GRACE_S, done.callback, None)
            waits.append(done)
        if self.cluster is not None:
            waits.append(Deferred.fromCoroutine(self._leave_cluster()))
        return DeferredList(waits) if waits else None  # type: ignore[return-value]

    async def _leave_cluster(self) -> None:
        assert self.cluster is not None
        try:
            await self._reap(self.cluster.node_id, announce=False)
        except Exception as e:
            log.warn("could not remove this node's presence: {error}", error=str(e))
        await self.cluster.stop()

    def stop(self) -> None:
        for timer in self._timers:
            if timer.running:
                timer.stop()
        self._timers.clear()
        if self.tenants is not None:
            self._drain_events()
            for tenant in self.tenants:
                tenant.close()
        kafka = sys.modules.get("mics.events.kafka")  # only when some tenant used the Kafka sink
        if kafka is not None:
            kafka.shutdown()


NODE = Node()
