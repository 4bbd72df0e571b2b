"""Structured logs: `MICS_LOG_FORMAT=json` turns the node's log lines into one JSON object each;
warnings rate-limited per key (`RateLimitedLog`).

Crossbar's controller prints what its workers log as text (`--logformat syslogd`: "[Router 123
warn] text"; mics.router.run adds the level), info and debug on stdout, warnings and errors on
stderr. `mics node` reads those lines and
writes JSON: the text as `message`, plus every `key=value` our messages carry (tenant_id, trace_id,
msg_id, cause, ...) as fields, and node_id on every line. MICS messages put those fields in their
text for exactly this reason: `log.warn("... tenant_id={tenant_id} cause={cause}", ...)`.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Hashable
from typing import IO, Any

_PREFIX = re.compile(
    r"^\[(?P<process>[A-Za-z]+)\s+(?P<pid>\d+)(?:\s+(?P<level>debug|info|warn|error|critical))?\]\s?(?P<text>.*)$"
)
_FIELD = re.compile(r"\b(?P<key>[a-z][a-z0-9_]*)=(?P<value>[^\s,;]+)")
# keys an event line may not overwrite
_RESERVED = frozenset({"ts", "level", "node_id", "process", "pid", "message"})


def line_to_record(line: str, level: str, node_id: str, now: float | None = None) -> dict[str, Any]:
    """One Crossbar log line (syslogd format) as a JSON-able record."""
    record: dict[str, Any] = {
        "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + "Z",
        "level": level,
        "node_id": node_id,
    }
    match = _PREFIX.match(line.rstrip("\n"))
    if match:
        if match["level"]:  # mics.router.run names the level; without it, the stream tells info from warn
            record["level"] = match["level"]
        record["process"] = match["process"].lower()
        record["pid"] = int(match["pid"])
        text = match["text"]
    else:
        text = line.rstrip("\n")
    record["message"] = text
    for field in _FIELD.finditer(text):
        if field["key"] not in _RESERVED:
            record.setdefault(field["key"], field["value"])
    return record


def pump_json(source: IO[str], sink: IO[str], level: str, node_id: str) -> None:
    """Copy lines from a child's stream to `sink` as JSON lines (runs in a supervisor thread)."""
    for line in source:
        if line.strip():
            sink.write(json.dumps(line_to_record(line, level, node_id), ensure_ascii=False) + "\n")
            sink.flush()


# -- rate-limited lines (in the router worker) ---------------------------------------------------


class RateLimitedLog:
    """At most one line per `interval_s` for each key, e.g. (tenant_id, reason): a flood of the same
    trouble (one bad client, a broken hook) logs once a minute, not once per event. The next line
    that gets through carries `suppressed=<n>`, so nothing is hidden, only summed.

    Keys are bounded (`max_keys`, oldest forgotten first) so hostile input cannot grow the table.
    """

    def __init__(self, logger: Any, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic,
                 max_keys: int = 10_000) -> None:  # fmt: skip
        self._log = logger
        self.interval_s = interval_s
        self._clock = clock
        self._max_keys = max_keys
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def warn(self, key: Hashable, text: str, **fields: Any) -> bool:
        """Log `text` (a txaio format string) at warn unless `key` logged within the interval."""
        return self._emit(self._log.warn, key, text, fields)

    def info(self, key: Hashable, text: str, **fields: Any) -> bool:
        return self._emit(self._log.info, key, text, fields)

    def error(self, key: Hashable, text: str, **fields: Any) -> bool:
        return self._emit(self._log.error, key, text, fields)

    def _emit(self, emit: Callable[..., None], key: Hashable, text: str, fields: dict[str, Any]) -> bool:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval_s:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        suppressed = self._suppressed.pop(key, 0)
        self._last.pop(key, None)
        if len(self._last) >= self._max_keys:
            oldest = next(iter(self._last))
            del self._last[oldest]
            self._suppressed.pop(oldest, None)
        self._last[key] = now
        if suppressed:
            emit(text + " suppressed={suppressed}", suppressed=suppressed, **fields)
        else:
            emit(text, **fields)
        return True

