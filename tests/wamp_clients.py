"""Real WAMP clients for tests (Autobahn, Twisted): users (ticket), backends and admins (wampcra).

`connect` returns a joined `TestSession`, or raises `JoinRefused(reason, message)` when the router
answers ABORT. Events are queued per topic so a test can `await session.next_event(topic)`.
"""

from __future__ import annotations

import json
from collections import defaultdict, deque
from collections.abc import Callable
from typing import Any
from urllib.parse import urlparse

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp import auth
from autobahn.wamp.serializer import CBORSerializer, JsonObjectSerializer, JsonSerializer, MsgPackSerializer
from autobahn.wamp.types import ComponentConfig
from autobahn.websocket.compress import (
    PerMessageDeflateOffer,
    PerMessageDeflateResponse,
    PerMessageDeflateResponseAccept,
)
from twisted.internet import reactor
from twisted.internet.defer import Deferred, TimeoutError
from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol


class _EscapingJsonObjectSerializer(JsonObjectSerializer):
    """JSON as a hostile client may write it: `\\u` escapes carry lone surrogates that a UTF-8
    encoder refuses (Autobahn's own serializer can't send them)."""

    def serialize(self, obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=True).encode()


class EscapingJsonSerializer(JsonSerializer):
    def __init__(self) -> None:
        super().__init__()
        self._serializer = _EscapingJsonObjectSerializer()
        self._serializer._parent_serializer = self


SERIALIZERS = {
    "json": JsonSerializer,
    "msgpack": MsgPackSerializer,
    "cbor": CBORSerializer,
    "json-escaping": EscapingJsonSerializer,
}
DEFAULT_TIMEOUT = 5.0


class JoinRefused(Exception):
    def __init__(self, reason: str, message: str | None) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


def _accept_deflate(response: PerMessageDeflateResponse) -> PerMessageDeflateResponseAccept | None:
    return PerMessageDeflateResponseAccept(response) if isinstance(response, PerMessageDeflateResponse) else None


def sleep(seconds: float) -> Deferred[None]:
    d: Deferred[None] = Deferred()
    reactor.callLater(seconds, d.callback, None)
    return d


class TestSession(ApplicationSession):
    """A client session that records what it receives and why it left."""

    __test__ = False

    def __init__(self, config: ComponentConfig) -> None:
        super().__init__(config)
        opts = config.extra
        self._opts = opts
        self.joined: Deferred[TestSession] = opts["joined"]
        self.left: Deferred[Any] = Deferred()
        self.events: dict[str, deque[dict[str, Any]]] = defaultdict(deque)
        self._waiters: dict[str, list[Deferred[dict[str, Any]]]] = defaultdict(list)
        self.welcome: Any = None

    def onConnect(self) -> None:
        o = self._opts
        self.join(self.config.realm, [o["authmethod"]], authid=o.get("authid"), authextra=o.get("authextra"))

    def onChallenge(self, challenge: Any) -> str:
        o = self._opts
        if challenge.method == "ticket":
            return str(o["ticket"])
        if challenge.method == "wampcra":
            return auth.compute_wcs(o["secret"], challenge.extra["challenge"]).decode("ascii")
        raise ValueError(challenge.method)

    def onJoin(self, details: Any) -> None:
        self.welcome = details
        if not self.joined.called:
            self.joined.callback(self)

    def onLeave(self, details: Any) -> None:
        if not self.joined.called:
            self.joined.errback(JoinRefused(details.reason, details.message))
        if not self.left.called:
            self.left.callback(details)
        super().onLeave(details)

    def onDisconnect(self) -> None:
        if not self.joined.called:
            self.joined.errback(JoinRefused("disconnected", None))
        if not self.left.called:
            self.left.callback(None)

    # -- receiving ---------------------------------------------------------------------------
    async def listen(self, topic: str, match: str | None = None) -> None:
        """Subscribe and queue every event's kwargs under `topic`."""
        from autobahn.wamp.types import SubscribeOptions

        def on_event(*args: Any, **kwargs: Any) -> None:
            waiters = self._waiters[topic]
            if waiters:
                waiters.pop(0).callback(kwargs)
            else:
                self.events[topic].append(kwargs)

        await self.subscribe(on_event, topic, options=SubscribeOptions(match=match) if match else None)

    async def next_event(self, topic: str, timeout: float = DEFAULT_TIMEOUT) -> dict[str, Any]:
        if self.events[topic]:
            return self.events[topic].popleft()
        d: Deferred[dict[str, Any]] = Deferred()
        self._waiters[topic].append(d)
        d.addTimeout(timeout, reactor)
        return await d

    async def no_event(self, topic: str, wait: float = 0.3) -> bool:
        """True if nothing arrived on `topic` within `wait` seconds (for must-not-happen checks)."""
        try:
            await self.next_event(topic, wait)
        except TimeoutError:
            return True
        return False

    async def close(self) -> None:
        if self.is_attached():
            self.leave()
        try:
            d = self.left
            d.addTimeout(2, reactor)
            await d
        except Exception:
            pass


async def connect(
    url: str,
    realm: str,
    *,
    authmethod: str,
    ticket: str | None = None,
    authextra: dict[str, Any] | None = None,
    authid: str | None = None,
    secret: str | None = None,
    serializer: str = "json",
    session_class: type[TestSession] = TestSession,
    timeout: float = DEFAULT_TIMEOUT,
    compression: bool = False,
) -> TestSession:
    joined: Deferred[TestSession] = Deferred()
    extra = {"joined": joined, "authmethod": authmethod, "ticket": ticket, "authextra": authextra,
             "authid": authid, "secret": secret}  # fmt: skip
    session_factory: Callable[[], TestSession] = lambda: session_class(ComponentConfig(realm, extra))  # noqa: E731
    factory = WampWebSocketClientFactory(session_factory, url=url, serializers=[SERIALIZERS[serializer]()])
    if compression:  # offer permessage-deflate (the router uses it if its transport allows)
        factory.setProtocolOptions(perMessageCompressionOffers=[PerMessageDeflateOffer()],
                                   perMessageCompressionAccept=_accept_deflate)  # fmt: skip
    parsed = urlparse(url)
    endpoint = TCP4ClientEndpoint(reactor, parsed.hostname, parsed.port)
    await connectProtocol(endpoint, factory.buildProtocol(None))
    joined.addTimeout(timeout, reactor)
    return await joined


async def user(url: str, tenant_id: str, token: str, device_id: str | None = "d1", **kw: Any) -> TestSession:
    authextra = {"device_id": device_id} if device_id is not None else {}
    return await connect(url, tenant_id, authmethod="ticket", ticket=token, authextra=authextra, **kw)


async def backend(url: str, tenant_id: str, secret: str, authid: str = "backend", **kw: Any) -> TestSession:
    return await connect(url, tenant_id, authmethod="wampcra", authid=authid, secret=secret, **kw)


async def admin(url: str, secret: str) -> TestSession:
    return await connect(url, "mics.control", authmethod="wampcra", authid="admin", secret=secret)
