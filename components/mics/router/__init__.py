"""Everything MICS reads or changes inside Crossbar's router worker, in one package.

MICS runs inside the router worker. The public API (publish, call, the meta API) covers what it
needs, but some things are much cheaper, or only possible, through internals of Crossbar 26.10,
Autobahn 26.10 and Twisted 26.10. They live here and nowhere else (pyproject.toml bounds the
Crossbar version; tests/unit/test_router.py checks this module on a real in-process router, the
integration tests the rest on a real node):

- this module: the trusted fan-out and in-process session closes of one realm (`RealmPort`), and
  the worker's controller;
- `mics.router.frames`: pre-built frames, one EVENT written to many WebSocket connections as the
  same bytes, straight to the sockets (`FrameWriter`);
- `mics.router.guards`: bounds on what one connection or client address can take (handshake and
  HELLO deadlines, slow consumers, wampcra login throttling);
- `mics.router.speedups`: measured fixes for library costs on the hot path (lazy debug formatting,
  C JSON decoding, GC tuning);
- `mics.router.run`: `crossbar start` with each log line naming its level.

Internals this module uses:

- the trusted fan-out (`RealmPort.deliver`, and `deliver_all` for live presence):
  `Router._broker._subscription_map`, `Router._session_id_to_session` and `Router.send` (the cap
  on a session's presence watches reads `Router._broker._session_to_subscriptions`). It does what
  the broker does for a publish with eligible_authid/exclude, minus what only an untrusted
  publisher needs (re-authorizing our own publish, option parsing, retention, a Deferred per
  publication): about a third of the
  router's CPU per send; its writes go through `mics.router.frames` (which falls back to
  `Router.send` per connection), and it reads the router's tracing flags and message statistics.
  Without them: `publish()` through our realm component;
- closing a session in process (`RealmPort.close_session`): `RouterSession.leave(reason,
  message)` through `_session_id_to_session`, which also works while the node shuts down.
  Without it: `wamp.session.kill`;
- the worker's controller, which `crossbar start` does not pass to components
  (crossbar-notes.md section 1): `session._transport._router._factory._worker`;
- in cluster mode, the realm's dealer and broker (`RealmTap`): a call this node's router has no
  callee for (a backend's `tenant.*` procedure or `mics.hook.*` hook on another node) is authorized
  here by the router, then handed to the cluster; a backend's `tenant.*` publish is handed over
  too; `wamp.session.get` answers for a remote caller whose call this node served. The
  registration map also says which procedures this node's backends serve (`RealmTap.procedures`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import txaio
from autobahn import util
from autobahn.wamp import message
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, CallResult, PublishOptions
from twisted.internet.defer import CancelledError, Deferred, fail

from mics import errors, metrics, uris
from mics.logs import RateLimitedLog
from mics.router.frames import FrameWriter, PreparedMessage

txaio.use_twisted()  # Crossbar runs on Twisted; `python -m mics.router.run` imports us before it selects it
log = txaio.make_logger()
_limited = RateLimitedLog(log)

TESTED_CROSSBAR = "26.10"


class NoRealmSession(Exception):
    """The realm's MICS component has not joined (yet): nothing can be called or published."""


class Fanout:
    """Straight into the fan-out of one realm's router, as a trusted publisher."""

    def __init__(self, router: Any) -> None:
        self._router = router
        self._subscriptions = router._broker._subscription_map
        self._by_id: dict[int, Any] = router._session_id_to_session
        self._writer = FrameWriter() if _has(router, "_trace_traffic", "_is_traced", "_message_stats") else None

    def deliver(self, topic: str, authids: Iterable[str], exclude: int | None, kwargs: dict[str, Any]) -> None:
        observations = self._subscriptions.match_observations(topic)
        if not observations:
            return
        excluded = self._by_id.get(exclude) if exclude is not None else None
        wanted = _addressed(authids, observations)
        self._fan(topic, kwargs, ((o, [r for r in o.observers if r._authid in wanted and r is not excluded])
                                  for o in observations))  # fmt: skip

    def deliver_all(self, topic: str, kwargs: dict[str, Any]) -> int:
        """This event to every subscriber of `topic` (live presence: any user may watch); returns
        how many sessions it was sent to. The router's loop over the sessions subscribed is all
        there is, and nothing happens when nobody is."""
        observations = self._subscriptions.match_observations(topic)
        if not observations:
            return 0
        return self._fan(topic, kwargs, ((o, o.observers) for o in observations))

    def _fan(self, topic: str, kwargs: dict[str, Any], targets: Iterable[tuple[Any, Iterable[Any]]]) -> int:
        """One EVENT per subscription to its receivers, framed once per serializer and written
        through `mics.router.frames` (Router.send for what it cannot write); returns how many
        sessions it went to."""
        publication = util.id()
        router = self._router
        send = router.send
        # a traced router logs every message it sends: let it see these too
        writer = self._writer
        write = None if writer is None or router._trace_traffic or router._is_traced else writer.write
        sent = written = 0
        for observation, receivers in targets:
            # pattern subscribers learn the concrete topic from the event details, as from the broker
            pattern_topic = None if observation.match == message.Subscribe.MATCH_EXACT else topic
            event = None
            frames: dict[Any, PreparedMessage] = {}
            for receiver in receivers:
                protocol = receiver._transport
                if receiver._session_id and protocol:
                    if event is None:
                        event = message.Event(observation.id, publication, kwargs=kwargs, topic=pattern_topic)
                    try:
                        if write is not None and write(protocol, event, frames):
                            written += 1
                        else:
                            send(receiver, event)
                        sent += 1
                    except Exception as e:  # e.g. PayloadExceededError for one receiver: the others still get it
                        _limited.warn(("undelivered", type(e).__name__), "event not delivered: topic={topic} "
                                      "error={error}", topic=topic, error=str(e))  # fmt: skip
        if written:  # the router's message statistics, as Router.send keeps them
            stats = router._message_stats["sent"]
            stats["event"] = stats.get("event", 0) + written
        return sent

    def subscriptions_under(self, session_id: int, prefix: str) -> int:
        """How many subscriptions a session holds on topics under `prefix` (a cap on presence watches)."""
        session = self._by_id.get(session_id)
        by_session = getattr(self._router._broker, "_session_to_subscriptions", None) or {}
        held = by_session.get(session, ()) if session is not None else ()
        return sum(1 for subscription in held if subscription.uri.startswith(prefix))

    def session(self, session_id: int) -> Any:
        return self._by_id.get(session_id)


def _has(obj: Any, *names: str) -> bool:
    return all(hasattr(obj, name) for name in names)


def _addressed(authids: Iterable[str], observations: list[Any]) -> Any:
    """The authids to keep subscribers of: a container to test each subscriber's authid against.

    A group of 10,000 members usually has a few subscribers on this node: the member list is
    intersected with the subscribers' authids (one C-speed pass that hashes each member and
    stores only the few found), never looked up member by member nor copied into a set of its own.
    """
    if isinstance(authids, set | frozenset) or (isinstance(authids, tuple) and len(authids) < 8):
        return authids
    subscribed = {r._authid for observation in observations for r in observation.observers}
    return subscribed.intersection(authids)


def make_fanout(router: Any) -> Fanout | None:
    """The trusted fan-out for a Crossbar router that has the internals it uses, else None."""
    try:
        return Fanout(router)
    except AttributeError:
        log.warn("router internals not available (Crossbar is not {v}.x): delivering through publish()",
                 v=TESTED_CROSSBAR)  # fmt: skip
        return None


_held_back: dict[int, Any] = {}  # session id -> the delayed call that reads from its connection again


class RealmPort:
    """How a tenant runtime reaches its realm: deliver events, close sessions, call, publish.

    Bound to the realm's router when the realm exists (`bind_router`) and to our component's session
    when it joins (`bind_session`). Until then deliveries have nobody to reach, and calls and
    publishes raise NoRealmSession: what a tenant can do never depends on a back-reference.
    """

    def __init__(self, realm: str) -> None:
        self.realm = realm
        self._fanout: Fanout | None = None
        self._session: Any = None
        self._relay: Relay | None = None
        self._tap: RealmTap | None = None

    @property
    def is_bound(self) -> bool:
        return self._fanout is not None or self._session is not None

    @property
    def fast_path(self) -> bool:
        """Whether deliveries go straight into the router's fan-out (else publish())."""
        return self._fanout is not None

    def bind_router(self, router: Any) -> None:
        self._fanout = make_fanout(router) if router is not None else None
        if router is not None and self._relay is not None:
            self._tap = make_tap(router, self._relay)

    def install_relay(self, relay: Relay) -> None:
        """Cluster mode: what this node's router cannot serve goes to `relay` (see RealmTap)."""
        self._relay = relay

    def bind_session(self, session: Any) -> None:
        """Our realm component joined (a session) or left (None)."""
        self._session = session

    def deliver(self, topic: str, authids: Iterable[str], exclude: int | None, kwargs: dict[str, Any]) -> None:
        """This event on this topic to the sessions of these users, except the `exclude` session: the
        semantics of a publish with eligible_authid and exclude."""
        if self._fanout is not None:
            self._fanout.deliver(topic, authids, exclude, kwargs)
        elif self._session is not None:
            options = PublishOptions(eligible_authid=list(authids), exclude=[exclude] if exclude else None)
            self._session.publish(topic, options=options, **kwargs)

    def deliver_all(self, topic: str, kwargs: dict[str, Any]) -> int:
        """This event to every subscriber of `topic`; returns how many sessions got it (-1: unknown,
        it went through publish())."""
        if self._fanout is not None:
            return self._fanout.deliver_all(topic, kwargs)
        if self._session is not None:
            self._session.publish(topic, **kwargs)
            return -1
        return 0

    def subscriptions_under(self, session_id: int, prefix: str) -> int:
        """How many subscriptions the session holds under `prefix` (0 without the router internals)."""
        return self._fanout.subscriptions_under(session_id, prefix) if self._fanout is not None else 0

    def close_session(self, session_id: int, reason: errors.Reason, message: str) -> None:
        """End a session with a MICS GOODBYE reason, in process when we can (no WAMP round trip)."""
        metrics.CLOSES.labels(self.realm, reason.uri.rsplit(".", 1)[-1]).inc()
        if self._fanout is not None:
            session = self._fanout.session(session_id)
            if session is not None:
                session.leave(reason=reason.uri, message=message)
            return
        if self._session is not None:
            d = self._session.call(uris.SESSION_KILL, session_id, reason=reason.uri, message=message)
            d.addErrback(lambda f: log.debug("kill of {sid} failed: {f}", sid=session_id, f=f.getErrorMessage()))

    def hold_back(self, session_id: int, seconds: float) -> None:
        """Stop reading from a session's connection for `seconds` (a tenant over its fair share on a
        saturated node): what it sends meanwhile waits in the kernel and in the client instead of
        costing the router a decode and a refusal per call. TCP flow control pushes back on it."""
        if self._fanout is None or session_id in _held_back:
            return
        from mics.router.guards import socket_of

        session = self._fanout.session(session_id)
        socket = socket_of(getattr(getattr(session, "_transport", None), "transport", None))
        if socket is None or not hasattr(socket, "stopReading"):
            return
        socket.stopReading()
        metrics.HELD_BACK.labels(self.realm).inc()

        def resume() -> None:
            del _held_back[session_id]
            if not getattr(socket, "disconnected", True):
                socket.startReading()

        from twisted.internet import reactor

        _held_back[session_id] = reactor.callLater(seconds, resume)

    def call(self, procedure: str, *args: Any, **kwargs: Any) -> Any:
        """A WAMP call in the realm as our component (hooks over WAMP, the meta API)."""
        if self._session is None:
            raise NoRealmSession(self.realm)
        return self._session.call(procedure, *args, **kwargs)

    def publish(
        self, topic: str, options: PublishOptions, kwargs: dict[str, Any], args: Iterable[Any] = ()
    ) -> None:
        """An ordinary publish as our component (events to backends, topics forwarded from other nodes)."""
        if self._session is None:
            raise NoRealmSession(self.realm)
        self._session.publish(topic, *args, options=options, **kwargs)

    # -- cluster mode (RealmTap) ------------------------------------------------------------------
    def call_here(
        self, procedure: str, args: list[Any], kwargs: dict[str, Any], caller: Caller | None, timeout_ms: int | None
    ) -> Deferred[tuple[list[Any], dict[str, Any]]]:
        """Call a callee of this node's router for another node (never handed on again), as `caller`
        when the call was disclosed there. Answers (args, kwargs) or fails with ApplicationError."""
        if self._session is None:
            raise NoRealmSession(self.realm)
        if self._tap is not None and not self._tap.has_callee(procedure):
            return fail(ApplicationError(ApplicationError.NO_SUCH_PROCEDURE, f"no callee for {procedure} here"))
        if "options" in kwargs:  # Autobahn's call() takes that keyword for itself
            return fail(ApplicationError(ApplicationError.INVALID_ARGUMENT, "a keyword argument named 'options' "
                                         "cannot be forwarded to another node"))  # fmt: skip
        forward_for = [caller.forward_for()] if caller is not None else None
        options = CallOptions(timeout=timeout_ms or None, forward_for=forward_for)
        if self._tap is not None:
            self._tap.local_only = True  # the router processes our CALL synchronously, in this call
        try:
            d: Deferred[Any] = self._session.call(procedure, *args, options=options, **kwargs)
        finally:
            if self._tap is not None:
                self._tap.local_only = False
        return d.addCallback(_as_args)

    def procedures(self) -> frozenset[tuple[str, str]]:
        """The (uri, match) of what this node's backends registered that other nodes may call."""
        return self._tap.procedures() if self._tap is not None else frozenset()


# -- cluster mode: what this node's router cannot serve alone ------------------------------------------
# A backend connected to any node serves the whole cluster: its hooks and `tenant.*` procedures
# are called from every node, its `tenant.*` publishes reach subscribers on every node.
FORWARDED_CALLS = (uris.TENANT_PREFIX, uris.HOOK_PREFIX)
FORWARDED_PER_SESSION = 100  # calls one session may have waiting on other nodes: one user cannot take them all
_PUBLISH_OPTIONS = ("eligible", "eligible_authid", "eligible_authrole", "exclude", "exclude_authid",
                    "exclude_authrole", "retain")  # fmt: skip


@dataclass(frozen=True, slots=True)
class Caller:
    """A disclosed caller whose call another node serves: what the callee sees as the caller, and what
    `wamp.session.get(caller)` answers there (the session's details without its transport)."""

    session: int
    authid: str | None
    authrole: str | None
    details: dict[str, Any]

    def forward_for(self) -> dict[str, Any]:
        return {"session": self.session, "authid": self.authid, "authrole": self.authrole}


class Relay(Protocol):
    """The cluster side of a realm (mics.cluster.relay.WampRelay)."""

    def serves(self, procedure: str) -> bool:
        """Whether a backend on another node registered a procedure matching `procedure`."""

    def call(
        self, procedure: str, args: list[Any], kwargs: dict[str, Any], caller: Caller | None, timeout_ms: int | None
    ) -> Deferred[tuple[list[Any], dict[str, Any]]]:
        """Have another node serve the call: (args, kwargs), or an ApplicationError."""

    def published(self, topic: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]) -> None:
        """A backend here published `topic` (authorized): subscribers on other nodes get it too."""

    def session_details(self, session_id: int) -> dict[str, Any] | None:
        """`wamp.session.get` for a session of another node whose call this node served lately."""


class RealmTap:
    """Wraps one realm's dealer and broker (instance attributes, this router only).

    - A CALL to `tenant.*` or `mics.hook.*` that no local callee matches, but a backend on another
      node registered, is authorized by this router as the dealer would (the user's authorizer on
      the user's node) and handed to the relay; its answer goes back as RESULT or ERROR. A CANCEL
      cancels it. Everything else goes to the dealer untouched.
    - `wamp.session.get` of a session that is not here but whose call this node served lately is
      answered from the details that call carried.
    - A backend's PUBLISH to `tenant.*` is processed as always, then, if this router authorizes
      it, handed to the relay for the other nodes.
    """

    def __init__(self, router: Any, relay: Relay) -> None:
        self._router = router
        self._relay = relay
        dealer, broker = router._dealer, router._broker
        self._registrations = dealer._registration_map
        self._sessions: dict[int, Any] = router._session_id_to_session
        self._strict = dealer._option_uri_strict
        self._dealer_call, self._dealer_cancel = dealer.processCall, dealer.processCancel
        self._broker_publish = broker.processPublish
        self._forwarded: dict[tuple[int, int], Deferred[Any]] = {}  # (session, request) -> relay call
        self._per_session: dict[int, int] = {}  # session -> its forwarded calls in flight
        self.local_only = False  # set while we call a local callee for another node
        dealer.processCall = self._process_call
        dealer.processCancel = self._process_cancel
        broker.processPublish = self._process_publish

    def has_callee(self, procedure: str) -> bool:
        return self._registrations.best_matching_observation(procedure) is not None

    def procedures(self) -> frozenset[tuple[str, str]]:
        """Registrations under `tenant.` and `mics.hook.` held by backend sessions."""
        return frozenset(
            (o.uri, o.match)
            for o in list(self._registrations._observation_id_to_observation.values())
            if o.uri.startswith(FORWARDED_CALLS) and any(s._authrole == uris.ROLE_BACKEND for s in o.observers)
        )

    # -- calls ----------------------------------------------------------------------------------------
    def _process_call(self, session: Any, call: Any) -> None:
        procedure = call.procedure
        if not self.local_only and call.payload is None:
            if procedure == uris.SESSION_GET:
                details = self._remote_session(call.args)
                if details is not None:
                    self._authorized(session, call, lambda _a: self._reply(session, call, [details], None))
                    return
            elif (
                procedure.startswith(FORWARDED_CALLS)
                and self._valid(procedure)
                and not self.has_callee(procedure)
                and self._relay.serves(procedure)
            ):
                self._authorized(session, call, lambda a: self._forward(session, call, a))
                return
        self._dealer_call(session, call)

    def _remote_session(self, args: Any) -> dict[str, Any] | None:
        session_id = args[0] if args and len(args) == 1 else None
        if not isinstance(session_id, int) or session_id in self._sessions:
            return None
        return self._relay.session_details(session_id)

    def _valid(self, uri: str) -> bool:
        pattern = message._URI_PAT_STRICT_NON_EMPTY if self._strict else message._URI_PAT_LOOSE_NON_EMPTY
        return pattern.match(uri) is not None

    def _authorized(self, session: Any, call: Any, then: Callable[[dict[str, Any]], None]) -> None:
        """As the dealer does: this router's authorization (static role or the realm's authorizer)."""
        d = self._router.authorize(session, call.procedure, "call", options=call.marshal_options())

        def decided(authorization: dict[str, Any]) -> None:
            if authorization["allow"]:
                then(authorization)
            else:
                self._error(session, call, ApplicationError.NOT_AUTHORIZED,
                            [f"not authorized to call procedure '{call.procedure}'"])  # fmt: skip

        def failed(f: Any) -> None:
            log.warn("authorization of a forwarded call failed: {error}", error=f.getErrorMessage())
            self._error(session, call, ApplicationError.AUTHORIZATION_FAILED, ["authorization failed"])

        txaio.add_callbacks(d, decided, failed)

    def _forward(self, session: Any, call: Any, authorization: dict[str, Any]) -> None:
        session_id = session._session_id
        if self._per_session.get(session_id, 0) >= FORWARDED_PER_SESSION:
            busy = errors.MicsError(errors.UNAVAILABLE, "too many calls of this session in flight")
            self._error(session, call, busy.error, list(busy.args), busy.kwargs)
            return
        self._per_session[session_id] = self._per_session.get(session_id, 0) + 1
        caller = None
        if authorization.get("disclose"):
            details = session.session_details.marshal() if session.session_details else {}
            details.pop("transport", None)  # HTTP headers, cookies: not for another node
            caller = Caller(session._session_id, session._authid, session._authrole, details)
        key = (session_id, call.request)
        d = self._relay.call(call.procedure, list(call.args or ()), dict(call.kwargs or {}), caller, call.timeout)
        self._forwarded[key] = d

        def settled() -> None:
            self._forwarded.pop(key, None)
            left = self._per_session.pop(session_id, 1) - 1
            if left:
                self._per_session[session_id] = left

        def answered(result: tuple[list[Any], dict[str, Any]]) -> None:
            settled()
            self._reply(session, call, *result)

        def failed(f: Any) -> None:
            settled()
            error = f.value
            if isinstance(error, ApplicationError):
                self._error(session, call, error.error, list(error.args), error.kwargs)
            elif f.check(CancelledError):
                self._error(session, call, ApplicationError.CANCELED, ["canceled"])
            else:
                log.warn("forwarded call failed: {error}", error=f.getErrorMessage())
                self._error(session, call, ApplicationError.CANCELED, ["the call could not be forwarded"])

        d.addCallbacks(answered, failed)

    def _process_cancel(self, session: Any, cancel: Any) -> None:
        d = self._forwarded.pop((session._session_id, cancel.request), None)
        if d is None:
            self._dealer_cancel(session, cancel)
        else:
            d.cancel()

    def _reply(self, session: Any, call: Any, args: list[Any] | None, kwargs: dict[str, Any] | None) -> None:
        self._send(session, message.Result(call.request, args=args or None, kwargs=kwargs or None))

    def _error(
        self, session: Any, call: Any, error: str, args: list[Any] | None = None, kwargs: dict[str, Any] | None = None
    ) -> None:
        self._send(session, message.Error(message.Call.MESSAGE_TYPE, call.request, error, args or None, kwargs or None))

    def _send(self, session: Any, msg: Any) -> None:
        if session._session_id and session._transport:  # the caller may have left meanwhile
            self._router.send(session, msg)

    # -- publishes --------------------------------------------------------------------------------------
    def _process_publish(self, session: Any, publish: Any) -> None:
        self._broker_publish(session, publish)
        topic = publish.topic
        if not (topic.startswith(uris.TENANT_PREFIX) and session._authrole == uris.ROLE_BACKEND):
            return
        if publish.payload is not None or not self._valid(topic):
            return
        options = {k: getattr(publish, k) for k in _PUBLISH_OPTIONS if getattr(publish, k, None)}
        args, kwargs = list(publish.args or ()), dict(publish.kwargs or {})

        def decided(authorization: dict[str, Any]) -> None:
            if authorization["allow"]:
                self._relay.published(topic, args, kwargs, options)

        d = self._router.authorize(session, topic, "publish", options=publish.marshal_options())
        txaio.add_callbacks(d, decided, lambda f: log.warn("publish authorization failed: {e}", e=f.getErrorMessage()))


def make_tap(router: Any, relay: Relay) -> RealmTap | None:
    try:
        return RealmTap(router, relay)
    except AttributeError:
        log.warn("router internals not available (Crossbar is not {v}.x): backends serve their own node only",
                 v=TESTED_CROSSBAR)  # fmt: skip
        return None


def _as_args(result: Any) -> tuple[list[Any], dict[str, Any]]:
    """Autobahn's call result back into WAMP's (args, kwargs)."""
    if isinstance(result, CallResult):
        return list(result.results), dict(result.kwresults)
    return ([] if result is None else [result]), {}


def router_of(controller: Any, realm: str) -> Any:
    """The Router object serving `realm` in this worker (public: IRouterFactory.get)."""
    return controller.router_factory.get(realm)


def controller_of(session: Any) -> Any:
    """The router worker's controller, from a router-embedded component session."""
    if session.config.controller is not None:
        return session.config.controller
    return session._transport._router._factory._worker
