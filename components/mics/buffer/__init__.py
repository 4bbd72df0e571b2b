"""The catch-up buffer: per-user inbox sequence numbers and the short-lived messages held for sync.

MICS stores no history: the buffer holds inbox messages for a few minutes so a device that was
offline, or dropped for a moment, catches up with `mics.inbox.sync`. One instance per tenant.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any

from mics.types import SyncResult


class CatchupBuffer(ABC):
    """Inbox streams of one tenant: seq allocation, held messages, dedup of client_msg_id."""

    @property
    @abstractmethod
    def epoch(self) -> str:
        """Names the stream; changes whenever held messages were lost (restart, flush)."""

    @abstractmethod
    def append(self, user_id: str, entry: dict[str, Any], size: int, hold_s: float) -> int:
        """Give `entry` the user's next seq (sets entry["seq"]), hold it for `hold_s`; return the seq."""

    @abstractmethod
    def since(self, user_id: str, since_seq: int, epoch: str | None) -> SyncResult:
        """Every held message with seq > since_seq, oldest first; complete=False if any is gone."""

    @abstractmethod
    def last_seq(self, user_id: str) -> int:
        """The highest seq given to this user (0 if none)."""

    @abstractmethod
    def seen(self, user_id: str, client_msg_id: str) -> dict[str, Any] | None:
        """The Ack of an earlier send with this client_msg_id inside the dedup window."""

    @abstractmethod
    def remember(self, user_id: str, client_msg_id: str, ack: dict[str, Any]) -> None:
        """Record a send's Ack for dedup."""

    @abstractmethod
    def configure(self, max_per_user: int, max_bytes: int) -> None:
        """Apply new caps (tenant config changed)."""

    @abstractmethod
    def expire(self) -> None:
        """Drop what has expired (called from the node's periodic timer)."""

    @abstractmethod
    def flush(self) -> None:
        """Drop everything held and start a new epoch."""

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters for admin stats and metrics."""


def make_buffer(tenant_id: str, max_per_user: int, max_bytes: int, clock: Callable[[], float]) -> CatchupBuffer:
    """Memory on one node; Redis is the cluster backend (not built yet, see docs/architecture.md)."""
    from mics.buffer.memory import MemoryBuffer

    return MemoryBuffer(tenant_id, max_per_user, max_bytes, clock)
