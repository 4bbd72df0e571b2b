"""The hook SDK for tenant backends: write your hook logic once (`Hooks`), serve it over WAMP
(`mics_client.hooks.backend.TenantBackend`) or signed HTTP (`mics_client.hooks.http.HookServer`).

Replies may be short: `auth` may return a user id string, `check_message` a bool, `group_members` a list;
they are normalized to the wire shapes of protocol.md section 5. Batched checks (a tenant with
`hook_batch_max` > 1) are served too: `check_messages` answers a batch through `check_message`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

from autobahn.wamp.exception import ApplicationError
from twisted.logger import Logger

INVALID_TOKEN_URI = "mics.error.invalid_token"
DEADLINE_SHARE = 0.8  # of the node's timeout: answer what is checked by then, in time
log = Logger()


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

    async def check_messages(self, messages: list[dict[str, Any]], timeout_ms: int | None = None) -> list[Any]:
        """The batched check (tenant config `hook_batch_max` > 1): one verdict per message, in order.

        By default each message goes through `check_message`, all at once. A message whose check raises,
        or is still running when 80% of `timeout_ms` (how long the node waits) has passed, gets None: no
        verdict, so the node lets it through as when the hook fails, and the others keep theirs. Override
        to check a batch in one go (one database query, say); return a list as long as `messages`.
        """
        return await each_checked(self.check_message, messages, timeout_ms)


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


def check_replies(values: Any, count: int) -> dict[str, Any]:
    """A batch's verdicts: one per message, each a check_reply or None (no verdict)."""
    if not isinstance(values, list | tuple) or len(values) != count:
        raise TypeError(f"check_messages must return a list of {count} verdicts")
    return {"verdicts": [None if v is None else check_reply(v) for v in values]}


async def each_checked(
    check: Callable[[dict[str, Any]], Any], messages: Sequence[dict[str, Any]], timeout_ms: int | None
) -> list[dict[str, Any] | None]:
    """`check` every message concurrently; None for one that raised or was not done by the deadline."""
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred, ensureDeferred

    verdicts: list[dict[str, Any] | None] = [None] * len(messages)
    if not messages:
        return []
    all_done: Deferred[None] = Deferred()
    remaining = len(messages)

    async def one(i: int, message: dict[str, Any]) -> None:
        nonlocal remaining
        try:
            verdicts[i] = check_reply(await resolve(check(message)))
        except Exception:
            log.failure("check_message failed for one message of a batch: it gets no verdict")
        remaining -= 1
        if remaining == 0 and not all_done.called:
            all_done.callback(None)

    for i, message in enumerate(messages):
        ensureDeferred(one(i, message))

    def deadline() -> None:
        if not all_done.called:
            all_done.callback(None)

    timer = reactor.callLater(timeout_ms * DEADLINE_SHARE / 1000.0, deadline) if timeout_ms else None
    await all_done
    if timer is not None and timer.active():
        timer.cancel()
    return list(verdicts)  # late answers change nothing any more


def members_reply(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        value = value.get("members", [])
    return {"members": [str(m) for m in value]}


async def resolve(value: Any) -> Any:
    """Await `value` if it is awaitable (hook methods may be sync or async)."""
    if hasattr(value, "__await__"):
        return await value
    return value


__all__ = ["INVALID_TOKEN_URI", "Hooks", "RejectToken", "auth_reply", "check_replies", "check_reply", "each_checked",
           "members_reply", "resolve"]  # fmt: skip
