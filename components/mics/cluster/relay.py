"""Cross-node WAMP for one tenant realm: a backend connected to any node serves the whole cluster.

Each node runs its own Crossbar router, so plain WAMP reaches only the sessions of one node.
Crossbar's router-to-router links were tried and are not used (docs/architecture.md, "Cross-node
WAMP"). This relay carries what a backend offers over the cluster's Redis channels instead:

- **routes**: each node announces what its backends serve (procedures as (uri, match), whether a
  backend there subscribed to `mics.event.*`, whether anyone there subscribed to `tenant.*`) in
  `{t}:routes` (node -> msgpack), and broadcasts each change so the others update at once;
- **calls**: a call that this node's router has no callee for, but another node announced, is
  authorized here (mics.router.RealmTap) and sent to that node with a request id; that node calls
  its callee as the caller (`forward_for`, so the callee sees the caller's session and authid) and
  answers on our channel. No answer within the call's timeout (or CALL_TIMEOUT_S), or the serving
  node lost: `mics.error.unavailable`;
- **topics**: a backend's `tenant.*` publish goes to every node where someone subscribed to
  `tenant.*`, which publishes it there with the same eligible/exclude options (at most once, as
  Redis pub/sub is);
- **events**: the `wamp` sink's events go to every node where a backend subscribed to
  `mics.event.*`, which publishes them there to its backends.

`wamp.session.get(caller)` for a caller on another node answers from the session details that the
caller's last forwarded call carried (kept SESSION_TTL_S).
"""

from __future__ import annotations

import itertools
import random
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgpack
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions
from twisted.internet.defer import Deferred, fail, maybeDeferred
from txaio import make_logger

from mics import errors, metrics, uris
from mics.cluster import CALL, EVENTS, PUBLISH, RESULT, ROUTES, Cluster
from mics.cluster.redis import TenantKeys
from mics.errors import MicsError
from mics.router import Caller, NoRealmSession, RealmPort

log = make_logger()

CALL_TIMEOUT_S = 20.0  # a forwarded call without its own timeout waits this long for an answer
MAX_PENDING = 10_000  # forwarded calls in flight per tenant on this node; more are refused
SESSION_TTL_S = 300.0  # how long a remote caller's details answer wamp.session.get here
SESSIONS_MAX = 10_000
ANNOUNCE_DELAY_S = 0.05  # registrations come in bursts (a backend's start): one announcement
_BACKENDS_ONLY = {"eligible_authrole": [uris.ROLE_BACKEND]}


@dataclass(frozen=True, slots=True)
class Routes:
    """What one node's backends serve: their procedures as (uri, match), whether a backend there
    subscribed to `mics.event.*`, and whether anyone there subscribed to `tenant.*`."""

    procedures: frozenset[tuple[str, str]] = frozenset()
    events: bool = False
    topics: bool = False


def matches(uri: str, match: str, procedure: str) -> bool:
    """WAMP's matching policies: exact, prefix, or wildcard (empty components match any one)."""
    if match == "exact":
        return uri == procedure
    if match == "prefix":
        return procedure.startswith(uri)
    parts, wanted = uri.split("."), procedure.split(".")
    return len(parts) == len(wanted) and all(p == "" or p == w for p, w in zip(parts, wanted, strict=True))


def _rank(uri: str, match: str) -> tuple[int, int]:
    """How a dealer prefers registrations: exact, then the longest prefix, then wildcards."""
    return (2, 0) if match == "exact" else (1, len(uri)) if match == "prefix" else (0, 0)


def pack_routes(routes: Routes) -> bytes:
    return msgpack.packb([sorted(routes.procedures), routes.events, routes.topics], use_bin_type=True)  # type: ignore[no-any-return]


def unpack_routes(data: bytes) -> Routes:
    procedures, events, topics = msgpack.unpackb(data, raw=False)
    return Routes(frozenset((uri, match) for uri, match in procedures), bool(events), bool(topics))


def _unavailable(message: str) -> MicsError:
    return MicsError(errors.UNAVAILABLE, message)


class WampRelay:
    """One tenant realm across the cluster (see the module docstring). Implements mics.router.Relay."""

    def __init__(self, tenant_id: str, cluster: Cluster, port: RealmPort, reactor: Any) -> None:
        self.tenant_id = tenant_id
        self.node_id = cluster.node_id
        self._cluster = cluster
        self._port = port
        self._reactor = reactor
        self._key = TenantKeys(tenant_id).routes
        self._remote: dict[str, Routes] = {}  # other nodes' announcements
        self._announced: Routes | None = None  # ours, as Redis holds it
        self._announcing: Any = None  # the delayed call of the next announcement
        self._loaded = False  # the others' announcements were read once (or that failed)
        self._waiters: list[Deferred[None]] = []
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[Deferred[Any], str, Any]] = {}  # request -> (answer, node, timer)
        self._sessions: OrderedDict[int, tuple[float, dict[str, Any]]] = OrderedDict()
        self._outcomes = {o: metrics.RELAYED_CALLS.labels(tenant_id, o) for o in ("ok", "error", "unavailable")}
        self._subscriptions: dict[int, str] = {}  # this node's tenant.* / mics.event.* subscriptions
        port.install_relay(self)

    # -- what the router's tap asks (mics.router.Relay) --------------------------------------------------
    def serves(self, procedure: str) -> bool:
        return any(
            matches(uri, match, procedure) for routes in self._remote.values() for uri, match in routes.procedures
        )

    def call(
        self, procedure: str, args: list[Any], kwargs: dict[str, Any], caller: Caller | None, timeout_ms: int | None
    ) -> Deferred[tuple[list[Any], dict[str, Any]]]:
        node = self._serving_node(procedure)
        if node is None:
            return fail(ApplicationError(ApplicationError.NO_SUCH_PROCEDURE, f"no callee for {procedure}"))
        if len(self._pending) >= MAX_PENDING:
            return fail(_unavailable("too many calls to other nodes in flight"))
        request_id = next(self._ids)
        answer: Deferred[tuple[list[Any], dict[str, Any]]] = Deferred(lambda _d: self._drop(request_id))
        timeout_s = timeout_ms / 1000 if timeout_ms else CALL_TIMEOUT_S
        timer = self._reactor.callLater(timeout_s, self._expire, request_id, procedure)
        self._pending[request_id] = (answer, node, timer)
        who = None if caller is None else [caller.session, caller.authid, caller.authrole, caller.details]
        try:
            self._cluster.send_to(
                node, [CALL, self.tenant_id, request_id, procedure, args, kwargs, who, timeout_ms],
                on_failure=lambda: self._settle(request_id, _unavailable("Redis is unreachable")),
            )  # fmt: skip
        except (TypeError, ValueError, OverflowError) as e:  # a value msgpack cannot carry
            self._drop(request_id)
            return fail(ApplicationError(ApplicationError.INVALID_ARGUMENT, f"cannot forward this call: {e}"))
        return answer

    def published(self, topic: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]) -> None:
        for node in [n for n, routes in self._remote.items() if routes.topics]:
            if not self._send(node, [PUBLISH, self.tenant_id, topic, args, kwargs, options]):
                return

    def session_details(self, session_id: int) -> dict[str, Any] | None:
        found = self._sessions.get(session_id)
        if found is None:
            return None
        expires, details = found
        if expires < self._reactor.seconds():
            del self._sessions[session_id]
            return None
        return dict(details)

    # -- events of the `wamp` sink ----------------------------------------------------------------------
    def events_elsewhere(self, batch: Sequence[tuple[str, dict[str, Any]]]) -> None:
        """The `wamp` sink's events (topic, kwargs) for backends subscribed on other nodes."""
        for node in [n for n, routes in self._remote.items() if routes.events]:
            if not self._send(node, [EVENTS, self.tenant_id, list(batch)]):
                return

    def _send(self, node: str, operation: list[Any]) -> bool:
        """Fire and forget; False (logged) when msgpack cannot carry a value (an integer beyond 64 bits)."""
        try:
            self._cluster.send_to(node, operation)
        except (TypeError, ValueError, OverflowError) as e:
            log.warn("{kind} not forwarded: tenant_id={tenant_id} error={error}", kind=operation[0],
                     tenant_id=self.tenant_id, error=str(e))  # fmt: skip
            return False
        return True

    # -- what other nodes ask of this one (mics.node dispatches) -----------------------------------------
    def on_operation(self, kind: str, args: list[Any], origin: str) -> None:
        if kind == CALL:
            self._serve(origin, *args)
        elif kind == RESULT:
            self._answer(*args)
        elif kind == PUBLISH:
            topic, p_args, p_kwargs, options = args
            self._publish_here(topic, PublishOptions(**options), p_kwargs, p_args)
        elif kind == EVENTS:
            for topic, kwargs in args[0]:
                self._publish_here(topic, PublishOptions(**_BACKENDS_ONLY), kwargs, ())
        elif kind == ROUTES:
            self._learned(origin, unpack_routes(args[0]))

    def _serve(
        self, origin: str, request_id: int, procedure: str, args: list[Any], kwargs: dict[str, Any],
        who: list[Any] | None, timeout_ms: int | None,
    ) -> None:  # fmt: skip
        caller = None
        if who is not None:
            caller = Caller(*who)
            self._remember(caller)
        d = maybeDeferred(self._port.call_here, procedure, args, kwargs, caller, timeout_ms)

        def done(result: tuple[list[Any], dict[str, Any]]) -> None:
            self._reply(origin, [RESULT, self.tenant_id, request_id, True, *result])

        def failed(f: Any) -> None:
            e = f.value
            if isinstance(e, NoRealmSession):
                e = ApplicationError(ApplicationError.NO_SUCH_PROCEDURE, f"no callee for {procedure}")
            if not isinstance(e, ApplicationError):
                log.failure("forwarded call of {procedure} failed", failure=f, procedure=procedure)
                e = MicsError(errors.INTERNAL, "the forwarded call failed on the serving node")
            self._reply(origin, [RESULT, self.tenant_id, request_id, False, e.error, list(e.args), e.kwargs])

        d.addCallbacks(done, failed)

    def _reply(self, origin: str, operation: list[Any]) -> None:
        try:
            self._cluster.send_to(origin, operation)
        except (TypeError, ValueError, OverflowError) as e:  # the callee answered what msgpack cannot carry
            request_id = operation[2]
            message = f"cannot forward the answer: {e}"
            self._cluster.send_to(origin, [RESULT, self.tenant_id, request_id, False,
                                           ApplicationError.INVALID_ARGUMENT, [message], {}])  # fmt: skip

    def _answer(self, request_id: int, ok: bool, *payload: Any) -> None:
        if ok:
            args, kwargs = payload
            self._settle(request_id, None, (list(args or ()), dict(kwargs or {})))
        else:
            error, args, kwargs = payload
            self._settle(request_id, ApplicationError(error, *(args or ()), **(kwargs or {})))

    def _publish_here(self, topic: str, options: PublishOptions, kwargs: dict[str, Any], args: Any) -> None:
        try:
            self._port.publish(topic, options, kwargs, args)
        except NoRealmSession:
            return  # the realm is being created: nobody subscribed here yet

    # -- pending calls ------------------------------------------------------------------------------------
    def _settle(self, request_id: int, error: BaseException | None, result: Any = None) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is None:
            return  # answered, expired or canceled already
        answer, _node, timer = entry
        if timer.active():
            timer.cancel()
        if error is None:
            self._outcomes["ok"].inc()
            answer.callback(result)
        else:
            unavailable = isinstance(error, MicsError) and error.error == errors.UNAVAILABLE.uri
            self._outcomes["unavailable" if unavailable else "error"].inc()
            answer.errback(error)

    def _drop(self, request_id: int) -> None:
        entry = self._pending.pop(request_id, None)
        if entry is not None and entry[2].active():
            entry[2].cancel()

    def _expire(self, request_id: int, procedure: str) -> None:
        self._settle(request_id, _unavailable(f"the node serving {procedure} did not answer in time"))

    def _serving_node(self, procedure: str) -> str | None:
        best: tuple[int, int] | None = None
        nodes: list[str] = []
        for node, routes in self._remote.items():
            for uri, match in routes.procedures:
                if not matches(uri, match, procedure):
                    continue
                rank = _rank(uri, match)
                if best is None or rank > best:
                    best, nodes = rank, [node]
                elif rank == best and node not in nodes:
                    nodes.append(node)
        return random.choice(nodes) if nodes else None

    def _remember(self, caller: Caller) -> None:
        sessions = self._sessions
        sessions[caller.session] = (self._reactor.seconds() + SESSION_TTL_S, caller.details)
        sessions.move_to_end(caller.session)
        while len(sessions) > SESSIONS_MAX:
            sessions.popitem(last=False)

    # -- routes -----------------------------------------------------------------------------------------
    def local_changed(self) -> None:
        """A backend here registered or unregistered, or the subscriptions changed: announce (debounced)."""
        if self._announcing is None or not self._announcing.active():
            self._announcing = self._reactor.callLater(ANNOUNCE_DELAY_S, self._announce_logged)

    def subscription_created(self, subscription_id: int, uri: str) -> None:
        """A subscription appeared here (the router's meta event): `tenant.*` ones (anyone's) mean this
        node wants backends' topics, `mics.event.*` ones (only backends may) the wamp sink's events."""
        kind = "topics" if uri.startswith(uris.TENANT_PREFIX) else "events" if uri.startswith(uris.EVENT_PREFIX) else ""
        if kind:
            self._subscriptions[subscription_id] = kind
            self.local_changed()

    def subscription_deleted(self, subscription_id: int) -> None:
        if self._subscriptions.pop(subscription_id, None):
            self.local_changed()

    def _routes(self) -> Routes:
        kinds = set(self._subscriptions.values())
        return Routes(self._port.procedures(), "events" in kinds, "topics" in kinds)

    def _announce_logged(self) -> None:
        Deferred.fromCoroutine(self.announce()).addErrback(self._redis_failed, "announce")

    async def announce(self) -> None:
        routes = self._routes()
        if routes == self._announced:
            return
        packed = pack_routes(routes)
        redis = self._cluster.redis
        self._announced = None  # until Redis has it: a failure is retried on the next tick
        if routes == Routes():
            await redis.hdel(self._key, self.node_id)
        else:
            await redis.hset(self._key, self.node_id, packed)
        self._announced = routes
        self._cluster.broadcast([ROUTES, self.tenant_id, packed])

    async def load(self) -> None:
        """Read every node's announcement (at start, and now and then: broadcasts are at-most-once)."""
        try:
            flat = await self._cluster.redis.execute_command("HGETALL", self._key)
        finally:
            self._loaded = True
            waiters, self._waiters = self._waiters, []
            for waiter in waiters:
                waiter.callback(None)
        remote = {}
        for i in range(0, len(flat), 2):
            node = flat[i].decode()
            if node != self.node_id:
                remote[node] = unpack_routes(flat[i + 1])
        self._remote = remote

    async def ready(self) -> None:
        """Until the first read of the others' announcements: a tenant this node just learned of
        must not refuse its first join because the hooks on another node were not known yet."""
        if not self._loaded:
            waiter: Deferred[None] = Deferred()
            self._waiters.append(waiter)
            await waiter

    def tick(self) -> None:
        """Now and then (the node's tick): read the others again, write ours if it never landed."""
        if self._announced is None:
            self._announce_logged()
        Deferred.fromCoroutine(self.load()).addErrback(self._redis_failed, "load")

    def _learned(self, node: str, routes: Routes) -> None:
        if routes == Routes():
            self._remote.pop(node, None)
        else:
            self._remote[node] = routes

    def rejoined(self) -> None:
        """Redis lost our state (restart without persistence): announce again."""
        self._announced = None
        self._announce_logged()

    async def node_lost(self, node: str) -> None:
        """A node died or left (this one, at shutdown): its routes go, calls waiting on it fail."""
        self._remote.pop(node, None)
        for request_id in [r for r, (_a, n, _t) in self._pending.items() if n == node]:
            self._settle(request_id, _unavailable(f"node {node} is gone"))
        await self._cluster.redis.hdel(self._key, node)
        if node == self.node_id:
            self._announced = Routes()
            self._cluster.broadcast([ROUTES, self.tenant_id, pack_routes(Routes())])

    def _redis_failed(self, f: Any, what: str) -> None:
        metrics.REDIS_FAILURES.labels("relay").inc()
        log.warn("relay {what} failed: tenant_id={tenant_id} error={error}", what=what, tenant_id=self.tenant_id,
                 error=f.getErrorMessage())  # fmt: skip

    def close(self) -> None:
        if self._announcing is not None and self._announcing.active():
            self._announcing.cancel()
        for request_id in list(self._pending):
            self._settle(request_id, _unavailable("the node is shutting down"))
