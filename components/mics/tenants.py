"""Tenants known to this node and the runtime objects each one owns.

Everything per tenant hangs off its `TenantRuntime` (limiter, hooks, buffer, sessions, sinks), so
one tenant's flood, hook outage or full buffer never touches another. A config change validates a
whole new TenantConfig, then swaps it in and rebuilds what depends on it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IReactorTime
from txaio import make_logger

from mics.buffer import CatchupBuffer, make_buffer
from mics.cluster import REPLACE, Cluster
from mics.config import NodeSettings, TenantConfig
from mics.errors import ConfigError
from mics.events import EventQueue, EventSink
from mics.events.file import FileSink
from mics.hooks import Hook
from mics.hooks.http import HttpHook
from mics.hooks.policy import GuardedHook
from mics.hooks.wamp import WampHook
from mics.limits import TokenBucket
from mics.presence import Presence
from mics.presence.memory import MemoryPresence
from mics.presence.redis import RedisPresence
from mics.sessions import SessionTable

if TYPE_CHECKING:
    from mics.messaging import TenantComponent

log = make_logger()


class TenantRuntime:
    """One tenant on this node: its config and the live objects built from it."""

    def __init__(
        self, config: TenantConfig, settings: NodeSettings, reactor: IReactorTime, cluster: Cluster | None = None
    ) -> None:
        self.tenant_id = config.tenant_id
        self._settings = settings
        self._reactor = reactor
        self._cluster = cluster
        redis = cluster.redis if cluster is not None else None
        self.sessions = SessionTable()
        self.presence: Presence = (
            RedisPresence(self.tenant_id, settings.node_id, redis, self.sessions, self._replaced)
            if redis is not None
            else MemoryPresence(self.sessions, settings.node_id)
        )
        self.buffer: CatchupBuffer = make_buffer(
            self.tenant_id, config.offline_max_per_user, config.offline_max_bytes, reactor.seconds, redis
        )
        self.component: TenantComponent | None = None
        self.events = EventQueue(self.tenant_id, [])
        self.config = config  # in effect: base_config plus auth-hook overrides taken since
        self.base_config = config  # from the router config or the admin API (what Redis holds)
        self.hook: GuardedHook | None = None
        self.bucket = TokenBucket(config.max_message_qps, reactor.seconds)
        self._apply(config)

    def _replaced(self, node_id: str, session_id: int) -> None:
        """This device connected here while its older session lives on another node: end that one."""
        if self._cluster is not None:
            self._cluster.send_to(node_id, [REPLACE, self.tenant_id, session_id])

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    def _apply(self, config: TenantConfig) -> None:
        old = self.config
        self.config = config
        if self.bucket.rate != config.max_message_qps:
            self.bucket = TokenBucket(config.max_message_qps, self._reactor.seconds)
        self.buffer.configure(config.offline_max_per_user, config.offline_max_bytes)
        self._rebuild_hook()
        if old is not config:
            log.info("tenant config applied: tenant_id={tenant_id}", tenant_id=self.tenant_id)
        self._rebuild_sinks()

    def update(self, config: TenantConfig) -> None:
        """Swap in a new validated config (router config, admin upsert): overrides start over."""
        self.base_config = config
        self._apply(config)

    def apply_overrides(self, overrides: Mapping[str, Any]) -> None:
        """Auth-hook config overrides: applied when valid and different; a bad one is logged."""
        try:
            config = self.config.with_overrides(overrides)
        except ConfigError as e:
            log.warn("auth hook config override refused: {error}", tenant_id=self.tenant_id, error=str(e))
            return
        if config != self.config:
            self._apply(config)

    def _make_hook(self) -> Hook | None:
        config = self.config
        if config.hook_transport == "http":
            assert config.hook_base_url is not None
            return HttpHook(self.tenant_id, config.secret, config.hook_base_url, config.hook_encoding, self._reactor)
        if self.component is None:
            return None
        return WampHook(self.tenant_id, self.component)

    def _rebuild_hook(self) -> None:
        if self.hook is not None:
            self.hook.close()
        hook = self._make_hook()
        self.hook = None if hook is None else GuardedHook(self.tenant_id, hook, self.config, self._reactor)

    def _rebuild_sinks(self) -> None:
        names = self.config.event_sinks
        if names is None:
            names = self._settings.default_event_sinks
        old = {s.name: s for s in self.events.sinks}
        sinks: list[EventSink] = []
        for name in names:
            sink = old.pop(name, None) or self._make_sink(name)
            if sink is not None:
                if hasattr(sink, "reconfigure"):
                    sink.reconfigure(self.config)  # e.g. Kafka signs with the current secret
                sinks.append(sink)
        for sink in old.values():
            sink.close()
        self.events.sinks = sinks

    def _make_sink(self, name: str) -> EventSink | None:
        if name == "file":
            return FileSink(self.tenant_id, self._settings.data_dir)
        if name == "wamp":
            if self.component is None:
                return None  # added when the realm component joins
            from mics.events.wamp import WampSink

            return WampSink(self.tenant_id, self.component)
        if name == "kafka":
            from mics.events import kafka

            return kafka.make_sink(self.tenant_id, self._settings, self.config)
        raise AssertionError(name)

    def attach(self, component: TenantComponent) -> None:
        """The realm's component joined: hooks over WAMP and the WAMP sink can work now."""
        self.component = component
        self._rebuild_hook()
        self.events.sinks = [s for s in self.events.sinks if s.name != "wamp"]
        self._rebuild_sinks()

    def detach(self) -> None:
        self.component = None
        self._rebuild_hook()
        self._rebuild_sinks()

    def close(self) -> None:
        if self.hook is not None:
            self.hook.close()
        for sink in self.events.sinks:
            sink.close()


class TenantRegistry:
    """All tenants of this node, by id."""

    def __init__(self, settings: NodeSettings, reactor: IReactorTime, cluster: Cluster | None = None) -> None:
        self._settings = settings
        self._reactor = reactor
        self._cluster = cluster  # cluster mode: tenants keep presence and buffers in Redis
        self._tenants: dict[str, TenantRuntime] = {}

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._tenants.values()))

    def __len__(self) -> int:
        return len(self._tenants)

    def get(self, tenant_id: str) -> TenantRuntime | None:
        return self._tenants.get(tenant_id)

    def add(self, config: TenantConfig) -> TenantRuntime:
        runtime = self._tenants.get(config.tenant_id)
        if runtime is None:
            runtime = self._tenants[config.tenant_id] = TenantRuntime(
                config, self._settings, self._reactor, self._cluster
            )
        else:
            runtime.update(config)
        return runtime

    def merged(self, tenant_id: str, changes: Mapping[str, Any]) -> tuple[TenantConfig, bool]:
        """The validated config an upsert would make (changes over the admin config, never over
        auth-hook overrides), and whether it creates the tenant; changes nothing (ConfigError)."""
        runtime = self._tenants.get(tenant_id)
        if runtime is None:
            return TenantConfig.parse(tenant_id, changes), True
        return runtime.base_config.merged(changes), False
