"""The Twisted flavour: `MicsClient` whose methods return Deferreds (await them in `async def` code).

client = await Deferred.fromCoroutine(...)  # or: client = await connect(url, tenant, token, device_id)
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from twisted.internet.defer import Deferred
from twisted.internet.endpoints import HostnameEndpoint, wrapClientTLS

from mics_client.core import ClientCore, SessionMixin, make_serializer

__all__ = ["MicsClient", "connect", "endpoint_for"]


def endpoint_for(reactor: Any, url: str) -> Any:
    """The client endpoint for a `ws://` or `wss://` URL (TLS checks the host name against the
    platform's trusted CAs; `SSL_CERT_FILE` names another bundle)."""
    parsed = urlparse(url)
    secure = parsed.scheme == "wss"
    host = parsed.hostname or "localhost"
    endpoint: Any = HostnameEndpoint(reactor, host, parsed.port or (443 if secure else 80))
    if secure:
        from twisted.internet.ssl import optionsForClientTLS

        endpoint = wrapClientTLS(optionsForClientTLS(host), endpoint)
    return endpoint


class _Session(SessionMixin, ApplicationSession):
    pass


class MicsClient(ClientCore):
    """A MICS user device over Twisted; see mics_client.core.ClientCore for the behaviour."""

    _session_class = _Session

    def __init__(self, *args: Any, reactor: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self._reactor = reactor

    async def _open_transport(self, make_session: Callable[[], Any]) -> None:
        factory = WampWebSocketClientFactory(make_session, url=self.url, serializers=[make_serializer(self.serializer)])
        await endpoint_for(self._reactor, self.url).connect(factory)

    def _spawn(self, coro: Awaitable[Any]) -> None:
        Deferred.fromCoroutine(coro).addErrback(lambda f: self.log.failure("mics client task failed", failure=f))  # type: ignore[arg-type]


def _as_deferred(method: Callable[..., Any]) -> Callable[..., Deferred[Any]]:
    @functools.wraps(method)
    def wrapper(self: MicsClient, *args: Any, **kwargs: Any) -> Deferred[Any]:
        return Deferred.fromCoroutine(method(self, *args, **kwargs))

    return wrapper


for _name in ClientCore.ASYNC_API:
    setattr(MicsClient, _name, _as_deferred(getattr(ClientCore, _name)))


def connect(url: str | list[str], tenant: str, token: str, device_id: str, serializer: str = "json",
            **options: Any) -> Deferred[MicsClient]:  # fmt: skip
    """Create a client and connect it: fires with the joined MicsClient, or fails with a typed join error."""
    client = MicsClient(url, tenant, token, device_id, serializer, **options)

    async def run() -> MicsClient:
        await client.connect()
        return client

    return Deferred.fromCoroutine(run())
