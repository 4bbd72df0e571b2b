"""In-memory catch-up buffer for one node.

What it can't do: survive a restart (the epoch changes, clients see complete=false) or serve a
user whose devices sit on several nodes; cluster mode needs a shared (Redis) buffer.
"""

from __future__ import annotations

import os
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from mics.buffer import CatchupBuffer, Sent, sync_page, sync_result, sync_start
from mics.types import SyncResult

DEDUP_WINDOW_S = 300.0
DEDUP_MAX_ENTRIES = 200_000
# sender index records (about 200 bytes each); past this the oldest go first, and a recall of
# those answers not_found, as for an older message
SENT_MAX_ENTRIES = 1_000_000


class _Inbox:
    """One user's stream: items are [seq, expires_at, size, entry], in seq order."""

    __slots__ = ("items", "next_seq")

    def __init__(self) -> None:
        self.next_seq = 1
        self.items: deque[list[Any]] = deque()


class MemoryBuffer(CatchupBuffer):
    """Held inbox messages of one tenant, in process memory, with TTLs and two caps."""

    def __init__(self, tenant_id: str, max_per_user: int, max_bytes: int, clock: Callable[[], float]) -> None:
        super().__init__(tenant_id, max_per_user, max_bytes, clock)
        self._epoch = os.urandom(6).hex()
        self._inboxes: dict[str, _Inbox] = {}
        # append order across the tenant, for evicting the oldest when the byte cap is hit
        self._order: deque[tuple[str, int, int]] = deque()
        self._bytes = 0
        self._dedup: OrderedDict[tuple[str, str], tuple[float, dict[str, Any]]] = OrderedDict()
        # the sender index: msg_id -> (expires, from, to, group, ts, held (user, seq, user, seq, ...),
        # recalled); plain tuples of strings and numbers, which the garbage collector stops tracking,
        # so a window full of records costs no collection time. `_sent_order`: (expires, msg_id).
        self._sent: dict[str, tuple[Any, ...]] = {}
        self._sent_order: deque[tuple[float, str]] = deque()

    async def append(self, user_id: str, entry: dict[str, Any], size: int, hold_s: float) -> int:
        inbox = self._inboxes.get(user_id)
        if inbox is None:
            inbox = self._inboxes[user_id] = _Inbox()
        seq = inbox.next_seq
        inbox.next_seq = seq + 1
        entry["seq"] = seq
        if hold_s <= 0:
            return seq
        items = inbox.items
        items.append([seq, self._clock() + hold_s, size, entry])
        self._bytes += size
        self._order.append((user_id, seq, size))
        if len(items) > self._max_per_user:
            self._drop_head(items)
            self.evicted += 1
        while self._bytes > self._max_bytes and self._order:
            self._evict_oldest()
        return seq

    def _drop_head(self, items: deque[list[Any]]) -> None:
        self._bytes -= items.popleft()[2]

    def _evict_oldest(self) -> None:
        user_id, seq, _size = self._order.popleft()
        inbox = self._inboxes.get(user_id)
        if inbox is None:
            return
        items = inbox.items
        # the oldest tenant-wide entry is the oldest of its inbox, unless already gone
        if items and items[0][0] <= seq:
            while items and items[0][0] <= seq:
                self._drop_head(items)
                self.evicted += 1

    async def last_seq(self, user_id: str) -> int:
        inbox = self._inboxes.get(user_id)
        return 0 if inbox is None else inbox.next_seq - 1

    async def since(self, user_id: str, since_seq: int, epoch: str | None) -> SyncResult:
        inbox = self._inboxes.get(user_id)
        if inbox is None:
            return sync_result([], False, 0, self._epoch, since_seq, epoch)
        now = self._clock()
        start = sync_start(since_seq, epoch, self._epoch)
        held = ((seq, size, entry) for seq, expires, size, entry in inbox.items if seq > start and expires > now)
        page, more = sync_page(held)
        return sync_result(page, more, inbox.next_seq - 1, self._epoch, since_seq, epoch)

    async def recent(self, user_id: str, limit: int, match: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        inbox = self._inboxes.get(user_id)
        found: list[dict[str, Any]] = []
        if inbox is None or limit <= 0:
            return found
        now = self._clock()
        for _seq, expires, _size, entry in reversed(inbox.items):
            if expires > now and match(entry):
                found.append(entry)
                if len(found) == limit:
                    break
        found.reverse()
        return found

    async def seen(self, user_id: str, client_msg_id: str) -> dict[str, Any] | None:
        hit = self._dedup.get((user_id, client_msg_id))
        if hit is None or hit[0] < self._clock():
            return None
        return hit[1]

    async def remember(self, user_id: str, client_msg_id: str, ack: dict[str, Any]) -> None:
        dedup = self._dedup
        dedup[(user_id, client_msg_id)] = (self._clock() + DEDUP_WINDOW_S, ack)
        if len(dedup) > DEDUP_MAX_ENTRIES:
            dedup.popitem(last=False)

    async def remember_sent(self, sent: Sent, keep_s: float) -> None:
        self.index_sent(sent.msg_id, sent.from_user_id, sent.to_user_id, sent.group_id, sent.ts,
                        tuple(x for pair in sent.held for x in pair), keep_s)  # fmt: skip

    def index_sent(
        self, msg_id: str, from_user_id: str, to_user_id: str | None, group_id: str | None, ts: int,
        held: tuple[Any, ...], keep_s: float,
    ) -> None:  # fmt: skip
        """`remember_sent` without building a record or awaiting: the one-node send path calls this."""
        expires = self._clock() + keep_s
        self._sent[msg_id] = (expires, from_user_id, to_user_id, group_id, ts, held, False)
        order = self._sent_order
        order.append((expires, msg_id))
        if len(order) > SENT_MAX_ENTRIES:
            self._forget_sent(*order.popleft())

    def _forget_sent(self, expires: float, msg_id: str) -> None:
        hit = self._sent.get(msg_id)
        if hit is not None and hit[0] == expires:  # not remembered again since
            del self._sent[msg_id]

    async def sent(self, msg_id: str) -> Sent | None:
        hit = self._sent.get(msg_id)
        if hit is None or hit[0] <= self._clock():
            return None
        _expires, from_user_id, to_user_id, group_id, ts, held, recalled = hit
        pairs = tuple(zip(held[::2], held[1::2], strict=True))
        return Sent(msg_id, from_user_id, to_user_id, group_id, ts, pairs, recalled)

    async def amend(self, sent: Sent, patch: dict[str, Any], size: int, recall: bool) -> bool:
        hit = self._sent.get(sent.msg_id)
        if hit is None or hit[0] <= self._clock() or hit[6]:
            return False
        if recall:
            self._sent[sent.msg_id] = (*hit[:6], True)
        held = hit[5]
        for user_id, seq in zip(held[::2], held[1::2], strict=True):
            item = self._held_item(user_id, seq)
            if item is not None and item[3].get("msg_id") == sent.msg_id:
                item[3] = {**item[3], **patch}  # a new dict: what was delivered before stays as it was
                self._bytes += size - item[2]
                item[2] = size
        while self._bytes > self._max_bytes and self._order:
            self._evict_oldest()
        return True

    def _held_item(self, user_id: str, seq: int) -> list[Any] | None:
        """The held [seq, expires, size, entry] of a user's seq (recent ones are at the end)."""
        inbox = self._inboxes.get(user_id)
        for item in reversed(inbox.items if inbox is not None else ()):
            if item[0] <= seq:
                return item if item[0] == seq else None
        return None

    def expire(self) -> None:
        now = self._clock()
        for inbox in self._inboxes.values():
            items = inbox.items
            # drop expired heads; an expired item behind a live one waits (since() skips it).
            # Inboxes keep their seq counter even when empty: seqs never restart within an epoch.
            while items and items[0][1] <= now:
                self._drop_head(items)
                self.expired += 1
        order = self._order
        while order:
            user_id, seq, _size = order[0]
            items = self._inboxes[user_id].items
            if items and items[0][0] <= seq:
                break
            order.popleft()
        dedup = self._dedup
        while dedup:
            key, (expires, _ack) = next(iter(dedup.items()))
            if expires > now:
                break
            del dedup[key]
        order = self._sent_order  # roughly by expiry (the window may change): stop at the first live one
        while order and order[0][0] <= now:
            self._forget_sent(*order.popleft())

    async def flush(self) -> None:
        self._inboxes.clear()
        self._order.clear()
        self._bytes = 0
        self._dedup.clear()
        self._sent.clear()
        self._sent_order.clear()
        self._epoch = os.urandom(6).hex()

    def stats(self) -> dict[str, int]:
        held = sum(len(i.items) for i in self._inboxes.values())
        return {
            "held_messages": held,
            "held_bytes": self._bytes,
            "evicted": self.evicted,
            "expired": self.expired,
            "inboxes": len(self._inboxes),
        }
