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
  on a session's presence watches reads `Router._broker._session_to_subscriptions`; `deliver_all`
  frames an EVENT once per serializer and sends it through Autobahn's WebSocket protocol state and
  Twisted's TCP transport buffer, `SharedFrames`). It does what the broker does for a publish
  with eligible_authid/exclude, minus what only an untrusted publisher needs (re-authorizing our
  own publish, option parsing, retention, a Deferred per publication): about a third of the
  router's CPU per send; its writes go through `mics.router.frames` (which falls back to
  `Router.send` per connection), and it reads the router's tracing flags and message statistics.
  Without them: `publish()` through our realm component;
- closing a session in process (`RealmPort.close_session`): `RouterSession.leave(reason,
  message)` through `_session_id_to_session`, which also works while the node shuts down.
  Without it: `wamp.session.kill`;
- the worker's controller, which `crossbar start` does not pass to components
  (crossbar-notes.md section 1): `session._transport._router._factory._worker`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from typing import Any

import txaio
from autobahn import util
from autobahn.wamp import message
from autobahn.wamp.types import PublishOptions

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
                        _limited.warn(("undelivered", type(e).__name__), "event not delivered: topic={topic} "
                                      "error={error}", topic=topic, error=str(e))  # fmt: skip
        if written:  # the router's message statistics, as Router.send keeps them
            sent = router._message_stats["sent"]
            sent["event"] = sent.get("event", 0) + written

    def deliver_all(self, topic: str, kwargs: dict[str, Any]) -> int:
        """This event to every subscriber of `topic` (live presence: any user may watch); returns
        how many sessions it was sent to. One EVENT per subscription, serialized once per serializer
        (Autobahn caches it on the message); the router's loop over the sessions is all there is."""
        observations = self._subscriptions.match_observations(topic)
        if not observations:
            return 0
        publication = util.id()
        send = self._router.send
        sent = 0
        for observation in observations:
            pattern_topic = None if observation.match == message.Subscribe.MATCH_EXACT else topic
            event = message.Event(observation.id, publication, kwargs=kwargs, topic=pattern_topic)
            frames = SharedFrames(event)
            for receiver in observation.observers:
                if receiver._session_id and receiver._transport:
                    try:
                        if not frames.write(receiver._transport):
                            send(receiver, event)
                        sent += 1
                    except Exception as e:
                        log.warn("event not delivered: topic={topic} error={error}", topic=topic, error=str(e))
        return sent

    def subscriptions_under(self, session_id: int, prefix: str) -> int:
        """How many subscriptions a session holds on topics under `prefix` (a cap on presence watches)."""
        session = self._by_id.get(session_id)
        by_session = getattr(self._router._broker, "_session_to_subscriptions", None) or {}
        held = by_session.get(session, ()) if session is not None else ()
        return sum(1 for subscription in held if subscription.uri.startswith(prefix))

    def session(self, session_id: int) -> Any:
        return self._by_id.get(session_id)


class SharedFrames:
    """One EVENT, framed once per serializer, written as is to many WebSocket sessions.

    A router sends the same EVENT to every subscriber of a topic; Autobahn caches its serialization
    but frames it again for each session (and counts, traces and logs each frame). A server's
    WebSocket frame of a message is the same bytes for every connection that negotiated no
    compression and no fragmentation (server frames are unmasked), so it is built once and written
    to each such transport. Anything else (compression, a frame in progress, another transport
    kind) goes through `Router.send`. What this skips: Autobahn's per-connection traffic counters
    and Crossbar's per-router message counters. The frame goes out with `_send_now`.
    """

    __slots__ = ("_event", "_frames")

    def __init__(self, event: Any) -> None:
        self._event = event
        self._frames: dict[Any, bytes] = {}

    def write(self, proto: Any) -> bool:
        """Write the frame to a session's transport; False when this one needs the ordinary path."""
        try:
            if (
                proto.state != _WS_OPEN or proto._perMessageCompress is not None or proto.send_queue
                or proto.send_state != _WS_SEND_GROUND or proto.trackedTimings or proto.factory.maskServerFrames
            ):  # fmt: skip
                return False
            wrapper = proto._serializer
            serializer = wrapper._serializer  # the object serializer, shared by the connections
            frame = self._frames.get(serializer)
            if frame is None:
                frame = self._frames[serializer] = _ws_frame(self._event.serialize(serializer), serializer.BINARY)
            # the frame is a little longer than its payload: never over a limit the payload is under
            limit, fragment = proto.maxMessagePayloadSize, proto.autoFragmentSize
            if 0 < limit < len(frame) or 0 < fragment < len(frame):
                return False
            transport = proto.transport
        except AttributeError:  # not an Autobahn WebSocket (embedded sessions, rawsocket)
            return False
        _send_now(transport, frame)
        return True


def _send_now(transport: Any, data: bytes) -> None:
    """Write to a TCP transport, with one send(2) right away when nothing is queued before it.

    Twisted's `write` queues, asks the reactor to watch the socket, and sends on the next loop turn
    (an epoll change, a dispatch and another epoll change per connection): the larger part of a
    fan-out to a thousand connections. When the transport's buffer is empty, sending now keeps the
    order and skips all of that; whatever the kernel does not take is queued as usual (Twisted's
    buffer, producers and error handling see it then). Anything but a plain TCP transport (TLS)
    just gets `write`."""
    try:
        idle = (
            transport.connected and not transport._writeDisconnected and not transport._tempDataBuffer
            and transport.offset == len(transport.dataBuffer)
        )  # fmt: skip
        sock = transport.socket
    except AttributeError:
        idle = False
    if not idle:
        transport.write(data)
        return
    try:
        sent = sock.send(data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:  # the connection is going: let Twisted find out and close it its way
        transport.write(data)
        return
    if sent < len(data):
        transport.write(data[sent:])


_WS_OPEN = 3  # autobahn.websocket.protocol.WebSocketProtocol.STATE_OPEN
_WS_SEND_GROUND = 0  # WebSocketProtocol.SEND_STATE_GROUND


def _ws_frame(payload: bytes, binary: bool) -> bytes:
    """An unmasked, unfragmented server frame (RFC 6455 section 5.2) of a text or binary message."""
    first = 0x82 if binary else 0x81
    size = len(payload)
    if size <= 125:
        return bytes((first, size)) + payload
    if size <= 0xFFFF:
        return bytes((first, 126)) + struct.pack("!H", size) + payload
    return bytes((first, 127)) + struct.pack("!Q", size) + payload


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
