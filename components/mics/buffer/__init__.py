"""The catch-up buffer: per-user inbox sequence numbers and the short-lived messages held for sync.

MICS stores no history: the buffer holds inbox messages for a few minutes so a device that was
offline, or dropped for a moment, catches up with `mics.inbox.sync`. One instance per tenant.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred

from mics.types import SyncResult


@dataclass(frozen=True, slots=True)
class Sent:
    """The sender index's record of one user's message (section 11: recall and edit): who sent it to
    whom, when, and where its copies are held (user, seq). Metadata only, never the body."""

    msg_id: str
    from_user_id: str
    to_user_id: str | None
    group_id: str | None
    ts: int
    held: tuple[tuple[str, int], ...] = ()
    recalled: bool = False


class CatchupBuffer(ABC):
    """Inbox streams of one tenant: seq allocation, held messages, dedup of client_msg_id.

    The stream operations are coroutines: in memory they finish at once, in Redis they take a
    round trip. Housekeeping (configure, expire, stats) is synchronous.
    """

    def __init__(self, tenant_id: str, max_per_user: int, max_bytes: int, clock: Callable[[], float]) -> None:
        self.tenant_id = tenant_id
        self._clock = clock
        self._max_per_user = max_per_user
        self._max_bytes = max_bytes
        self._epoch = ""
        self.evicted = 0  # held messages dropped by a cap (counted by this node)
        self.expired = 0

    @property
    def epoch(self) -> str:
        """Names the stream; changes whenever held messages were lost (restart, flush)."""
        return self._epoch

    def configure(self, max_per_user: int, max_bytes: int) -> None:
        """Apply new caps (tenant config changed)."""
        self._max_per_user = max_per_user
        self._max_bytes = max_bytes

    @abstractmethod
    async def append(self, user_id: str, entry: dict[str, Any], size: int, hold_s: float) -> int:
        """Give `entry` the user's next seq (sets entry["seq"]), hold it for `hold_s`; return the seq."""

    async def append_many(self, user_ids: list[str], entry: dict[str, Any], size: int, hold_s: float) -> list[int]:
        """Hold a copy of `entry` for each user (each takes that user's next seq); returns the seqs."""
        return [await self.append(user_id, dict(entry), size, hold_s) for user_id in user_ids]

    @abstractmethod
    async def since(self, user_id: str, since_seq: int, epoch: str | None) -> SyncResult:
        """Every held message with seq > since_seq, oldest first; complete=False if any is gone."""

    @abstractmethod
    async def recent(self, user_id: str, limit: int, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """The newest `limit` held entries of the user's inbox (unexpired, each with its seq) for which
        `match` is true, oldest first (section 12: an agent's context)."""

    @abstractmethod
    async def last_seq(self, user_id: str) -> int:
        """The highest seq given to this user (0 if none)."""

    @abstractmethod
    async def seen(self, user_id: str, client_msg_id: str) -> dict[str, Any] | None:
        """The Ack of an earlier send with this client_msg_id inside the dedup window."""

    @abstractmethod
    async def remember(self, user_id: str, client_msg_id: str, ack: dict[str, Any]) -> None:
        """Record a send's Ack for dedup."""

    # -- the sender index (section 11), kept for recall_window_s -----------------------------------
    @abstractmethod
    async def remember_sent(self, sent: Sent, keep_s: float) -> None:
        """Record who sent a message to whom, and where its copies are held, for `keep_s`."""

    @abstractmethod
    async def sent(self, msg_id: str) -> Sent | None:
        """The sender index's record of `msg_id`, or None when unknown or expired."""

    @abstractmethod
    async def amend(self, sent: Sent, patch: dict[str, Any], size: int, recall: bool) -> bool:
        """Change every held copy of `sent` in place (`patch` over its fields; `size` is its new held
        size) and, for a recall, mark the record recalled. False when the record is gone or was
        recalled meanwhile (nothing changed)."""

    @abstractmethod
    async def flush(self) -> None:
        """Drop everything held and start a new epoch."""

    @abstractmethod
    def expire(self) -> Deferred[None] | None:
        """Drop what has expired (called from the node's periodic timer; Redis: a Deferred)."""

    @abstractmethod
    def stats(self) -> dict[str, int]:
        """Counters for admin stats and metrics."""


def sync_result(
    held: list[tuple[int, dict[str, Any]]], last: int, epoch: str, since_seq: int, client_epoch: str | None
) -> SyncResult:
    """What a sync returns, from the unexpired held (seq, entry) pairs of the user, in seq order.

    Complete when every seq in (since_seq, last] is still held and the client's stream is ours; a
    client with an old epoch gets everything held, incomplete.
    """
    same_epoch = client_epoch is None or client_epoch == epoch
    start = since_seq if same_epoch else 0
    messages = [entry for seq, entry in held if seq > start]
    complete = same_epoch and since_seq <= last and len(messages) == last - start
    return SyncResult(messages, last, epoch, complete)
