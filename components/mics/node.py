"""The MICS node inside one Crossbar router worker: the runtime every component shares.

Crossbar loads our authenticator, router components and web resources separately, in one
process; they meet here. `NODE` is created on import and started by the control component.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from txaio import make_logger

from mics import heartbeat, metrics, speedups
from mics.config import MicsConfig, NodeSettings
from mics.realms import RealmManager
from mics.tenants import TenantRegistry
from mics.types import MsgIdFactory

log = make_logger()

EVENT_DRAIN_S = 0.05
EXPIRE_EVERY_TICKS = 10
DRAIN_GRACE_S = 0.5


class Node:
    """Settings, tenants, realms and timers of this node."""

    def __init__(self, reactor: Any = default_reactor) -> None:
        self.reactor = reactor
        self.settings: NodeSettings | None = None
        self.tenants: TenantRegistry | None = None
        self.realms: RealmManager | None = None
        self.msg_ids: MsgIdFactory | None = None
        self.is_ready = False
        self.drained = 0  # user sessions closed with mics.close.shutdown
        self._waiters: list[Deferred[None]] = []
        self._ticks = 0
        self._timers: list[LoopingCall] = []

    async def start(self, config: MicsConfig, controller: Any) -> None:
        """Load tenants, start their realms and the timers; then accept sessions."""
        settings = config.node
        self.settings = settings
        self.msg_ids = MsgIdFactory(settings.node_id)
        self.tenants = TenantRegistry(settings, self.reactor)
        self.realms = RealmManager(controller, dict(settings.backend_components))
        for tenant_config in config.tenants.values():
            self.tenants.add(tenant_config)
        for tenant in self.tenants:
            await self.realms.ensure(tenant.tenant_id)
        self.reactor.addSystemEventTrigger("before", "shutdown", self.drain)
        self._start_timer(self._tick, heartbeat.TICK_S)
        self._start_timer(self._drain_events, EVENT_DRAIN_S)
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
        self._ticks += 1
        if self._ticks % EXPIRE_EVERY_TICKS == 0:
            for tenant in self.tenants:
                tenant.buffer.expire()
                tenant.sessions.sweep_pending(now)
                held = tenant.buffer.stats()
                metrics.BUFFER_HELD.labels(tenant.tenant_id).set(held["held_messages"])
                metrics.BUFFER_BYTES.labels(tenant.tenant_id).set(held["held_bytes"])

    def _drain_events(self) -> None:
        assert self.tenants is not None
        for tenant in self.tenants:
            if tenant.events.items:
                tenant.events.drain()

    def drain(self) -> Deferred[None] | None:
        """Before the worker's reactor stops: let the GOODBYEs of drained sessions reach the wire."""
        if not self.drained:
            return None
        log.info("drained {count} user sessions", count=self.drained)
        done: Deferred[None] = Deferred()
        self.reactor.callLater(DRAIN_GRACE_S, done.callback, None)
        return done

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
