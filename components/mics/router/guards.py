"""Bounds on what one connection or one client address can take from the node (protocol.md section 2).

- **Handshake and HELLO deadlines.** A connection that has not completed the WebSocket opening
  handshake within 10 s, or has not sent HELLO within 10 s after it, is closed.
- **Slow consumers.** A connection whose unsent outgoing data passes `max_unsent_bytes` and does
  not shrink between two checks is closed with GOODBYE `mics.close.slow_consumer`; its messages stay
  held, so the client reconnects and syncs. A large answer a client is reading (a long sync) shrinks,
  so it is not cut.
- **Inbound message size by who sends.** The transport's cap (1 MiB) bounds every WAMP message in
  both directions; what one incoming message costs the router grows with its size (decoding a
  dense 1 MiB frame takes 80-500 ms of the only core). Before a session has joined, an incoming
  message may be at most PRE_JOIN_MAX_BYTES (HELLO and AUTHENTICATE are small), so an anonymous
  client cannot make the router decode megabytes; a joined user's at most `user_message_limit` of
  its tenant's `max_payload_bytes`. Backends and admins keep the transport's cap (member lists,
  batched checks). Over the limit, the connection is failed with 1009 before anything is decoded.
- **Login throttling.** After `MAX_FAILURES` failed wampcra logins (backends, admins) from one
  address within `WINDOW_S`, further wampcra HELLOs from it are refused for `BLOCK_S`; other
  addresses are not affected. Failures age out; a success does not reset them (an attacker with
  one valid tenant secret must not be able to wipe their count while guessing another).

Why Crossbar's own settings are not enough: the `/ws` path sits on a *web* transport, so twisted.web
reads the HTTP request first and hands the socket to Autobahn only once it has all of it; Autobahn's
`open_handshake_timeout` starts then, and the handshake completes in the same call, so the timer
never covers the slow part. The Site has no timeout unless `client_timeout` is set (an idle timeout,
which a client trickling a byte at a time resets). Nothing in Crossbar bounds the time to HELLO, the
unsent data of a connection (Twisted buffers without limit when nobody registered a producer that
acts), or wampcra guessing (it also logs the expected signature of every failed attempt at warn).

Everything below the "Crossbar 26.10 internals" line reads or changes private attributes of
Crossbar 26.10 / Autobahn 26.10 / Twisted 26.10 (pyproject.toml bounds the versions; the
integration tests in tests/integration/test_abuse.py run them against a real node):

- `crossbar.common.twisted.web.Site.buildProtocol` (the web transport's twisted.web site) and
  `crossbar.router.protocol.WampWebSocketServerFactory.buildProtocol`: wrapped (class attributes,
  once per process), so every new connection and WAMP WebSocket is seen; router components start
  before transports, so none is missed;
- `twisted.web.http.HTTPChannel._handlingRequest` and `.transport` (None once Autobahn took the
  socket over); `_GenericHTTPChannelProtocol._channel`;
- the TCP transport's send buffer (`dataBuffer`, `offset`, `_tempDataLen`) and its `producer`
  (twisted.web registered the HTTPChannel as streaming producer; after the takeover we put a watcher
  there, which Twisted tells when the buffer passes 64 KiB and when it drained);
- `WampWebSocketProtocol._session` (Crossbar's `RouterSession`): `_session_roles` (set by HELLO),
  `_realm`, `_session_id`, `leave()`;
- `crossbar.router.auth.wampcra.PendingAuthWampCra.authenticate`, `_signature`, `_accept()`,
  `_session_details`: replaced by an equivalent that compares in constant time, records failures
  per address and does not log the expected signature.
"""

from __future__ import annotations

import hmac
import ipaddress
import math
import time
from collections.abc import Callable
from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from twisted.internet import reactor as default_reactor
from twisted.internet.task import LoopingCall
from txaio import make_logger

from mics import errors, metrics, uris
from mics.logs import RateLimitedLog

log = make_logger()
_limited = RateLimitedLog(log)

HANDSHAKE_TIMEOUT_S = 10.0
HELLO_TIMEOUT_S = 10.0
SWEEP_S = 0.5
SLOW_CONSUMER_GRACE_S = 2.0  # GOODBYE first; the socket (and its buffer) goes this much later

MAX_FAILURES = 5
WINDOW_S = 60.0
BLOCK_S = 60.0
MAX_ADDRESSES = 100_000


# -- login throttling (pure: no Crossbar, clock injected) -----------------------------------------


def address_of(peer: object) -> str:
    """The throttling key of a Crossbar peer string (`tcp4:1.2.3.4:5678`): the IPv4 address, or the
    /64 of an IPv6 address (one host usually owns a whole /64); anything else as given."""
    if not isinstance(peer, str):
        return "-"
    kind, _, rest = peer.partition(":")
    if kind not in ("tcp4", "tcp6"):
        return peer
    host = rest.rsplit(":", 1)[0].strip("[]")
    if kind == "tcp6":
        try:
            return str(ipaddress.IPv6Network(f"{host}/64", strict=False))
        except ValueError:
            return host
    return host


class LoginThrottle:
    """Failed wampcra logins per client address; refuses an address with too many recent ones."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, max_failures: int = MAX_FAILURES,
                 window_s: float = WINDOW_S, block_s: float = BLOCK_S,
                 max_addresses: int = MAX_ADDRESSES) -> None:  # fmt: skip
        self._clock = clock
        self.max_failures = max_failures
        self.window_s = window_s
        self.block_s = block_s
        self._max_addresses = max_addresses
        # address -> [failures in the window, window start, blocked until]
        self._entries: dict[str, list[float]] = {}
        self._failed = metrics.LOGIN_THROTTLE.labels("failed")
        self._refused = metrics.LOGIN_THROTTLE.labels("refused")

    def blocked_for(self, address: str) -> float:
        """Seconds `address` is still refused (0 when it may try)."""
        entry = self._entries.get(address)
        if entry is None:
            return 0.0
        return max(0.0, entry[2] - self._clock())

    def refuse(self, address: str) -> errors.JoinDenied | None:
        """The ABORT to answer a wampcra HELLO from `address` with, or None to let it try."""
        wait = self.blocked_for(address)
        if not wait:
            return None
        self._refused.inc()
        return errors.JoinDenied(
            errors.NOT_AUTHORIZED, f"too many failed logins from this address; try again in {math.ceil(wait)} s"
        )

    def failed(self, address: str) -> None:
        self._failed.inc()
        now = self._clock()
        entry = self._entries.get(address)
        if entry is None or now - entry[1] > self.window_s:
            if entry is None and len(self._entries) >= self._max_addresses:
                self._prune(now)
            entry = self._entries[address] = [0.0, now, 0.0]
        entry[0] += 1
        if entry[0] >= self.max_failures:
            entry[2] = now + self.block_s
            _limited.warn(("login", address), "wampcra logins refused for a while: address={address} failures={n}",
                          address=address, n=int(entry[0]))  # fmt: skip

    def _prune(self, now: float) -> None:
        """Forget addresses whose window and block are over; if still full, the oldest."""
        for address in [a for a, e in self._entries.items() if now - e[1] > self.window_s and e[2] <= now]:
            del self._entries[address]
        while len(self._entries) >= self._max_addresses:
            del self._entries[next(iter(self._entries))]


LOGINS = LoginThrottle()


def refuse_throttled_login(details: dict[str, Any]) -> None:
    """The authenticator's check before a wampcra login: raises JoinDenied for a throttled address."""
    transport = details.get("transport")
    denied = LOGINS.refuse(address_of(transport.get("peer") if isinstance(transport, dict) else None))
    if denied is not None:
        raise denied


# -- Crossbar 26.10 internals ---------------------------------------------------------------------


def watch_wampcra_failures(throttle: LoginThrottle = LOGINS) -> None:
    """Count failed wampcra signatures per address. Crossbar checks the signature itself after our
    authenticator returned the secret, so the only place a failure shows is
    `PendingAuthWampCra.authenticate`; this replaces it (once per process) with the same decision."""
    from autobahn.wamp.types import Deny
    from crossbar.router.auth.wampcra import PendingAuthWampCra

    if getattr(PendingAuthWampCra.authenticate, "_mics", False):
        return

    def authenticate(self: Any, signature: str) -> Any:
        expected = self._signature
        if isinstance(signature, str) and isinstance(expected, str) and hmac.compare_digest(
            signature.encode("utf-8", "replace"), expected.encode("utf-8")
        ):
            return self._accept()
        transport = self._session_details.get("transport") or {}
        throttle.failed(address_of(transport.get("peer")))
        return Deny(message="WAMP-CRA client signature is invalid")

    authenticate._mics = True  # type: ignore[attr-defined]
    PendingAuthWampCra.authenticate = authenticate


def socket_of(transport: Any) -> Any:
    """The TCP transport under protocol wrappers (Crossbar's connection counter, TLS)."""
    from twisted.protocols.policies import ProtocolWrapper

    while isinstance(transport, ProtocolWrapper):
        transport = transport.transport
    return transport


def unsent_bytes(transport: Any) -> int:
    """Bytes written to a Twisted TCP transport that the peer has not taken yet (user space)."""
    t = socket_of(transport)
    try:
        return len(t.dataBuffer) - t.offset + t._tempDataLen
    except AttributeError:
        return 0


def _is_closed(transport: Any) -> bool:
    t = socket_of(transport)
    return t is None or bool(getattr(t, "disconnected", False)) or not getattr(t, "connected", True)


class _Congestion:
    """Put in place of a WebSocket connection's (dead) HTTP producer: Twisted calls pauseProducing
    when the send buffer passes 64 KiB (on every write while it stays there) and resumeProducing
    once it drained, so only congested connections are ever looked at."""

    __slots__ = ("_guard", "_protocol")

    def __init__(self, guard: ConnectionGuard, protocol: Any) -> None:
        self._guard = guard
        self._protocol = protocol

    def pauseProducing(self) -> None:
        self._guard.congested(self._protocol)

    def resumeProducing(self) -> None:
        self._guard.drained(self._protocol)

    def stopProducing(self) -> None:
        self._guard.drained(self._protocol)


PRE_JOIN_MAX_BYTES = 64 * 1024  # HELLO (ids, a token, authextra) and AUTHENTICATE
# A body's section-4 size is its compact UTF-8 JSON; on the wire it can be up to ~3x that (a JSON
# client escaping non-ASCII as \uXXXX, msgpack's 9-byte floats), and the call carries the rest
# (ids, mentions, options) besides.
WIRE_GROWTH = 4
ENVELOPE_BYTES = 64 * 1024


def user_message_limit(max_payload_bytes: int) -> int:
    """The largest incoming WAMP message of a joined user of a tenant with this `max_payload_bytes`."""
    return WIRE_GROWTH * max_payload_bytes + ENVELOPE_BYTES


class ConnectionGuard:
    """Deadlines for the handshake and HELLO, and the slow-consumer cap, on one batched timer.

    Only connections that need watching are looked at: the ones still in their HTTP request, the
    WebSockets before HELLO, and the congested ones.
    """

    def __init__(self, max_unsent_bytes: int, reactor: Any = default_reactor) -> None:
        self.max_unsent_bytes = max_unsent_bytes
        self._reactor = reactor
        # id(protocol) -> [protocol, its transport, deadline (None while answering), served a request]
        self._http: dict[int, list[Any]] = {}
        self._ws: dict[int, list[Any]] = {}  # id(protocol) -> [protocol, deadline, watched]
        self._congested: dict[int, list[Any]] = {}  # id(protocol) -> [protocol, unsent at the last check]
        self._closing: set[int] = set()  # slow consumers told GOODBYE, their socket not yet dropped
        self._closes = {r: metrics.GUARD_CLOSES.labels(r) for r in ("handshake_timeout", "hello_timeout",
                                                                     "slow_consumer", "message_too_large")}  # fmt: skip
        self._timer: LoopingCall | None = None
        # (realm, authrole) -> the largest incoming message of a joined session; None: the transport's cap
        self.joined_limit: Callable[[str, str], int | None] = lambda _realm, _role: None

    # -- wiring -------------------------------------------------------------------------------------
    def start(self) -> None:
        """Hook the connection factories (before the transports start listening) and start the sweep."""
        _hook_factories(self)
        self._timer = LoopingCall(self.sweep)
        self._timer.clock = self._reactor
        self._timer.start(SWEEP_S, now=False).addErrback(lambda f: log.failure("connection guard failed", failure=f))

    def stop(self) -> None:
        if self._timer is not None and self._timer.running:
            self._timer.stop()
        if _HOOKED.get("guard") is self:
            _HOOKED["guard"] = None

    def http_connection(self, protocol: Any) -> None:
        """A new connection on a web transport: its request (the WebSocket upgrade, or a plain HTTP
        request) must be complete within HANDSHAKE_TIMEOUT_S; on a kept-alive connection, the next
        one within HANDSHAKE_TIMEOUT_S of the last answer. No deadline while a request is answered."""
        key = id(protocol)
        make_connection = protocol.makeConnection
        channel = getattr(protocol, "_channel", protocol)
        request_received, request_done = channel.allContentReceived, channel.requestDone

        def connected(transport: Any) -> None:
            self._http[key] = [protocol, transport, self._reactor.seconds() + HANDSHAKE_TIMEOUT_S, False]
            make_connection(transport)

        def received() -> None:
            entry = self._http.get(key)
            if entry is not None:
                entry[2], entry[3] = None, True
            request_received()

        def done(request: Any) -> None:
            request_done(request)
            entry = self._http.get(key)
            if entry is not None:
                entry[2] = self._reactor.seconds() + HANDSHAKE_TIMEOUT_S

        protocol.makeConnection = connected
        channel.allContentReceived = received
        channel.requestDone = done

    def websocket(self, protocol: Any) -> None:
        """A WAMP WebSocket, built once twisted.web read its upgrade request (the handshake runs right
        after, from that request): it has HELLO_TIMEOUT_S to send HELLO."""
        self._ws[id(protocol)] = [protocol, self._reactor.seconds() + HELLO_TIMEOUT_S, False]
        self._limit_inbound(protocol)

    def _limit_inbound(self, protocol: Any) -> None:
        """Fail the connection (1009) on an incoming message over the sender's limit, before the
        serializer decodes it."""
        on_message = protocol.onMessage

        def limited(payload: bytes, is_binary: bool) -> None:
            session = protocol._session
            role = getattr(session, "_authrole", None)
            limit = PRE_JOIN_MAX_BYTES if role is None else self.joined_limit(session._realm, role)
            if limit is not None and len(payload) > limit:
                self._closes["message_too_large"].inc()
                _limited.warn(("message_too_large", role), "incoming message over its limit: {size} > {limit} "
                              "bytes, role={role} peer={peer}", size=len(payload), limit=limit, role=role or "-",
                              peer=_peer(protocol.transport))  # fmt: skip
                protocol._fail_connection(1009, f"message of {len(payload)} bytes over this session's {limit}")
                return
            on_message(payload, is_binary)

        protocol.onMessage = limited

    # -- the sweep ----------------------------------------------------------------------------------
    def sweep(self) -> None:
        now = self._reactor.seconds()
        self._sweep_http(now)
        self._sweep_websockets(now)
        self._sweep_congested()

    def _sweep_http(self, now: float) -> None:
        for key, entry in list(self._http.items()):
            protocol, transport, deadline, served = entry
            channel = getattr(protocol, "_channel", protocol)
            if _is_closed(transport) or channel.transport is None:  # gone, or now a WebSocket
                del self._http[key]
            elif deadline is not None and now >= deadline:
                del self._http[key]
                if served:  # kept alive after an answer, idle (or slow) since: an ordinary idle close
                    socket_of(transport).loseConnection()
                    continue
                self._closes["handshake_timeout"].inc()
                _limited.info("handshake_timeout", "connection closed: no complete opening handshake within "
                              "{timeout} s peer={peer}", timeout=HANDSHAKE_TIMEOUT_S,
                              peer=_peer(transport))  # fmt: skip
                socket_of(transport).abortConnection()

    def _sweep_websockets(self, now: float) -> None:
        for key, entry in list(self._ws.items()):
            protocol, deadline, watched = entry
            transport = protocol.transport
            if transport is None or _is_closed(transport):
                del self._ws[key]
                continue
            if not watched:
                entry[2] = self._watch(protocol, transport)
            session = getattr(protocol, "_session", None)
            if session is not None and getattr(session, "_session_roles", None) is not None:  # HELLO came
                del self._ws[key]
            elif now >= deadline:
                del self._ws[key]
                self._closes["hello_timeout"].inc()
                _limited.info("hello_timeout", "connection closed: no HELLO within {timeout} s of the WebSocket "
                              "handshake peer={peer}", timeout=HELLO_TIMEOUT_S, peer=_peer(transport))  # fmt: skip
                protocol.dropConnection(abort=True)

    def _watch(self, protocol: Any, transport: Any) -> bool:
        """Be told when this connection's send buffer fills (see _Congestion)."""
        sock = socket_of(transport)
        watcher = _Congestion(self, protocol)
        if getattr(sock, "producer", None) is None:
            sock.registerProducer(watcher, True)
        else:
            sock.producer = watcher  # the HTTPChannel's; it stopped serving when Autobahn took over
            sock.streamingProducer = True
        if getattr(sock, "producerPaused", False):
            self.congested(protocol)
        return True

    def congested(self, protocol: Any) -> None:
        key = id(protocol)
        if key not in self._congested and key not in self._closing:
            self._congested[key] = [protocol, unsent_bytes(protocol.transport)]

    def drained(self, protocol: Any) -> None:
        self._congested.pop(id(protocol), None)

    def _sweep_congested(self) -> None:
        for key, entry in list(self._congested.items()):
            protocol, before = entry
            transport = protocol.transport
            if transport is None or _is_closed(transport):
                del self._congested[key]
                continue
            unsent = unsent_bytes(transport)
            entry[1] = unsent
            if unsent > self.max_unsent_bytes and unsent >= before:  # over the cap and not draining
                del self._congested[key]
                self._closes["slow_consumer"].inc()
                session = getattr(protocol, "_session", None)
                realm = getattr(session, "_realm", None) or "-"
                _limited.warn(("slow_consumer", realm), "slow consumer closed: tenant_id={tenant_id} "
                              "unsent_bytes={unsent} cap={cap} peer={peer}", tenant_id=realm, unsent=unsent,
                              cap=self.max_unsent_bytes, peer=_peer(transport))  # fmt: skip
                self._closing.add(key)
                if session is not None:
                    leave_session(session, errors.CLOSE_SLOW_CONSUMER, "the connection read too slowly; sync")
                # A client that reads again within the grace period gets the GOODBYE; then the socket and
                # its buffer go. (No WebSocket close before that: the session stays attached until the
                # socket closes, and deliveries to a closing WebSocket raise.)
                self._reactor.callLater(SLOW_CONSUMER_GRACE_S, self._drop, key, transport)

    def _drop(self, key: int, transport: Any) -> None:
        self._closing.discard(key)
        if not _is_closed(transport):
            socket_of(transport).abortConnection()


_HOOKED: dict[str, Any] = {"guard": None}


def _hook_factories(guard: ConnectionGuard) -> None:
    """Route every new web-transport connection and WAMP WebSocket of this worker to `guard`.
    Crossbar starts router components before transports, so no connection is missed."""
    from crossbar.common.twisted.web import Site
    from crossbar.router.protocol import WampWebSocketServerFactory

    _HOOKED["guard"] = guard
    if _HOOKED.get("done"):
        return
    _HOOKED["done"] = True
    _tell_guard(Site, ConnectionGuard.http_connection)
    _tell_guard(WampWebSocketServerFactory, ConnectionGuard.websocket)


def _tell_guard(factory_class: Any, seen: Callable[[ConnectionGuard, Any], None]) -> None:
    """Wrap `factory_class.buildProtocol` so the current guard sees every protocol it builds."""
    build = factory_class.buildProtocol

    def build_protocol(self: Any, addr: Any) -> Any:
        protocol = build(self, addr)
        current = _HOOKED["guard"]
        if protocol is not None and current is not None:
            seen(current, protocol)
        return protocol

    factory_class.buildProtocol = build_protocol


def leave_session(session: Any, reason: errors.Reason, message: str) -> None:
    """GOODBYE with a MICS reason on a joined session (Crossbar's RouterSession.leave)."""
    if getattr(session, "_session_id", None) is None:
        return
    metrics.CLOSES.labels(getattr(session, "_realm", None) or "-", reason.uri.rsplit(".", 1)[-1]).inc()
    try:
        session.leave(reason=reason.uri, message=message)
    except Exception as e:  # e.g. GOODBYE already sent
        log.debug("leave failed: {error}", error=str(e))


def _peer(transport: Any) -> str:
    try:
        peer = socket_of(transport).getPeer()
        return f"{peer.host}:{peer.port}"
    except Exception:
        return "-"


class GuardComponent(ApplicationSession):
    """Started by Crossbar from the router config (realm `mics.control`, role `mics`): once the node
    is ready, watches this worker's connections and checks the production settings."""

    async def onJoin(self, details: Any) -> None:
        from mics import production
        from mics.config import DEFAULT_MAX_UNSENT_BYTES
        from mics.node import NODE

        self.guard = ConnectionGuard(DEFAULT_MAX_UNSENT_BYTES)  # the node's setting once it is ready
        self.guard.start()
        await NODE.when_ready()
        assert NODE.settings is not None and NODE.tenants is not None
        self.guard.max_unsent_bytes = NODE.settings.max_unsent_bytes
        tenants = NODE.tenants

        def joined_limit(realm: str, role: str) -> int | None:
            tenant = tenants.get(realm) if role == uris.ROLE_USER else None
            return user_message_limit(tenant.config.max_payload_bytes) if tenant is not None else None

        self.guard.joined_limit = joined_limit
        production.warn_published_secrets([t.config for t in NODE.tenants], log)

    def onLeave(self, details: Any) -> None:
        guard = getattr(self, "guard", None)
        if guard is not None:
            guard.stop()
        super().onLeave(details)
