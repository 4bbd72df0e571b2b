"""Bounded spools and queues never drop silently: the dead-letter spool and the per-tenant event queue."""

from __future__ import annotations

import txaio

txaio.use_twisted()

from mics import metrics  # noqa: E402
from mics.events import QUEUE_MAX, Event, EventQueue, EventSink  # noqa: E402
from mics.events.dlq import DeadLetterSpool  # noqa: E402
from mics.events.encode import encode  # noqa: E402


def sample(n: int) -> bytes:
    data = {"session_id": n, "user_id": "alice", "device_id": "d1", "node_id": "n1", "online_at": n}
    return encode(Event("acme", "CONNECT_ONLINE", n, "n1", data, user_id="alice"))


def add(spool: DeadLetterSpool, n: int) -> None:
    spool.add(failed_at=n, event_type="CONNECT_ONLINE", key="alice", value=sample(n), attempts=4, error=f"err {n}")


def metric(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_spool_keeps_letters_across_a_restart_and_take_removes_the_oldest(tmp_path):
    spool = DeadLetterSpool("t-keep", str(tmp_path))
    for n in range(1, 4):
        add(spool, n)
    spool.close()

    reopened = DeadLetterSpool("t-keep", str(tmp_path))
    assert [d.failed_at for d in reopened.list()] == [1, 2, 3]
    listed = reopened.list(1)[0].to_listing()
    assert listed["event"]["event_data"]["session_id"] == 1 and listed["error"] == "err 1" and listed["attempts"] == 4
    taken = reopened.take(2)
    assert [d.value for d in taken] == [sample(1), sample(2)]
    add(reopened, 4)
    reopened.close()
    again = DeadLetterSpool("t-keep", str(tmp_path))
    assert [d.failed_at for d in again.list()] == [3, 4] and len({d.id for d in again.list()}) == 2


def test_a_full_spool_drops_its_oldest_letters_counted_and_compacts_its_file(tmp_path):
    before = metric("mics_events_total", tenant="t-full", sink="dlq", outcome="dropped")
    spool = DeadLetterSpool("t-full", str(tmp_path), max_entries=5)
    for n in range(1, 301):
        add(spool, n)

    assert [d.failed_at for d in spool.list()] == [296, 297, 298, 299, 300]
    assert spool.dropped == 295
    assert metric("mics_events_total", tenant="t-full", sink="dlq", outcome="dropped") - before == 295
    assert metric("mics_event_dlq_size", tenant="t-full") == 5
    lines = open(spool.path, "rb").read().splitlines()
    assert len(lines) <= 2 * 5 + 100  # rewritten now and then, not growing without bound
    spool.close()
    reopened = DeadLetterSpool("t-full", str(tmp_path), max_entries=5)
    assert [d.failed_at for d in reopened.list()] == [296, 297, 298, 299, 300]


def test_a_spool_is_also_bounded_by_bytes(tmp_path):
    size = len(sample(1))
    spool = DeadLetterSpool("t-bytes", str(tmp_path), max_bytes=3 * (size + 100))
    for n in range(1, 11):
        add(spool, n)
    assert 1 <= len(spool) <= 3 and spool.dropped == 10 - len(spool) and spool.list()[-1].failed_at == 10


class CollectingSink(EventSink):
    name = "collect"

    def __init__(self) -> None:
        self.got: list[Event] = []

    def deliver(self, events: list[Event]) -> None:
        self.got.extend(events)


def test_an_overflowing_event_queue_counts_every_dropped_event_and_keeps_the_rest():
    sink = CollectingSink()
    queue = EventQueue("t-overflow", [sink])
    before = metric("mics_events_total", tenant="t-overflow", sink="queue", outcome="dropped")
    for n in range(QUEUE_MAX + 7):
        queue.put(Event("t-overflow", "CONNECT_ONLINE", n, "n1", {}, user_id="alice"))
    queue.drain()

    assert queue.dropped == 7
    assert metric("mics_events_total", tenant="t-overflow", sink="queue", outcome="dropped") - before == 7
    assert len(sink.got) == QUEUE_MAX and sink.got[-1].timestamp == QUEUE_MAX - 1
