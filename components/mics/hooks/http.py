"""Hooks as signed HTTP POSTs to the tenant's servers (Twisted's Agent, one persistent pool per tenant).

Twisted's `Agent` directly, not treq: treq parses the URL, merges a cookie jar and wraps the agent
for cookies, redirects and gzip on every request, and writes the body a reactor turn later. A hook
needs none of it (a redirect is not followed: the signed request goes to `hook_base_url` only).
"""

from __future__ import annotations

from typing import Any

from hyperlink import URL
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IConsumer, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IResponse
from zope.interface import implementer

from mics.hooks import (
    AuthReply,
    BatchUnsupported,
    Hook,
    HookFailure,
    HookRejected,
    Verdict,
    codec,
    parse_auth_reply,
    parse_check_reply,
    parse_members_reply,
    parse_verdicts_reply,
)
from mics.hooks.signing import sign_headers

PATHS = {"auth": "/auth", "check_message": "/check-message", "check_messages": "/check-messages",
         "group_members": "/get-group-members"}  # fmt: skip
MAX_REPLY_BYTES = 4 * 1024 * 1024


def _uri(url: str) -> bytes:
    return URL.from_text(url).to_uri().to_text().encode("ascii")


@implementer(IBodyProducer)
class _Body:
    """A request body written at once, with the headers."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self.length = len(data)

    def startProducing(self, consumer: IConsumer) -> Deferred[None]:
        consumer.write(self._data)
        return succeed(None)

    def pauseProducing(self) -> None:
        """Written at once: nothing to pause."""

    def resumeProducing(self) -> None:
        """Written at once: nothing to resume."""

    def stopProducing(self) -> None:
        """Written at once: nothing to stop."""


class _TooLarge(Exception):
    pass


class _Collect(Protocol):
    """A response body, up to `MAX_REPLY_BYTES` (a larger one is cut off, not read to its end)."""

    def __init__(self, done: Deferred[bytes]) -> None:
        self._done = done
        self._parts: list[bytes] = []
        self._size = 0

    def dataReceived(self, data: bytes) -> None:
        self._size += len(data)
        if self._size > MAX_REPLY_BYTES:
            self.transport.stopProducing()  # then connectionLost, with a reason we ignore
            if not self._done.called:
                self._done.errback(_TooLarge())
            return
        self._parts.append(data)

    def connectionLost(self, reason: Failure = ResponseDone) -> None:  # type: ignore[assignment]
        if self._done.called:
            return
        if reason.check(ResponseDone, PotentialDataLoss):
            self._done.callback(b"".join(self._parts))
        else:
            self._done.errback(reason)


def _read(response: IResponse) -> Deferred[bytes]:
    collect: _Collect | None = None

    def cancel(d: Deferred[bytes]) -> None:  # the hook timed out: drop the connection
        if collect is not None and collect.transport is not None:
            collect.transport.stopProducing()

    done: Deferred[bytes] = Deferred(cancel)
    collect = _Collect(done)
    response.deliverBody(collect)
    return done


class HttpHook(Hook):
    """POSTs `{hook_base_url}{path}` with the flat input object, signed with the tenant secret."""

    def __init__(self, tenant_id: str, secret: str, base_url: str, encoding: str, reactor: IReactorTime) -> None:
        self.tenant_id = tenant_id
        self._secret = secret
        base = base_url.rstrip("/")  # as a URI once (an IDN host in punycode, the path %-encoded)
        self._urls = {hook: _uri(base + path) for hook, path in PATHS.items()}
        self._encoding = encoding
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 64
        self._pool.cachedConnectionTimeout = 120
        self._agent = Agent(reactor, pool=self._pool)

    async def _post(self, hook: str, fields: dict[str, Any]) -> tuple[int, Any]:
        body, content_type = codec.encode_request(hook, fields, self._encoding)
        headers = Headers({name: [value] for name, value in sign_headers(self.tenant_id, self._secret, body).items()})
        headers.setRawHeaders(b"Content-Type", [content_type.encode("ascii")])
        try:
            response = await self._agent.request(b"POST", self._urls[hook], headers, _Body(body))
            content = await _read(response)
        except _TooLarge:
            raise HookFailure(f"{hook}: reply too large") from None
        except Exception as e:  # connection refused, reset, DNS...: the hook is unavailable
            raise HookFailure(f"{hook}: {type(e).__name__}") from None
        if response.code != 200:
            return response.code, None
        reply_type = (response.headers.getRawHeaders(b"content-type") or [b""])[0].decode("latin-1")
        try:
            return 200, codec.decode_response(hook, content, reply_type or codec.JSON)
        except Exception:
            raise HookFailure(f"{hook}: malformed reply") from None

    async def auth(self, token: str, device_id: str) -> AuthReply:
        status, reply = await self._post("auth", {"token": token, "device_id": device_id, "tenant_id": self.tenant_id})
        if status in (401, 403):
            raise HookRejected("the auth hook refused the token")
        if status != 200:
            raise HookFailure(f"auth: HTTP {status}")
        return parse_auth_reply(reply)

    async def check_message(self, message: dict[str, Any]) -> Verdict:
        status, reply = await self._post("check_message", message)
        if status != 200:
            raise HookFailure(f"check_message: HTTP {status}")
        return parse_check_reply(reply)

    async def check_messages(self, messages: list[dict[str, Any]], timeout_ms: int) -> list[Verdict | None]:
        status, reply = await self._post("check_messages", {"messages": messages, "timeout_ms": timeout_ms})
        if status == 404:
            raise BatchUnsupported("check_messages: HTTP 404")
        if status != 200:
            raise HookFailure(f"check_messages: HTTP {status}")
        return parse_verdicts_reply(reply, len(messages))

    async def group_members(self, group_id: str, from_user_id: str) -> list[str]:
        fields = {"group_id": group_id, "from_user_id": from_user_id, "tenant_id": self.tenant_id}
        status, reply = await self._post("group_members", fields)
        if status != 200:
            raise HookFailure(f"group_members: HTTP {status}")
        return parse_members_reply(reply)

    def close(self) -> None:
        self._pool.closeCachedConnections()
