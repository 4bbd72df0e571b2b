"""The JSON-lines event sink: one MqEvent as JSON per line, a file per tenant (embedded default)."""

from __future__ import annotations

import json
import os

from mics import metrics
from mics.events import UNENCODABLE, WRITE_FAILED, Drops, Event, EventSink
from mics.hooks.codec import dumps


def encode_line(event: Event) -> bytes:
    """One event as a line of strict JSON: the consumer's parser must accept every line, so a value
    JSON cannot carry (a lone surrogate, NaN/Infinity) fails here, for this event only."""
    line = dumps(event.to_dict())
    if b"NaN" in line or b"Infinity" in line:  # cheap pre-test; strict encoding only for the rare suspect
        json.dumps(event.to_dict(), allow_nan=False, default=str)
    return line + b"\n"


class FileSink(EventSink):
    """Appends batches to `{data_dir}/events/{tenant_id}.jsonl`: one write per drain, not per event."""

    name = "file"

    def __init__(self, tenant_id: str, data_dir: str) -> None:
        directory = os.path.join(data_dir, "events")
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, f"{tenant_id}.jsonl")
        self._file = open(self.path, "ab", buffering=1024 * 1024)
        self._ok = metrics.EVENTS.labels(tenant_id, "file", "ok")
        self._drops = Drops(tenant_id, self.name)

    def deliver(self, events: list[Event]) -> None:
        lines = []
        for event in events:
            try:
                lines.append(encode_line(event))
            except Exception as e:  # this event only: its data cannot be written as JSON
                self._drops.drop(UNENCODABLE, event, e)
        if not lines:
            return
        try:
            self._file.write(b"".join(lines))
            self._file.flush()
        except OSError as e:  # disk full, file gone: counted, the next batch tries again
            self._drops.drop(WRITE_FAILED, None, e, count=len(lines))
            return
        self._ok.inc(len(lines))

    def close(self) -> None:
        self._file.close()
