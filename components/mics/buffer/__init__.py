"""The catch-up buffer: per-user inbox sequence numbers and the short-lived messages held for sync.

MICS stores no history: the buffer holds inbox messages for a few minutes so a device that was
offline, or dropped for a moment, catches up with `mics.inbox.sync`. One instance per tenant.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet.defer import Deferred

from mics.types import SyncResult

# A sync answers one page: held messages, oldest first, while their held sizes (body + the 256 bytes
# ENTRY_OVERHEAD of mics.service, mentions included) stay within SYNC_PAGE_BYTES and there are at most
# SYNC_PAGE_MESSAGES of them, and always at least one. Without pages, a sender who filled an offline
# user's inbox with large messages made every sync RESULT larger than the router's 1 MiB frame cap
# (router/.crossbar/config.json max_message_size): the victim could never sync.
# Why a page fits every serializer under 1 MiB (max_payload_bytes is at most 512 KiB):
# - the counted bytes are the bodies as compact UTF-8 JSON (bytes as is): JSON carries them as
#   counted, bytes as base64 (x 4/3); msgpack and CBOR carry strings and ints in no more, but a float
#   takes 9 bytes where JSON may write 4 ("0.1,"): x 2.25 at worst, so 256 KiB counted is <= 576 KiB;
# - what the 256 bytes of overhead don't cover (ids and text fields, 128 characters of up to 4 UTF-8
#   bytes each) is under 4 KiB a message: <= 256 KiB for SYNC_PAGE_MESSAGES;
# so a page of several messages is <= 832 KiB in any serializer, and a page of one is one message,
# which live delivery carries anyway.
SYNC_PAGE_BYTES = 256 * 1024
SYNC_PAGE_MESSAGES = 64


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
        """The held messages with seq > since_seq, oldest first, one page of them (`more` when the page
        was cut: `last_seq` is then its last seq); complete=False if any is gone."""

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


def sync_start(since_seq: int, client_epoch: str | None, epoch: str) -> int:
    """The seq a sync reads after: a client with another epoch's position gets everything held."""
    return since_seq if client_epoch is None or client_epoch == epoch else 0


def sync_page(
    held: Iterable[tuple[int, int, dict[str, Any]]], budget: int = SYNC_PAGE_BYTES, count: int = SYNC_PAGE_MESSAGES
) -> tuple[list[tuple[int, dict[str, Any]]], bool]:
    """The first page of unexpired held (seq, size, entry) in seq order: (seq, entry) pairs while the
    sizes add up to at most `budget` and there are at most `count` (at least one), and whether some
    were left for the next page."""
    page: list[tuple[int, dict[str, Any]]] = []
    total = 0
    for seq, size, entry in held:
        if page and (total + size > budget or len(page) == count):
            return page, True
        total += size
        page.append((seq, entry))
    return page, False


def sync_result(
    page: list[tuple[int, dict[str, Any]]], more: bool, last: int, epoch: str, since_seq: int,
    client_epoch: str | None,
) -> SyncResult:  # fmt: skip
    """What a sync returns, from a page of the user's unexpired held (seq, entry) pairs after
    `sync_start` (see `sync_page`).

    Complete when every seq in (since_seq, last] up to the page's end is still held and the client's
    stream is ours; a client with an old epoch gets everything held, incomplete. A cut page ends at
    its last seq, so a client that resumes from `last_seq` misses nothing.
    """
    same_epoch = client_epoch is None or client_epoch == epoch
    start = sync_start(since_seq, client_epoch, epoch)
    end = page[-1][0] if more else last
    complete = same_epoch and since_seq <= last and len(page) == end - start
    return SyncResult([entry for _seq, entry in page], end, epoch, complete, more)
