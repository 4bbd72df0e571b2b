"""The hook SDK for tenant backends: write your hook logic once (`Hooks`), serve it over WAMP
(`mics_client.hooks.backend.TenantBackend`) or signed HTTP (`mics_client.hooks.http.HookServer`).

Replies may be short: `auth` may return a user id string, `check_message` a bool, `group_members` a list;
they are normalized to the wire shapes of protocol.md section 5.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from autobahn.wamp.exception import ApplicationError

INVALID_TOKEN_URI = "mics.error.invalid_token"


class RejectToken(ApplicationError):
    """Raise from `auth` to refuse a token: the user's join is ABORTed with mics.error.invalid_token (4001)."""

    def __init__(self, message: str = "invalid token") -> None:
        super().__init__(INVALID_TOKEN_URI, message)
        self.message = message


class Hooks:
    """Your tenant's hook logic. Override what you need; the defaults refuse every token, allow every
    message and know no groups. Methods may be `async def` or plain functions.
    """

    async def auth(self, token: str, device_id: str, tenant_id: str) -> str | dict[str, Any]:
        """Return the user id (or `{"user_id", "device_id"?, "config"?}`), or raise RejectToken."""
        raise RejectToken("this backend accepts no tokens")

    async def check_message(self, message: dict[str, Any]) -> bool | dict[str, Any]:
        """Return True/False or `{"allow": bool, "reason": str}` for a message about to be sent."""
        return True

    async def group_members(self, group_id: str, from_user_id: str, tenant_id: str) -> Iterable[str] | dict[str, Any]:
        """Return the user ids of the group (or `{"members": [...]}`); empty means mics.error.empty_group."""
        return []


def auth_reply(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"user_id": value}
    if isinstance(value, dict) and isinstance(value.get("user_id"), str):
        return {k: v for k, v in value.items() if v is not None}
    raise TypeError("auth must return a user id or a dict with user_id")


def check_reply(value: Any) -> dict[str, Any]:
    if isinstance(value, bool):
        return {"allow": value}
    if isinstance(value, dict) and "allow" in value:
        reply = {"allow": bool(value["allow"])}
        if value.get("reason"):
            reply["reason"] = str(value["reason"])
        return reply
    raise TypeError("check_message must return a bool or a dict with allow")


def members_reply(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        value = value.get("members", [])
    return {"members": [str(m) for m in value]}


async def resolve(value: Any) -> Any:
    """Await `value` if it is awaitable (hook methods may be sync or async)."""
    if hasattr(value, "__await__"):
        return await value
    return value


__all__ = ["INVALID_TOKEN_URI", "Hooks", "RejectToken", "auth_reply", "check_reply", "members_reply", "resolve"]
