"""Small frozen value types the SDK hands to applications (protocol.md sections 3-4)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Message:
    """One inbox or group event, or one sync entry (protocol.md section 4)."""

    msg_id: str
    type: str
    from_user_id: str | None
    body: Any
    ts: int
    tenant_id: str | None = None
    from_device_id: str | None = None
    to_user_id: str | None = None
    group_id: str | None = None
    content_type: str | None = None
    client_msg_id: str | None = None
    seq: int | None = None
    trace_id: str | None = None
    #: group sends: the user ids it mentions (section 11)
    mentions: list[str] | None = None
    #: the msg_id this message replies to
    reply_to: str | None = None
    #: `recall` / `edit` messages: the message they change
    ref_msg_id: str | None = None
    #: True on a recalled message (its body is gone: show "message recalled")
    recalled: bool | None = None
    #: ms: when its body was last edited
    edited_at: int | None = None
    #: an AI agent's answer (section 12): its chunks and its final message share it
    stream_id: str | None = None
    #: `agent_chunk` only: 1, 2, ... in the order the agent streamed
    chunk_seq: int | None = None
    #: True when this came from `mics.inbox.sync` rather than a live event
    replayed: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    _FIELDS = (
        "msg_id", "type", "from_user_id", "body", "ts", "tenant_id", "from_device_id", "to_user_id",
        "group_id", "content_type", "client_msg_id", "seq", "trace_id", "mentions", "reply_to", "ref_msg_id",
        "recalled", "edited_at", "stream_id", "chunk_seq",
    )  # fmt: skip

    @classmethod
    def from_kwargs(cls, kwargs: dict[str, Any], replayed: bool = False) -> Message:
        known = {name: kwargs.get(name) for name in cls._FIELDS}
        known["msg_id"] = str(known["msg_id"] or "")
        known["type"] = str(known["type"] or "")
        known["ts"] = int(known["ts"] or 0)
        extra = {k: v for k, v in kwargs.items() if k not in cls._FIELDS}
        return cls(**known, replayed=replayed, extra=extra)

    @property
    def is_receipt(self) -> bool:
        return self.type == "receipt"

    @property
    def is_change(self) -> bool:
        """A `recall` or `edit` of an earlier message (`ref_msg_id`): apply it (see `Timeline`)."""
        return self.type in ("recall", "edit")

    @property
    def delta(self) -> Any:
        """An `agent_chunk`'s piece of the answer (`body["delta"]`); None for other messages."""
        if self.type == "agent_chunk" and isinstance(self.body, dict):
            return self.body.get("delta")
        return None

    @property
    def agent_error(self) -> dict[str, Any] | None:
        """The `{"code", "message"}` of a `system` message that ends an agent's stream without an answer."""
        if self.type == "system" and self.stream_id and isinstance(self.body, dict):
            error = self.body.get("error")
            return error if isinstance(error, dict) else None
        return None

    @property
    def typing(self) -> bool | None:
        """For a typing signal (`client.typing()`), whether the sender is typing; else None."""
        if self.type == "signal" and isinstance(self.body, dict) and isinstance(self.body.get("typing"), bool):
            return bool(self.body["typing"])
        return None

    def to_kwargs(self) -> dict[str, Any]:
        out = {name: getattr(self, name) for name in self._FIELDS}
        return {k: v for k, v in out.items() if v is not None}


@dataclass(frozen=True, slots=True)
class Ack:
    """The result of a send (protocol.md section 3); `recipients` only for group sends."""

    msg_id: str
    status: str
    ts: int
    delivered: str | None = None
    seq: int | None = None
    client_msg_id: str | None = None
    recipients: int | None = None
    #: the agents this send called (section 12): started (`stream_id` names its answer), rate_limited
    #: (nothing was called) or unavailable (a 503 answer follows on `stream_id`)
    agents: list[AgentCall] = field(default_factory=list)

    @classmethod
    def from_result(cls, result: dict[str, Any]) -> Ack:
        return cls(
            msg_id=result["msg_id"],
            status=result.get("status", "SENT"),
            ts=int(result.get("ts") or 0),
            delivered=result.get("delivered"),
            seq=result.get("seq"),
            client_msg_id=result.get("client_msg_id"),
            recipients=result.get("recipients"),
            agents=[AgentCall(a["agent_id"], a["status"], a.get("stream_id")) for a in result.get("agents") or ()],
        )


@dataclass(frozen=True, slots=True)
class AgentCall:
    """One agent a send called (an entry of `Ack.agents`); `client.stream(stream_id)` follows its answer."""

    agent_id: str
    status: str
    stream_id: str | None = None


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one `sync()` fetched; `messages` are only the ones not delivered before (deduped)."""

    messages: list[Message]
    last_seq: int
    epoch: str | None
    complete: bool


@dataclass(frozen=True, slots=True)
class SyncGap:
    """Passed to `on_gap` when a sync returned `complete: false`: refresh from the tenant's own store.

    `initial` is True when this device had no earlier position (its first sync): older messages simply
    expired before it ever connected, which many apps may ignore.
    """

    since_seq: int
    epoch_before: str | None
    last_seq: int
    epoch: str | None
    initial: bool


@dataclass(frozen=True, slots=True)
class Presence:
    """One user's presence (mics.presence.get)."""

    online: bool
    devices: list[str]


@dataclass(frozen=True, slots=True)
class PresenceChange:
    """A watched user's online devices (`watch_presence`): live events on `mics.presence.<user_id>`, and
    `snapshot=True` for the state fetched when the watch starts and after each reconnect."""

    user_id: str
    online: bool
    devices: list[str]
    ts: int
    snapshot: bool = False


@dataclass(frozen=True, slots=True)
class Welcome:
    """What the router told this session on join (WELCOME authextra)."""

    user_id: str
    device_id: str
    node_id: str | None
    session_id: int
    heartbeat_timeout_s: float
    offline_ttl_s: int | None
    authextra: dict[str, Any]
