"""The dead-letter spool: events a sink could not deliver after its retries, kept for re-push.

One JSON-lines file per tenant, `{data_dir}/dlq/{tenant_id}.jsonl`; each line is one dead letter
with the exact Kafka record (key, value as base64 MqEvent bytes). The node holds the live entries
in memory and appends to the file, so the spool survives a restart; it is bounded by entries and
bytes, and when full the oldest letter is dropped, counted and logged (never silently).
"""

from __future__ import annotations

import base64
import json
import os
from collections import deque
from dataclasses import dataclass
from typing import Any

from txaio import make_logger

from mics import errors, metrics
from mics.errors import MicsError
from mics.events import encode
from mics.hooks.codec import dumps

DLQ_FULL = "dlq_full"  # mics_events_dropped_total reason: the oldest letter made room for a new one
MAX_ENTRIES = 10_000
MAX_BYTES = 64 * 1024 * 1024
DEFAULT_LIST_LIMIT = 100

log = make_logger()


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One undeliverable Kafka record and why it failed."""

    id: int
    failed_at: int  # ms since the epoch
    event_type: str
    key: str
    value: bytes  # MqEvent protobuf bytes, exactly as it would have been produced
    attempts: int
    error: str

    def to_line(self) -> bytes:
        return dumps({**self._fields(), "value": base64.b64encode(self.value).decode("ascii")}) + b"\n"

    @classmethod
    def from_line(cls, line: bytes) -> DeadLetter:
        raw = json.loads(line)
        return cls(
            id=int(raw["id"]),
            failed_at=int(raw["failed_at"]),
            event_type=str(raw["event_type"]),
            key=str(raw["key"]),
            value=base64.b64decode(raw["value"]),
            attempts=int(raw["attempts"]),
            error=str(raw["error"]),
        )

    def _fields(self) -> dict[str, Any]:
        return {"id": self.id, "failed_at": self.failed_at, "event_type": self.event_type, "key": self.key,
                "attempts": self.attempts, "error": self.error}  # fmt: skip

    def to_listing(self) -> dict[str, Any]:
        """What admins see: the letter's facts and the MqEvent decoded."""
        return {**self._fields(), "event": encode.decode(self.value)}

    @property
    def size(self) -> int:
        return len(self.value) + len(self.key) + len(self.error) + 64


class DeadLetterSpool:
    """A tenant's bounded dead letters: in memory, appended to a file, compacted now and then."""

    def __init__(self, tenant_id: str, data_dir: str, max_entries: int = MAX_ENTRIES, max_bytes: int = MAX_BYTES):
        self.tenant_id = tenant_id
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        directory = os.path.join(data_dir, "dlq")
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, f"{tenant_id}.jsonl")
        self.entries: deque[DeadLetter] = deque()
        self.bytes = 0
        self.dropped = 0
        self._next_id = 1
        self._file_lines = 0
        self._dropped_metric = metrics.EVENTS.labels(tenant_id, "dlq", "dropped")
        self._lost_metric = metrics.EVENTS_DROPPED.labels(tenant_id, "dlq", DLQ_FULL)
        self._size = metrics.EVENT_DLQ.labels(tenant_id)
        self._load()
        self._file = open(self.path, "ab")

    def __len__(self) -> int:
        return len(self.entries)

    def _load(self) -> None:
        try:
            with open(self.path, "rb") as f:
                lines = f.readlines()
        except FileNotFoundError:
            return
        bad = 0
        for line in lines:
            try:
                letter = DeadLetter.from_line(line)
            except (ValueError, KeyError, TypeError):
                bad += 1
                continue
            self.entries.append(letter)
            self.bytes += letter.size
            self._next_id = max(self._next_id, letter.id + 1)
        if bad:
            log.warn("dead-letter spool {path}: {bad} unreadable line(s) skipped", path=self.path, bad=bad)
        self._trim()
        self._rewrite()

    def add(self, *, failed_at: int, event_type: str, key: str, value: bytes, attempts: int, error: str) -> None:
        letter = DeadLetter(self._next_id, failed_at, event_type, key, value, attempts, error)
        self._next_id += 1
        self.entries.append(letter)
        self.bytes += letter.size
        self._file.write(letter.to_line())
        self._file.flush()
        self._file_lines += 1
        if self._trim() and self._file_lines > 2 * len(self.entries) + 100:
            self._rewrite()  # the file holds many dropped letters: compact it
        self._size.set(len(self.entries))

    def _trim(self) -> int:
        """Drop the oldest letters over the caps; returns how many (each counted and logged)."""
        dropped = 0
        while self.entries and (len(self.entries) > self.max_entries or self.bytes > self.max_bytes):
            oldest = self.entries.popleft()
            self.bytes -= oldest.size
            dropped += 1
        if dropped:
            self.dropped += dropped
            self._dropped_metric.inc(dropped)
            self._lost_metric.inc(dropped)
            log.warn(
                "dead-letter spool full, oldest dropped: tenant_id={tenant_id} dropped={dropped} total_dropped={total}",
                tenant_id=self.tenant_id,
                dropped=dropped,
                total=self.dropped,
            )
        return dropped

    def list(self, limit: int | None = None) -> list[DeadLetter]:
        """The oldest `limit` letters (all when None)."""
        entries = list(self.entries)
        return entries if limit is None else entries[:limit]

    def take(self, limit: int | None = None) -> list[DeadLetter]:
        """Remove and return the oldest `limit` letters (for re-push); the file is rewritten."""
        count = len(self.entries) if limit is None else min(limit, len(self.entries))
        taken = [self.entries.popleft() for _ in range(count)]
        self.bytes -= sum(letter.size for letter in taken)
        if taken:
            self._rewrite()
        self._size.set(len(self.entries))
        return taken

    def _rewrite(self) -> None:
        """Replace the file with the live letters (atomic rename)."""
        tmp = self.path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(b"".join(letter.to_line() for letter in self.entries))
        os.replace(tmp, self.path)
        if getattr(self, "_file", None) is not None:
            self._file.close()
            self._file = open(self.path, "ab")
        self._file_lines = len(self.entries)
        self._size.set(len(self.entries))

    def close(self) -> None:
        self._file.close()


_SPOOLS: dict[tuple[str, str], DeadLetterSpool] = {}


def spool(tenant_id: str, data_dir: str) -> DeadLetterSpool:
    """The tenant's spool, shared by every sink instance the tenant has over its lifetime."""
    key = (os.path.abspath(data_dir), tenant_id)
    found = _SPOOLS.get(key)
    if found is None:
        found = _SPOOLS[key] = DeadLetterSpool(tenant_id, data_dir)
    return found


def parse_limit(limit: Any) -> int | None:
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise MicsError(errors.INVALID_MESSAGE, f"limit must be an integer >= 1, got {limit!r}")
    return limit


def list_for_admin(tenant_id: str, data_dir: str, limit: Any = None) -> dict[str, Any]:
    """mics.admin.dlq.list: the oldest dead letters (default 100) and how many there are."""
    s = spool(tenant_id, data_dir)
    letters = s.list(parse_limit(limit) or DEFAULT_LIST_LIMIT)
    return {"dead_letters": [letter.to_listing() for letter in letters], "total": len(s), "dropped": s.dropped}
