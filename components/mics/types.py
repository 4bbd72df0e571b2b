"""Plain value types at MICS boundaries: what crosses the wire enters and leaves through these."""

from __future__ import annotations

import itertools
import os
import time
import zlib
from dataclasses import dataclass, field
from typing import Any

CHAT = "chat"
GROUP_CHAT = "group_chat"
RECEIPT = "receipt"
SIGNAL = "signal"
SYSTEM = "system"
RECALL = "recall"
EDIT = "edit"
AGENT_CHUNK = "agent_chunk"  # section 12: one streamed delta of an agent's answer (live only)

RECEIPT_KINDS = ("delivered", "read")


@dataclass(frozen=True, slots=True)
class Sender:
    """Who is calling: a user's device, or the tenant backend sending as `user_id` (system)."""

    user_id: str
    device_id: str | None
    session_id: int
    is_system: bool

    @property
    def own_session(self) -> int | None:
        """The calling device's session, which never gets its own message back (None for system)."""
        return None if self.is_system else self.session_id


@dataclass(frozen=True, slots=True)
class Message:
    """A MICS message (protocol.md section 4). `seq` is per recipient, so it is not stored here."""

    msg_id: str
    type: str
    tenant_id: str
    from_user_id: str
    from_device_id: str | None
    body: Any
    ts: int
    trace_id: str
    to_user_id: str | None = None
    group_id: str | None = None
    content_type: str | None = None
    client_msg_id: str | None = None
    mentions: list[str] | None = None  # section 11: group sends
    reply_to: str | None = None
    ref_msg_id: str | None = None  # recall and edit: the message they change
    stream_id: str | None = None  # section 12: an agent's answer (its chunks and its final message)
    chunk_seq: int | None = None  # section 12: agent_chunk only, from 1 without gaps

    def to_kwargs(self) -> dict[str, Any]:
        """Event kwargs / sync entry; optional fields appear only when set."""
        out: dict[str, Any] = {
            "msg_id": self.msg_id,
            "type": self.type,
            "tenant_id": self.tenant_id,
            "from_user_id": self.from_user_id,
            "from_device_id": self.from_device_id,
            "body": self.body,
            "ts": self.ts,
            "trace_id": self.trace_id,
        }
        if self.to_user_id is not None:
            out["to_user_id"] = self.to_user_id
        if self.group_id is not None:
            out["group_id"] = self.group_id
        if self.content_type is not None:
            out["content_type"] = self.content_type
        if self.client_msg_id is not None:
            out["client_msg_id"] = self.client_msg_id
        if self.mentions is not None:
            out["mentions"] = self.mentions
        if self.reply_to is not None:
            out["reply_to"] = self.reply_to
        if self.ref_msg_id is not None:
            out["ref_msg_id"] = self.ref_msg_id
        if self.stream_id is not None:
            out["stream_id"] = self.stream_id
        if self.chunk_seq is not None:
            out["chunk_seq"] = self.chunk_seq
        return out


@dataclass(frozen=True, slots=True)
class Ack:
    """The result of an accepted send."""

    msg_id: str
    ts: int
    delivered: str  # "online" | "buffered"
    seq: int | None = None
    client_msg_id: str | None = None
    recipients: int | None = None  # group sends only
    agents: list[dict[str, Any]] | None = None  # section 12: the agents this send triggered

    def to_kwargs(self) -> dict[str, Any]:
        out: dict[str, Any] = {"msg_id": self.msg_id, "status": "SENT", "ts": self.ts, "delivered": self.delivered}
        if self.seq is not None:
            out["seq"] = self.seq
        if self.client_msg_id is not None:
            out["client_msg_id"] = self.client_msg_id
        if self.recipients is not None:
            out["recipients"] = self.recipients
        if self.agents:
            out["agents"] = self.agents
        return out


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What `mics.inbox.sync` returns: held messages after a seq, whether nothing is missing, and
    whether more are held after this page (`last_seq` is then the page's last)."""

    messages: list[dict[str, Any]]
    last_seq: int
    epoch: str
    complete: bool
    more: bool = False

    def to_kwargs(self) -> dict[str, Any]:
        return {"messages": self.messages, "last_seq": self.last_seq, "epoch": self.epoch, "complete": self.complete,
                "more": self.more}  # fmt: skip


@dataclass(frozen=True, slots=True)
class CheckVerdict:
    """The check-message hook's answer after policy (trouble already turned into allow)."""

    allow: bool
    reason: str | None = None


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass(slots=True)
class MsgIdFactory:
    """Makes message ids unique across the cluster and sortable by time.

    32 hex chars: 12 for the millisecond clock, 8 for a hash of the node id, 12 for a counter
    that starts at a random point, so two nodes (or two restarts) never collide.
    """

    node_id: str
    _node_tag: str = field(init=False)
    _counter: Any = field(init=False)

    def __post_init__(self) -> None:
        self._node_tag = format(zlib.crc32(self.node_id.encode()), "08x")
        self._counter = itertools.count(int.from_bytes(os.urandom(5), "big"))

    def make(self, ts_ms: int) -> str:
        return f"{ts_ms:012x}{self._node_tag}{next(self._counter) & 0xFFFFFFFFFFFF:012x}"
