"""Typed, validated requests: the one place where a procedure's keyword arguments are checked.

Each request type turns a call's arguments into a frozen value, or raises `SendFailed` with
`mics.error.invalid_message` naming the argument. Everything behind it (the send service, the
engines, hooks, events) takes typed values that every serializer can carry to every client.
Procedures take keyword arguments only; unknown keywords are ignored (newer clients may send them).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Self

from mics import errors
from mics.config import is_valid_entity_id
from mics.errors import SendFailed
from mics.types import RECEIPT_KINDS
from mics.values import InvalidValue, body_size, is_text

MAX_TEXT_FIELD = 128
MAX_RECEIPT_IDS = 1000
MAX_PRESENCE_IDS = 100
MAX_MEMBER_CHANGES = 10_000
MAX_MENTIONS = 100


class Args:
    """A call's keyword arguments being read; errors carry the send's client_msg_id when it is valid."""

    __slots__ = ("client_msg_id", "kwargs", "max_body")

    def __init__(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], dedup: bool = False, max_body: int | None = None
    ) -> None:
        self.kwargs = kwargs
        self.max_body = max_body
        self.client_msg_id = client_msg_id_of(kwargs) if dedup else None
        if args:
            raise self.invalid("positional arguments are not accepted: pass keyword arguments")

    def invalid(self, message: str) -> SendFailed:
        return SendFailed(errors.INVALID_MESSAGE, message, self.client_msg_id)

    def entity(self, name: str) -> str:
        """A required user, device or group id."""
        value = self.kwargs.get(name)
        if not is_valid_entity_id(value):
            raise self.invalid(f"{name} is missing or invalid")
        return value  # type: ignore[no-any-return]

    def optional_entity(self, name: str) -> str | None:
        return None if self.kwargs.get(name) is None else self.entity(name)

    def optional_text(self, name: str, max_len: int = MAX_TEXT_FIELD) -> str | None:
        value = self.kwargs.get(name)
        if value is None:
            return None
        if not _short_text(value, max_len):
            raise self.invalid(f"{name} must be a string of 1..{max_len} characters")
        return value  # type: ignore[no-any-return]

    def entity_list(self, name: str, max_len: int, required: bool = True) -> list[str]:
        value = self.kwargs.get(name)
        if value is None and not required:
            return []
        if not isinstance(value, list) or len(value) > max_len or not all(is_valid_entity_id(u) for u in value):
            raise self.invalid(f"{name} must be a list of at most {max_len} user ids")
        return value

    def mentions(self) -> list[str] | None:
        """Up to MAX_MENTIONS distinct user ids (section 11)."""
        value = self.kwargs.get("mentions")
        if value is None:
            return None
        if (
            not isinstance(value, list)
            or len(value) > MAX_MENTIONS
            or not all(is_valid_entity_id(u) for u in value)
            or len(set(value)) != len(value)
        ):
            raise self.invalid(f"mentions must be a list of at most {MAX_MENTIONS} distinct user ids")
        return value or None

    def text(self, name: str, max_len: int = MAX_TEXT_FIELD) -> str:
        """A required short string (a msg_id, say)."""
        value = self.optional_text(name, max_len)
        if value is None:
            raise self.invalid(f"{name} is required")
        return value

    def sent(self) -> tuple[str | None, str | None, str | None]:
        """What every send carries besides its address and body: (content_type, from_user_id, reply_to),
        with client_msg_id checked first (it is echoed in the error)."""
        self.optional_text("client_msg_id")
        return self.optional_text("content_type"), self.optional_entity("from_user_id"), self.optional_text("reply_to")

    def body(self) -> tuple[Any, int]:
        """The body and its encoded size (one over `max_body` is left to the caller to refuse)."""
        body = self.kwargs.get("body")
        if body is None:
            raise self.invalid("body is required")
        try:
            return body, body_size(body, self.max_body)
        except InvalidValue as e:
            raise self.invalid(str(e)) from None


def bounded(
    parse: Callable[..., Any], max_body: Callable[[], int]
) -> Callable[[Sequence[Any], Mapping[str, Any]], Any]:
    """`parse`, told the tenant's current `max_payload_bytes` when its request carries a body (a body
    over it is measured but not walked: it is refused as too large anyway)."""
    if "max_body" not in inspect.signature(parse).parameters:
        return parse  # type: ignore[return-value]
    return lambda args, kwargs: parse(args, kwargs, max_body=max_body())


def client_msg_id_of(kwargs: Mapping[str, Any]) -> str | None:
    """The call's client_msg_id, to echo in its error: only when it is itself valid (an invalid one
    must not reach the wire)."""
    cmid = kwargs.get("client_msg_id")
    return cmid if _short_text(cmid) else None


def _short_text(value: object, max_len: int = MAX_TEXT_FIELD) -> bool:
    return isinstance(value, str) and 0 < len(value) <= max_len and is_text(value)


@dataclass(frozen=True, slots=True)
class SendRequest:
    """`mics.message.send`. `from_user_id` is the system sender a backend names (users: ignored)."""

    to_user_id: str
    body: Any
    size: int
    client_msg_id: str | None = None
    content_type: str | None = None
    from_user_id: str | None = None
    reply_to: str | None = None

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any], max_body: int | None = None) -> Self:
        a = Args(args, kwargs, dedup=True, max_body=max_body)
        sent = a.sent()
        if kwargs.get("mentions") is not None:
            raise a.invalid("mentions are for group sends")
        body, size = a.body()
        return cls(a.entity("to_user_id"), body, size, a.client_msg_id, *sent)


@dataclass(frozen=True, slots=True)
class GroupSendRequest:
    """`mics.group.send`."""

    group_id: str
    body: Any
    size: int
    client_msg_id: str | None = None
    content_type: str | None = None
    from_user_id: str | None = None
    reply_to: str | None = None
    mentions: list[str] | None = None

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any], max_body: int | None = None) -> Self:
        a = Args(args, kwargs, dedup=True, max_body=max_body)
        sent = a.sent()
        mentions = a.mentions()
        body, size = a.body()
        return cls(a.entity("group_id"), body, size, a.client_msg_id, *sent, mentions)


@dataclass(frozen=True, slots=True)
class RecallRequest:
    """`mics.message.recall` (section 11): the sender takes a message back."""

    msg_id: str

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Self:
        return cls(Args(args, kwargs).text("msg_id"))


@dataclass(frozen=True, slots=True)
class EditRequest:
    """`mics.message.edit` (section 11): the sender replaces a message's body."""

    msg_id: str
    body: Any
    size: int
    content_type: str | None = None

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any], max_body: int | None = None) -> Self:
        a = Args(args, kwargs, max_body=max_body)
        msg_id = a.text("msg_id")
        content_type = a.optional_text("content_type")
        body, size = a.body()
        return cls(msg_id, body, size, content_type)


@dataclass(frozen=True, slots=True)
class SyncRequest:
    """`mics.inbox.sync`."""

    since_seq: int = 0
    epoch: str | None = None

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Self:
        a = Args(args, kwargs)
        since_seq = kwargs.get("since_seq")
        if since_seq is None:
            since_seq = 0
        if isinstance(since_seq, bool) or not isinstance(since_seq, int) or not 0 <= since_seq < 2**63:
            raise a.invalid("since_seq must be an integer >= 0")
        epoch = kwargs.get("epoch")
        if epoch is not None and not _short_text(epoch, 64):
            raise a.invalid("epoch must be the string a sync returned")
        return cls(since_seq, epoch)


@dataclass(frozen=True, slots=True)
class ReceiptRequest:
    """`mics.message.receipt`."""

    to_user_id: str
    msg_ids: list[str]
    kind: str

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Self:
        a = Args(args, kwargs)
        to_user_id = a.entity("to_user_id")
        msg_ids = kwargs.get("msg_ids")
        if (
            not isinstance(msg_ids, list)
            or not 0 < len(msg_ids) <= MAX_RECEIPT_IDS
            or not all(_short_text(m) for m in msg_ids)
        ):
            raise a.invalid(f"msg_ids must be a list of 1..{MAX_RECEIPT_IDS} message ids")
        kind = kwargs.get("kind")
        if kind not in RECEIPT_KINDS:
            raise a.invalid("kind must be 'delivered' or 'read'")
        return cls(to_user_id, msg_ids, kind)  # type: ignore[arg-type]

    @property
    def body(self) -> dict[str, Any]:
        return {"msg_ids": self.msg_ids, "kind": self.kind}


@dataclass(frozen=True, slots=True)
class SignalRequest:
    """`mics.signal.send`: live only, never held; to one user (`to_user_id`) or to a group's online
    members (`group_id`, section 11), never both."""

    to_user_id: str | None
    body: Any
    size: int
    group_id: str | None = None

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any], max_body: int | None = None) -> Self:
        a = Args(args, kwargs, max_body=max_body)
        if kwargs.get("group_id") is not None:
            if kwargs.get("to_user_id") is not None:
                raise a.invalid("give to_user_id or group_id, not both")
            group_id = a.entity("group_id")
            body, size = a.body()
            return cls(None, body, size, group_id)
        to_user_id = a.entity("to_user_id")
        body, size = a.body()
        return cls(to_user_id, body, size)


@dataclass(frozen=True, slots=True)
class PresenceRequest:
    """`mics.presence.get`."""

    user_ids: list[str]

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Self:
        return cls(Args(args, kwargs).entity_list("user_ids", MAX_PRESENCE_IDS))


@dataclass(frozen=True, slots=True)
class NoArgs:
    """`mics.ping` (and anything else without arguments)."""

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Self:
        Args(args, kwargs)
        return cls()


@dataclass(frozen=True, slots=True)
class SessionListRequest:
    """`mics.session.list` (backends) and the admin variant."""

    user_id: str | None = None

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Self:
        return cls(Args(args, kwargs).optional_entity("user_id"))


@dataclass(frozen=True, slots=True)
class SessionKickRequest:
    """`mics.session.kick` (backends) and the admin variant."""

    user_id: str
    device_id: str | None = None

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Self:
        a = Args(args, kwargs)
        return cls(a.entity("user_id"), a.optional_entity("device_id"))


@dataclass(frozen=True, slots=True)
class MembersChangedRequest:
    """`mics.group.members_changed` (backends)."""

    group_id: str
    added: list[str]
    removed: list[str]

    @classmethod
    def parse(cls, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Self:
        a = Args(args, kwargs)
        group_id = a.entity("group_id")
        added = a.entity_list("added", MAX_MEMBER_CHANGES, required=False)
        removed = a.entity_list("removed", MAX_MEMBER_CHANGES, required=False)
        if not added and not removed:
            raise a.invalid("added or removed must name someone")
        return cls(group_id, added, removed)

    @property
    def body(self) -> dict[str, Any]:
        return {"added": self.added, "removed": self.removed}
