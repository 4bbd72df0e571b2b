"""Everything MICS reads or calls inside Crossbar's router worker, in one module.

MICS runs inside the router worker. The public API (publish, call, the meta API) covers what it
needs, but three things are much cheaper, or only possible, through internals of Crossbar 26.10
(pyproject.toml bounds the version; tests/unit/test_router.py checks them on a real in-process
router and the integration tests on a real node):

- the trusted fan-out (`RealmPort.deliver`): `Router._broker._subscription_map`,
  `Router._session_id_to_session` and `Router.send`. It does what the broker does for a publish
  with eligible_authid/exclude, minus what only an untrusted publisher needs (re-authorizing our
  own publish, option parsing, retention, a Deferred per publication): about a third of the
  router's CPU per send. Without them: `publish()` through our realm component;
- pre-built frames (`FrameWriter`): one EVENT serialized once per serializer and framed once
  (Autobahn's public `PreparedMessage`), written to each WebSocket connection as bytes, straight
  to the socket when nothing is queued before it. That reads the WAMP protocol's `_serializer`
  and Twisted's TCP write buffer (`dataBuffer`, `offset`, `_tempDataBuffer`); any connection that
  does not look exactly like that (RawSocket, TLS, compression, a subclass overriding `send`, ...)
  takes `Router.send`;
- closing a session in process (`RealmPort.close_session`): `RouterSession.leave(reason,
  message)` through `_session_id_to_session`, which also works while the node shuts down.
  Without it: `wamp.session.kill`;
- the worker's controller, which `crossbar start` does not pass to components
  (crossbar-notes.md section 1): `session._transport._router._factory._worker`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from autobahn import util
from autobahn.wamp import message
from autobahn.wamp.types import PublishOptions
from autobahn.wamp.websocket import WampWebSocketProtocol
from autobahn.websocket.protocol import PreparedMessage, WebSocketProtocol
from twisted.internet import abstract, tcp
from txaio import make_logger

from mics import errors, metrics, uris

log = make_logger()

TESTED_CROSSBAR = "26.10"


class NoRealmSession(Exception):
    """The realm's MICS component has not joined (yet): nothing can be called or published."""


_OPEN = WebSocketProtocol.STATE_OPEN
_GROUND = WebSocketProtocol.SEND_STATE_GROUND


def _is_plain_websocket(kind: type) -> bool:
    """A WAMP-over-WebSocket protocol whose send path is Autobahn's own (nothing overridden)."""
    return (
        issubclass(kind, WampWebSocketProtocol)
        and issubclass(kind, WebSocketProtocol)
        and kind.send is WampWebSocketProtocol.send
        and kind.sendMessage is WebSocketProtocol.sendMessage
        and kind.sendData is WebSocketProtocol.sendData
    )


def _is_plain_tcp(kind: type) -> bool:
    """A Twisted TCP connection whose write buffer is Twisted's own."""
    return (
        issubclass(kind, tcp.Connection)
        and kind.write is tcp.Connection.write
        and kind.doWrite is abstract.FileDescriptor.doWrite
        and kind.writeSomeData is tcp.Connection.writeSomeData
    )


class FrameWriter:
    """Writes one EVENT to many WebSocket connections as pre-built bytes.

    `Router.send` serializes once per serializer already (Autobahn caches on the message), but then
    builds the WebSocket frame, updates statistics and logs for every receiver, and Twisted queues
    the bytes, asks epoll to watch the socket and writes them on the next turn (two epoll_ctl calls
    and a reactor dispatch per receiver). Here the frame is built once per serializer and written
    with one send() when nothing is queued on that connection (so the order on the wire never
    changes); whatever the socket does not take goes into Twisted's buffer as usual.
    """

    def __init__(self) -> None:
        self._websocket: dict[type, bool] = {}
        self._tcp: dict[type, bool] = {}
        self._warned: set[type] = set()

    def write(self, protocol: Any, event: message.Event, frames: dict[Any, PreparedMessage]) -> bool:
        """Send `event` on this connection; False when it must take the ordinary path. `frames` is
        the event's prepared frames by serializer, shared by all receivers of the event."""
        kind = type(protocol)
        plain = self._websocket.get(kind)
        if plain is None:
            plain = self._websocket[kind] = _is_plain_websocket(kind)
        if not plain:
            return False
        try:
            return self._write(protocol, event, frames)
        except AttributeError as e:  # another Autobahn or Twisted: Router.send knows this connection
            if kind not in self._warned:
                self._warned.add(kind)
                log.warn("pre-built frames not possible for {kind}: {error}", kind=kind.__name__, error=str(e))
            return False

    def _write(self, protocol: Any, event: message.Event, frames: dict[Any, PreparedMessage]) -> bool:
        if protocol.state != _OPEN or protocol.send_state != _GROUND:
            return False
        serializer = protocol._serializer._serializer
        prepared = frames.get(serializer)
        if prepared is None:  # the bytes are cached on the event per serializer: the same as Router.send's
            payload = event.serialize(serializer)
            prepared = frames[serializer] = PreparedMessage(payload, serializer.BINARY, False, False)
        size = len(prepared.payload)
        if 0 < protocol.maxMessagePayloadSize < size or 0 < protocol.autoFragmentSize < size:
            return False  # the ordinary path refuses or fragments it
        transport = protocol.transport
        if protocol._perMessageCompress is not None or protocol.send_queue or not self._direct(transport):
            protocol.sendPreparedMessage(prepared)  # compresses per connection, or queues behind what waits
            return True
        frame = prepared.payloadHybi
        try:
            sent = transport.socket.send(frame)
        except OSError:  # EAGAIN, or an error that Twisted meets again on its own write and closes for
            sent = 0
        if sent < len(frame):
            transport.write(frame[sent:])
        return True

    def _direct(self, transport: Any) -> bool:
        """Whether bytes can go to this transport's socket now without overtaking queued ones."""
        kind = type(transport)
        plain = self._tcp.get(kind)
        if plain is None:
            plain = self._tcp[kind] = _is_plain_tcp(kind)
        return (
            plain
            and transport.connected
            and not transport.disconnecting
            and not transport.TLS
            and not transport._tempDataBuffer
            and transport.offset == len(transport.dataBuffer)
        )


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
        publication = util.id()
        router = self._router
        send = router.send
        # a traced router logs every message it sends: let it see these too
        writer = self._writer
        write = None if writer is None or router._trace_traffic or router._is_traced else writer.write
        wanted = _addressed(authids, observations)
        written = 0
        for observation in observations:
            receivers = [r for r in observation.observers if r._authid in wanted and r is not excluded]
            if not receivers:
                continue
            # pattern subscribers learn the concrete topic from the event details, as from the broker
            pattern_topic = None if observation.match == message.Subscribe.MATCH_EXACT else topic
            event = message.Event(observation.id, publication, kwargs=kwargs, topic=pattern_topic)
            frames: dict[Any, PreparedMessage] = {}
            for receiver in receivers:
                protocol = receiver._transport
                if receiver._session_id and protocol:
                    try:
                        if write is not None and write(protocol, event, frames):
                            written += 1
                        else:
                            send(receiver, event)
                    except Exception as e:  # e.g. PayloadExceededError for one receiver: the others still get it
                        log.warn("event not delivered: topic={topic} error={error}", topic=topic, error=str(e))
        if written:  # the router's message statistics, as Router.send keeps them
            sent = router._message_stats["sent"]
            sent["event"] = sent.get("event", 0) + written

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

    @property
    def is_bound(self) -> bool:
        return self._fanout is not None or self._session is not None

    @property
    def fast_path(self) -> bool:
        """Whether deliveries go straight into the router's fan-out (else publish())."""
        return self._fanout is not None

    def bind_router(self, router: Any) -> None:
        self._fanout = make_fanout(router) if router is not None else None

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

    def call(self, procedure: str, *args: Any, **kwargs: Any) -> Any:
        """A WAMP call in the realm as our component (hooks over WAMP, the meta API)."""
        if self._session is None:
            raise NoRealmSession(self.realm)
        return self._session.call(procedure, *args, **kwargs)

    def publish(self, topic: str, options: PublishOptions, kwargs: dict[str, Any]) -> None:
        """An ordinary publish as our component (events to backends)."""
        if self._session is None:
            raise NoRealmSession(self.realm)
        self._session.publish(topic, options=options, **kwargs)


def router_of(controller: Any, realm: str) -> Any:
    """The Router object serving `realm` in this worker (public: IRouterFactory.get)."""
    return controller.router_factory.get(realm)


def controller_of(session: Any) -> Any:
    """The router worker's controller, from a router-embedded component session."""
    if session.config.controller is not None:
        return session.config.controller
    return session._transport._router._factory._worker
