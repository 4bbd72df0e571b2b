"""Hooks as signed HTTP POSTs to the tenant's servers (treq, one persistent pool per tenant)."""

from __future__ import annotations

from typing import Any

import treq
from twisted.internet.interfaces import IReactorTime
from twisted.web.client import HTTPConnectionPool

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


class HttpHook(Hook):
    """POSTs `{hook_base_url}{path}` with the flat input object, signed with the tenant secret."""

    def __init__(self, tenant_id: str, secret: str, base_url: str, encoding: str, reactor: IReactorTime) -> None:
        self.tenant_id = tenant_id
        self._secret = secret
        self._base_url = base_url.rstrip("/")
        self._encoding = encoding
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 64
        self._pool.cachedConnectionTimeout = 120
        self._reactor = reactor

    async def _post(self, hook: str, fields: dict[str, Any]) -> tuple[int, Any]:
        body, content_type = codec.encode_request(hook, fields, self._encoding)
        headers = sign_headers(self.tenant_id, self._secret, body)
        headers["Content-Type"] = content_type
        try:
            response = await treq.post(
                self._base_url + PATHS[hook], data=body, headers=headers, pool=self._pool, reactor=self._reactor
            )
            content = await response.content()
        except Exception as e:  # connection refused, reset, DNS...: the hook is unavailable
            raise HookFailure(f"{hook}: {type(e).__name__}") from None
        if response.code != 200:
            return response.code, None
        if len(content) > MAX_REPLY_BYTES:
            raise HookFailure(f"{hook}: reply too large")
        reply_type = response.headers.getRawHeaders(b"content-type", [b""])[0].decode("latin-1")
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
