"""Structured logs: `MICS_LOG_FORMAT=json` turns the node's log lines into one JSON object each.

Crossbar's controller prints what its workers log as text (`--logformat syslogd`: "[Router 123
warn] text"; mics.crossbar_run adds the level), info and debug on stdout, warnings and errors on
stderr. `mics node` reads those lines and
writes JSON: the text as `message`, plus every `key=value` our messages carry (tenant_id, trace_id,
msg_id, cause, ...) as fields, and node_id on every line. MICS messages put those fields in their
text for exactly this reason: `log.warn("... tenant_id={tenant_id} cause={cause}", ...)`.
"""

from __future__ import annotations

import json
import re
import time
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
        if match["level"]:  # mics.crossbar_run names the level; without it, the stream tells info from warn
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
