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
  node lost: `mics.error.unavailable`. A caller that asked for progressive results gets them: each
  goes back numbered (`progress`), and as the pool's publishes may overtake each other this node
  puts them back in order (`ProgressOrder`) and hands on the answer only after every one before
  it. A canceled call (or one this node gave up on) is canceled on the serving node too (`cancel`,
  sent once Redis took the call, so it cannot overtake it), which interrupts the callee;
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
from mics.cluster import CALL, CANCEL, EVENTS, PROGRESS, PUBLISH, RESULT, ROUTES, Cluster
from mics.cluster.redis import TenantKeys
from mics.errors import MicsError
from mics.router import Caller, NoRealmSession, Progress, RealmPort

log = make_logger()

CALL_TIMEOUT_S = 20.0  # a forwarded call without its own timeout waits this long for an answer (or the next progress)
MAX_PENDING = 10_000  # forwarded calls in flight per tenant on this node; more are refused
MAX_EARLY_PER_CALL = 1_000  # progressive results of one call held until the ones before them come
MAX_EARLY = 20_000  # of all calls of a tenant on this node; past either bound the call fails
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


class OutOfOrder(Exception):
    """More progressive results arrived ahead of a missing one than a call may hold."""


class ProgressOrder:
    """One call's progressive results back in the order the callee sent them (numbered from 0):
    Redis publishes go out on a pool of connections and may overtake each other."""

    def __init__(self, limit: int = MAX_EARLY_PER_CALL) -> None:
        self.next = 0  # the number of the next result to hand on
        self._early: dict[int, Any] = {}
        self._limit = limit

    @property
    def held(self) -> int:
        """Results that arrived before one that comes earlier."""
        return len(self._early)

    def arrived(self, n: int, item: Any) -> list[Any]:
        """Result number `n` arrived: the results now ready to hand on, in order (none if one before
        it is missing; a repeat is dropped). OutOfOrder past the limit of held results."""
        if n < self.next or n in self._early:
            return []
        if n > self.next:
            if len(self._early) >= self._limit:
                raise OutOfOrder(f"progressive result {n} arrived while {self.next} is missing")
            self._early[n] = item
            return []
        ready = [item]
        self.next += 1
        while self.next in self._early:
            ready.append(self._early.pop(self.next))
            self.next += 1
        return ready

    def complete(self, count: int) -> bool:
        """Whether the first `count` results were all handed on."""
        return self.next >= count


class _Pending:
    """A call this node forwarded, until its answer: where it went, its timer, and for a progressive
    call the order of its results and an answer that came before some of them."""

    __slots__ = ("answer", "held", "idle_s", "node", "on_progress", "order", "sent", "timer")

    def __init__(self, answer: Deferred[Any], node: str, timer: Any, on_progress: Progress | None,
                 idle_s: float | None) -> None:  # fmt: skip
        self.answer = answer
        self.node = node
        self.timer = timer
        self.sent: Deferred[Any] | None = None  # fires once Redis took the call
        self.on_progress = on_progress
        self.order = ProgressOrder(MAX_EARLY_PER_CALL) if on_progress is not None else None
        self.idle_s = idle_s  # without a timeout of its own: how long it may stay silent
        self.held: tuple[BaseException | None, Any, int] | None = None  # (error, result, progressed)


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
        self._pending: dict[int, _Pending] = {}  # calls this node forwarded, by request id
        self._early = 0  # progressive results held across them (ProgressOrder)
        self._serving: dict[tuple[str, int], Deferred[Any] | None] = {}  # (origin, request) -> the call here
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
        self, procedure: str, args: list[Any], kwargs: dict[str, Any], caller: Caller | None, timeout_ms: int | None,
        on_progress: Progress | None = None,
    ) -> Deferred[tuple[list[Any], dict[str, Any]]]:  # fmt: skip
        node = self._serving_node(procedure)
        if node is None:
            return fail(ApplicationError(ApplicationError.NO_SUCH_PROCEDURE, f"no callee for {procedure}"))
        if len(self._pending) >= MAX_PENDING:
            return fail(_unavailable("too many calls to other nodes in flight"))
        request_id = next(self._ids)
        answer: Deferred[tuple[list[Any], dict[str, Any]]] = Deferred(lambda _d: self._drop(request_id, tell=True))
        timeout_s = timeout_ms / 1000 if timeout_ms else CALL_TIMEOUT_S
        timer = self._reactor.callLater(timeout_s, self._expire, request_id, procedure)
        pending = self._pending[request_id] = _Pending(answer, node, timer, on_progress,
                                                       None if timeout_ms else CALL_TIMEOUT_S)  # fmt: skip
        who = None if caller is None else [caller.session, caller.authid, caller.authrole, caller.details]
        operation = [CALL, self.tenant_id, request_id, procedure, args, kwargs, who, timeout_ms]
        if on_progress is not None:
            operation.append(True)  # (only then: a node of the release before reads seven fields)
        try:
            pending.sent = self._cluster.send_to(
                node, operation, on_failure=lambda: self._settle(request_id, _unavailable("Redis is unreachable"))
            )
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
        elif kind == PROGRESS:
            self._progressed(*args)
        elif kind == CANCEL:
            self._cancel_here(origin, args[0])
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
        who: list[Any] | None, timeout_ms: int | None, progress: bool = False,
    ) -> None:  # fmt: skip
        caller = None
        if who is not None:
            caller = Caller(*who)
            self._remember(caller)
        key = (origin, request_id)
        progressed = [0]  # progressive results sent back so far

        def on_progress(p_args: list[Any], p_kwargs: dict[str, Any]) -> None:
            if key not in self._serving:
                return  # canceled, or ended by a result that could not travel
            try:
                self._cluster.send_to(origin, [PROGRESS, self.tenant_id, request_id, progressed[0], p_args, p_kwargs])
            except (TypeError, ValueError, OverflowError) as e:  # the end of the call: no gap in what it streams
                call = self._serving.pop(key)
                self._reply(origin, [RESULT, self.tenant_id, request_id, False, ApplicationError.INVALID_ARGUMENT,
                                     [f"cannot forward a progressive result: {e}"], {}], progressed[0])  # fmt: skip
                if call is not None:
                    call.cancel()
                return
            progressed[0] += 1

        self._serving[key] = None  # a callee may stream before call_here returns
        d = maybeDeferred(self._port.call_here, procedure, args, kwargs, caller, timeout_ms,
                          on_progress if progress else None)  # fmt: skip
        if key in self._serving:
            self._serving[key] = d

        def done(result: tuple[list[Any], dict[str, Any]]) -> None:
            if key in self._serving:
                del self._serving[key]
                self._reply(origin, [RESULT, self.tenant_id, request_id, True, *result], progressed[0])

        def failed(f: Any) -> None:
            if key not in self._serving:
                return  # canceled by the caller's node (or ended above): nobody waits for this answer
            del self._serving[key]
            e = f.value
            if isinstance(e, NoRealmSession):
                e = ApplicationError(ApplicationError.NO_SUCH_PROCEDURE, f"no callee for {procedure}")
            if not isinstance(e, ApplicationError):
                log.failure("forwarded call of {procedure} failed", failure=f, procedure=procedure)
                e = MicsError(errors.INTERNAL, "the forwarded call failed on the serving node")
            self._reply(origin, [RESULT, self.tenant_id, request_id, False, e.error, list(e.args), e.kwargs],
                        progressed[0])  # fmt: skip

        d.addCallbacks(done, failed)

    def _cancel_here(self, origin: str, request_id: int) -> None:
        """The caller's node canceled a call this node serves: interrupt the callee."""
        call = self._serving.pop((origin, request_id), None)
        if call is not None:
            call.cancel()

    def _reply(self, origin: str, operation: list[Any], progressed: int = 0) -> None:
        """A RESULT, saying how many progressive results went before it (when any did: a node of the
        release before reads a RESULT without that count)."""
        if progressed:
            operation.append(progressed)
        try:
            self._cluster.send_to(origin, operation)
        except (TypeError, ValueError, OverflowError) as e:  # the callee answered what msgpack cannot carry
            request_id = operation[2]
            message = f"cannot forward the answer: {e}"
            failure = [RESULT, self.tenant_id, request_id, False, ApplicationError.INVALID_ARGUMENT, [message], {}]
            self._cluster.send_to(origin, failure + ([progressed] if progressed else []))

    def _answer(self, request_id: int, ok: bool, *payload: Any) -> None:
        if ok:
            args, kwargs, *progressed = payload
            error, result = None, (list(args or ()), dict(kwargs or {}))
        else:
            uri, args, kwargs, *progressed = payload
            error, result = ApplicationError(uri, *(args or ()), **(kwargs or {})), None
        count = progressed[0] if progressed else 0
        pending = self._pending.get(request_id)
        if pending is not None and pending.order is not None and not pending.order.complete(count):
            pending.held = (error, result, count)  # once the progressive results before it are handed on
            return
        self._settle(request_id, error, result)

    def _progressed(self, request_id: int, n: int, args: list[Any], kwargs: dict[str, Any]) -> None:
        """The n-th progressive result of a call this node forwarded: handed on in order."""
        pending = self._pending.get(request_id)
        if pending is None or pending.order is None or pending.on_progress is None:
            return  # answered, expired or canceled already
        order = pending.order
        before = order.held
        try:
            if n > order.next and self._early >= MAX_EARLY:
                raise OutOfOrder("too many progressive results held for this tenant")
            ready = order.arrived(n, (list(args or ()), dict(kwargs or {})))
        except OutOfOrder as e:
            self._settle(request_id, _unavailable(f"progressive results were lost on the way: {e}"), tell=True)
            return
        self._early += order.held - before
        if pending.idle_s is not None and pending.timer.active():
            pending.timer.reset(pending.idle_s)  # alive: the call's own timeout is the only absolute bound
        for p_args, p_kwargs in ready:
            try:
                pending.on_progress(p_args, p_kwargs)
            except Exception:
                log.failure("a progressive result could not be handed on: tenant_id={tenant_id}",
                            tenant_id=self.tenant_id)  # fmt: skip
        if pending.held is not None and order.complete(pending.held[2]) and request_id in self._pending:
            error, result, _count = pending.held
            self._settle(request_id, error, result)

    def _publish_here(self, topic: str, options: PublishOptions, kwargs: dict[str, Any], args: Any) -> None:
        try:
            self._port.publish(topic, options, kwargs, args)
        except NoRealmSession:
            return  # the realm is being created: nobody subscribed here yet

    # -- pending calls ------------------------------------------------------------------------------------
    def _settle(self, request_id: int, error: BaseException | None, result: Any = None, tell: bool = False) -> None:
        """Answer a pending call (`tell`: and cancel it on the serving node, which still runs it)."""
        pending = self._forget(request_id, tell)
        if pending is None:
            return  # answered, expired or canceled already
        if error is None:
            self._outcomes["ok"].inc()
            pending.answer.callback(result)
        else:
            unavailable = isinstance(error, MicsError) and error.error == errors.UNAVAILABLE.uri
            self._outcomes["unavailable" if unavailable else "error"].inc()
            pending.answer.errback(error)

    def _drop(self, request_id: int, tell: bool = False) -> None:
        self._forget(request_id, tell)

    def _forget(self, request_id: int, tell: bool) -> _Pending | None:
        pending = self._pending.pop(request_id, None)
        if pending is None:
            return None
        if pending.timer.active():
            pending.timer.cancel()
        if pending.order is not None:
            self._early -= pending.order.held
        if tell:
            self._tell_canceled(pending, request_id)
        return pending

    def _tell_canceled(self, pending: _Pending, request_id: int) -> None:
        """CANCEL to the serving node, once Redis took the CALL (so it arrives after it)."""
        node, operation = pending.node, [CANCEL, self.tenant_id, request_id]

        def send(result: Any = None) -> Any:
            self._cluster.send_to(node, operation)
            return result

        if pending.sent is None or pending.sent.called:
            send()
        else:
            pending.sent.addCallback(send)

    def _expire(self, request_id: int, procedure: str) -> None:
        error = _unavailable(f"the node serving {procedure} did not answer in time")
        self._settle(request_id, error, tell=True)

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
        for request_id in [r for r, pending in self._pending.items() if pending.node == node]:
            self._settle(request_id, _unavailable(f"node {node} is gone"))
        for key in [key for key in self._serving if key[0] == node]:  # nobody waits for these answers
            call = self._serving.pop(key)
            if call is not None:
                call.cancel()
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
        calls, self._serving = list(self._serving.values()), {}
        for call in calls:
            if call is not None:
                call.cancel()
