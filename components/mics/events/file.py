"""The JSON-lines event sink: one MqEvent as JSON per line, a file per tenant (embedded default)."""

from __future__ import annotations

import os

from mics import metrics
from mics.events import Event, EventSink
from mics.hooks.codec import dumps


class FileSink(EventSink):
    """Appends batches to `{data_dir}/events/{tenant_id}.jsonl`: one write per drain, not per event."""

    name = "file"

    def __init__(self, tenant_id: str, data_dir: str) -> None:
        directory = os.path.join(data_dir, "events")
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, f"{tenant_id}.jsonl")
        self._file = open(self.path, "ab", buffering=1024 * 1024)
        self._ok = metrics.EVENTS.labels(tenant_id, "file", "ok")

    def deliver(self, events: list[Event]) -> None:
        self._file.write(b"".join(dumps(e.to_dict()) + b"\n" for e in events))
        self._file.flush()
        self._ok.inc(len(events))

    def close(self) -> None:
        self._file.close()
