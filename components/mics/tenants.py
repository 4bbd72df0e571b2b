"""Tenants known to this node and the runtime objects each one owns.

Everything per tenant hangs off its `TenantRuntime`: config, sessions, engine (holding and
routing), send service, hooks, agents, limiter and event sinks. So one tenant's flood, hook outage or full
buffer never touches another. The runtime reaches its realm only through its `RealmPort`
(deliver, close a session, call, publish), so what a tenant can do never depends on whether its
realm component has joined. A config change validates a whole new TenantConfig, then swaps it in
and rebuilds only what depends on the changed fields.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from twisted.internet.interfaces import IReactorTime
from txaio import make_logger

from mics import errors, events, metrics, uris
from mics.agents import Agents
from mics.authz import MAX_PRESENCE_WATCHES
from mics.config import NodeSettings, TenantConfig, is_valid_entity_id
from mics.engine import EngineFactory
from mics.errors import ConfigError
from mics.events import EventQueue, EventSink
from mics.events.file import FileSink
from mics.hooks import Hook
from mics.hooks.http import HttpHook
from mics.hooks.policy import GuardedHook
from mics.hooks.wamp import WampHook
from mics.limit_log import LimitHits
from mics.limits import FairShare, KeyedBuckets, TenantShare
from mics.push import OfflinePush
from mics.quota import Quotas
from mics.router import RealmPort
from mics.service import SendService
from mics.sessions import SessionInfo, SessionTable
from mics.types import MsgIdFactory, now_ms

log = make_logger()


def _hook_transport(config: TenantConfig) -> tuple[Any, ...]:
    """The settings a hook's transport is built from: only a change here rebuilds the hook (and
    resets its breakers and HTTP pool); policy settings are applied in place."""
    return (config.hook_transport, config.hook_base_url, config.hook_encoding, config.secret)


class TenantRuntime:
    """One tenant on this node: its config and the live objects built from it."""

    def __init__(
        self, config: TenantConfig, settings: NodeSettings, reactor: IReactorTime, engines: EngineFactory,
        ids: MsgIdFactory, port: RealmPort | None = None, share: TenantShare | None = None,
    ) -> None:  # fmt: skip
        """`port`: how the runtime reaches its realm; a node binds a RealmPort to the realm's router
        (tests pass a recording fake). `share`: this tenant's slot in the node's FairShare."""
        self.tenant_id = config.tenant_id
        self.node_id = settings.node_id
        self.ids = ids
        self._settings = settings
        self._reactor = reactor
        self.config = config  # in effect: base_config plus auth-hook overrides taken since
        self.base_config = config  # from the router config or the admin API (what Redis holds)
        self.sessions = SessionTable()
        self.port = port if port is not None else RealmPort(self.tenant_id)
        self.engine = engines.make(self.tenant_id, config, self.sessions, self.port, reactor.seconds)
        self.relay = engines.relay(self.tenant_id, self.port, reactor)  # cluster mode: cross-node WAMP
        if self.relay is not None:
            self.relay.tick()
        self.events = EventQueue(self.tenant_id, [])
        self.hook: GuardedHook | None = None
        self._hook_settings: tuple[Any, ...] | None = None
        # limits shared with the other nodes in cluster mode (mics.quota, mics.cluster.load): `bucket`
        # (TokenBucket interface) for max_message_qps, `user_buckets` (keyed: try_take(user_id)) for
        # max_user_message_qps
        self.quotas = Quotas(config.max_message_qps, config.max_user_message_qps, reactor.seconds)
        self.bucket = self.quotas.bucket
        self.user_buckets = self.quotas.user_buckets
        self.share = share if share is not None else TenantShare(self.tenant_id, reactor.seconds)
        # section 11: per client address (joins, on this node)
        self.join_buckets = KeyedBuckets(config.max_joins_per_ip_per_s, reactor.seconds)
        self.limit_hits = LimitHits(self.tenant_id, reactor.seconds)
        self.push = OfflinePush(self, reactor)
        self.agents = Agents(self, reactor)
        self.service = SendService(self)
        self._connections = metrics.CONNECTIONS.labels(self.tenant_id)
        self._presence_events = metrics.PRESENCE_EVENTS.labels(self.tenant_id)
        self._watches: dict[int, str] = {}  # presence subscription id -> watched user (cluster mode)
        self.engine.presence.on_change = self.publish_presence
        self._apply(config)

    @property
    def enabled(self) -> bool:
        return self.config.enabled

    # -- config -----------------------------------------------------------------------------------
    def _apply(self, config: TenantConfig) -> None:
        old = self.config
        self.config = config
        self.quotas.configure(config.max_message_qps, config.max_user_message_qps)
        self.join_buckets.configure(config.max_joins_per_ip_per_s)
        self.engine.configure(config)
        self._apply_hook(config)
        self.agents.configure(config)
        if old is not config:
            log.info("tenant config applied: tenant_id={tenant_id}", tenant_id=self.tenant_id)
        self._apply_sinks(config)

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

    def _apply_hook(self, config: TenantConfig) -> None:
        settings = _hook_transport(config)
        if self.hook is not None and settings == self._hook_settings:
            self.hook.configure(config)
            return
        if self.hook is not None:
            self.hook.close()
        self.hook = GuardedHook(self.tenant_id, self._make_hook(config), config, self._reactor)
        self._hook_settings = settings

    def _make_hook(self, config: TenantConfig) -> Hook:
        if config.hook_transport == "http":
            assert config.hook_base_url is not None
            return HttpHook(self.tenant_id, config.secret, config.hook_base_url, config.hook_encoding, self._reactor)
        return WampHook(self.tenant_id, self.port)

    def _apply_sinks(self, config: TenantConfig) -> None:
        names = config.event_sinks
        if names is None:
            names = self._settings.default_event_sinks
        old = {s.name: s for s in self.events.sinks}
        sinks: list[EventSink] = []
        for name in names:
            sink = old.pop(name, None) or self._make_sink(name)
            if sink is None:
                continue  # logged by its maker (e.g. kafka without a bootstrap)
            if hasattr(sink, "reconfigure"):
                sink.reconfigure(config)  # e.g. Kafka signs with the current secret
            sinks.append(sink)
        for sink in old.values():
            sink.close()
        self.events.sinks = sinks

    def _make_sink(self, name: str) -> EventSink | None:
        if name == "file":
            return FileSink(self.tenant_id, self._settings.data_dir)
        if name == "wamp":
            from mics.events.wamp import WampSink

            return WampSink(self.tenant_id, self.port, self.relay)
        if name == "kafka":
            from mics.events import kafka

            return kafka.make_sink(self.tenant_id, self._settings, self.config)
        raise AssertionError(name)

    # -- sessions -------------------------------------------------------------------------------------
    def session_joined(self, session_id: int, user_id: str, device_id: Any) -> SessionInfo | None:
        """A user session joined the realm (meta event, or a call that overtook it): track it,
        replace an older session of the same device, emit CONNECT_ONLINE."""
        if not is_valid_entity_id(device_id):
            return None
        sessions = self.sessions
        known = sessions.by_id.get(session_id)
        if known is not None:
            return known
        info = SessionInfo(session_id, self.tenant_id, user_id, device_id, now_ms(), self._reactor.seconds())
        older = sessions.add(info)
        self.engine.presence.joined(info, device_added=older is None)
        self._connections.set(sessions.connections)
        if older is not None:
            self.close_session(older.session_id, errors.CLOSE_REPLACED, "the same device connected again")
        self._emit_connection(events.CONNECT_ONLINE, info)
        return info

    def session_left(self, session_id: int) -> None:
        info = self.sessions.remove(session_id)
        if info is None:
            return
        self.engine.presence.left(info, device_removed=info.device_id not in self.sessions.devices(info.user_id))
        self._connections.set(self.sessions.connections)
        self._emit_connection(events.CONNECT_OFFLINE, info)

    # -- live presence (section 11) -------------------------------------------------------------------
    def publish_presence(self, user_id: str, devices: list[str], ts: int | None = None) -> None:
        """A user's online devices changed (here, or on another node for a user watched here): one
        event on `mics.presence.<user_id>`; the router hands it to whoever subscribes, if anyone."""
        if not self.config.presence_queries:
            return
        event = {"user_id": user_id, "online": bool(devices), "devices": devices, "ts": ts or now_ms()}
        if self.port.deliver_all(uris.presence_topic(user_id), event):
            self._presence_events.inc()

    def subscription_created(self, subscription_id: int, uri: str) -> None:
        """The router's meta event: the first subscriber of `uri` on this node (cluster mode: other
        nodes learn who watches presence here, and which tenant.* topics have subscribers)."""
        if uri.startswith(uris.PRESENCE_PREFIX):
            user_id = uri[len(uris.PRESENCE_PREFIX) :]
            self._watches[subscription_id] = user_id
            self.engine.presence.watch(user_id)
        if self.relay is not None:
            self.relay.subscription_created(subscription_id, uri)

    def subscription_deleted(self, subscription_id: int) -> None:
        """The router's meta event: the last subscriber of a subscription on this node left."""
        user_id = self._watches.pop(subscription_id, None)
        if user_id is not None:
            self.engine.presence.unwatch(user_id)
        if self.relay is not None:
            self.relay.subscription_deleted(subscription_id)

    def may_watch_presence(self, session_id: int) -> bool:
        """Whether a session may subscribe to one more user's presence (authorizer)."""
        return self.config.presence_queries and (
            self.port.subscriptions_under(session_id, uris.PRESENCE_PREFIX) < MAX_PRESENCE_WATCHES
        )

    def sweep_limits(self) -> None:
        """Forget per-user and per-address buckets that are full again (the node's tick)."""
        self.quotas.sweep()
        self.join_buckets.sweep()

    @property
    def connections(self) -> int:
        """User connections on this node (a device counts once, a session being replaced not)."""
        return self.sessions.connections

    async def over_connection_limit(self, user_id: str, device_id: str) -> str | None:
        """Which limit a join of user+device would break ('tenant'/'user'), or None, counting the
        connections on other nodes too (their last load reports; the user's devices in presence)."""
        config = self.config
        total = config.max_connections - self.quotas.elsewhere
        per_user = config.max_connections_per_user - await self.engine.devices_elsewhere(user_id, device_id)
        return self.sessions.would_exceed(user_id, device_id, total, per_user)

    def touch(self, session_id: int) -> SessionInfo | None:
        """A call from this session: heartbeat activity."""
        info = self.sessions.by_id.get(session_id)
        if info is not None:
            info.last_active = self._reactor.seconds()
        return info

    def emit(self, event_type: str, data: dict[str, Any], timestamp: int | None = None, **fields: str) -> None:
        """One event of this tenant, from this node, to its sinks (`timestamp`: now unless given)."""
        self.events.put(
            events.Event(
                tenant_id=self.tenant_id,
                event_type=event_type,
                timestamp=now_ms() if timestamp is None else timestamp,
                node_id=self.node_id,
                data=data,
                **fields,
            )
        )

    def _emit_connection(self, event_type: str, info: SessionInfo) -> None:
        self.emit(event_type, info.to_kwargs(self.node_id), user_id=info.user_id, device_id=info.device_id)

    def close_session(self, session_id: int, reason: errors.Reason, message: str) -> None:
        self.port.close_session(session_id, reason, message)

    def close_all(self, reason: errors.Reason, message: str) -> int:
        """End every user session of this tenant on this node (disable, shutdown)."""
        infos = list(self.sessions.by_id.values())
        for info in infos:
            self.close_session(info.session_id, reason, message)
        return len(infos)

    def close_silent(self, now: float) -> int:
        """The heartbeat: close every user session silent past the tenant's timeout."""
        if not self.sessions.by_id:
            return 0
        deadline = now - self.config.heartbeat_timeout_s
        silent = [s for s in self.sessions.by_id.values() if s.last_active < deadline]
        for info in silent:
            info.last_active = float("inf")  # closing: don't ask again while the close is in flight
            self.close_session(info.session_id, errors.CLOSE_HEARTBEAT_TIMEOUT, "no activity for heartbeat_timeout_s")
        return len(silent)

    def kick_local(self, user_id: str, device_id: str | None) -> int:
        targets = self.sessions.sessions_of(user_id, device_id)
        for info in targets:
            self.close_session(info.session_id, errors.CLOSE_KICKED, "kicked")
        return len(targets)

    async def kick(self, user_id: str, device_id: str | None) -> int:
        """End the user's sessions (or one device's) on this node and on every other node."""
        return self.kick_local(user_id, device_id) + await self.engine.kick_elsewhere(user_id, device_id)

    def deliver_forwarded(self, topic: str, authids: Sequence[str], message: dict[str, Any]) -> None:
        """Another node's delivery to users on this node."""
        self.engine.deliver_local(topic, authids, None, message)

    def close(self) -> None:
        self.push.close()
        self.agents.close()
        if self.hook is not None:
            self.hook.close()
        if self.relay is not None:
            self.relay.close()
        for sink in self.events.sinks:
            sink.close()


class TenantRegistry:
    """All tenants of this node, by id."""

    def __init__(
        self, settings: NodeSettings, reactor: IReactorTime, engines: EngineFactory, ids: MsgIdFactory,
        fair: FairShare | None = None,
    ) -> None:  # fmt: skip
        self._settings = settings
        self._reactor = reactor
        self._engines = engines
        self._ids = ids
        self._fair = fair if fair is not None else FairShare(reactor.seconds)
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
                config,
                self._settings,
                self._reactor,
                self._engines,
                self._ids,
                share=self._fair.share(config.tenant_id),
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
