"""Tenant hooks: who a token belongs to, whether a message may pass, who is in a group.

One `Hook` interface, two transports (WAMP RPC to the tenant's backend session, signed HTTP),
and one policy layer (`policy.GuardedHook`: timeout, bulkhead, breaker, degrade, batched checks)
over both.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class AuthReply:
    """The auth hook's answer for an accepted token."""

    user_id: str
    device_id: str | None = None
    config: dict[str, Any] | None = None


class HookRejected(Exception):
    """The hook answered no: a bad token (auth)."""


class HookFailure(Exception):
    """The hook did not answer usably: transport error, bad status, malformed reply, no backend."""


class BatchUnsupported(HookFailure):
    """The tenant's backend does not serve the batched check (no such procedure, HTTP 404)."""


Verdict = tuple[bool, str | None]  # (allow, reason)


class Hook(ABC):
    """The three tenant hooks over one transport. Raise HookFailure when there is no usable answer."""

    @abstractmethod
    async def auth(self, token: str, device_id: str) -> AuthReply:
        """Raise HookRejected for a bad token."""

    @abstractmethod
    async def check_message(self, message: dict[str, Any]) -> Verdict:
        """(allow, reason)."""

    @abstractmethod
    async def group_members(self, group_id: str, from_user_id: str) -> list[str]:
        """The group's members (user ids); may be empty."""

    async def check_messages(self, messages: list[dict[str, Any]], timeout_ms: int) -> list[Verdict | None]:
        """One verdict per message, in order; None where the backend gave none. `timeout_ms` tells the
        backend how long the node waits. Raise BatchUnsupported when the backend has no batch hook."""
        raise BatchUnsupported("this transport has no batched check")

    def close(self) -> None:  # noqa: B027 - optional
        """Release pooled connections."""


def parse_auth_reply(reply: Any) -> AuthReply:
    from mics.config import is_valid_entity_id

    if not isinstance(reply, dict) or not is_valid_entity_id(reply.get("user_id")):
        raise HookFailure("auth hook reply has no valid user_id")
    device_id = reply.get("device_id")
    if device_id in ("", None):
        device_id = None
    elif not is_valid_entity_id(device_id):
        raise HookFailure("auth hook reply has an invalid device_id")
    config = reply.get("config")
    if config is not None and not isinstance(config, dict):
        raise HookFailure("auth hook reply config is not an object")
    return AuthReply(reply["user_id"], device_id, config or None)


def parse_check_reply(reply: Any) -> Verdict:
    if not isinstance(reply, dict) or not isinstance(reply.get("allow"), bool):
        raise HookFailure("check-message hook reply has no boolean allow")
    reason = reply.get("reason")
    return reply["allow"], reason if isinstance(reason, str) and reason else None


def parse_verdicts_reply(reply: Any, count: int) -> list[Verdict | None]:
    """A batch's answer: one entry per message. An entry that is not a verdict (the SDKs send null
    when a message's check failed) is no verdict for that message alone."""
    verdicts = reply.get("verdicts") if isinstance(reply, dict) else None
    if not isinstance(verdicts, list) or len(verdicts) != count:
        raise HookFailure(f"check-messages hook reply has no list of {count} verdicts")
    return [_verdict_or_none(v) for v in verdicts]


def _verdict_or_none(value: Any) -> Verdict | None:
    try:
        return parse_check_reply(value)
    except HookFailure:
        return None


def parse_members_reply(reply: Any) -> list[str]:
    members = reply.get("members") if isinstance(reply, dict) else None
    # C-speed checks, no Python code per member: a group may have tens of thousands of them.
    # join() refuses anything that is not a string; all() finds an empty one.
    if not isinstance(members, list) or not all(members) or not _all_strings(members):
        raise HookFailure("group-members hook reply has no list of user ids")
    return members


def _all_strings(values: list[Any]) -> bool:
    try:
        "".join(values)
    except TypeError:
        return False
    return True
