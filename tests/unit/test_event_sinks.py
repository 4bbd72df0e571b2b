"""Sinks never lose a batch for one bad event: each event is encoded on its own, and one a sink cannot
carry is dropped alone, counted in mics_events_dropped_total{tenant,sink,reason} and logged once."""

from __future__ import annotations

import json
from typing import Any

import pytest
import txaio

txaio.use_twisted()

from twisted.internet.defer import succeed  # noqa: E402

from mics import metrics  # noqa: E402
from mics.config import TenantConfig  # noqa: E402
from mics.events import SINGLE_CHAT_MSG, Event, EventQueue, EventSink  # noqa: E402
from mics.events import encode as mq  # noqa: E402
from mics.events.file import FileSink  # noqa: E402
from mics.events.kafka import KafkaSink  # noqa: E402
from mics.events.wamp import WampSink  # noqa: E402


def nested(depth: int) -> list[Any]:
    value: list[Any] = []
    for _ in range(depth):
        value = [value]
    return value


POISON = {
    "a lone surrogate in the body": "t\udfff",
    "an integer of 2**64 (msgpack has no such integer)": {"n": 2**64},
    "NaN (not JSON)": float("nan"),
    "nesting 200 deep (protobuf stops at 100)": nested(200),
}


def chat(tenant_id: str, n: int, body: Any = None, **fields: Any) -> Event:
    data = {"msg_id": f"m{n}", "type": "chat", "tenant_id": tenant_id, "from_user_id": "alice", "from_device_id": "d1",
            "to_user_id": "bob", "body": {"n": n} if body is None else body, "ts": n, "trace_id": f"m{n}", **fields}
    return Event(tenant_id, SINGLE_CHAT_MSG, n, "node-1", data, msg_id=f"m{n}", user_id="alice", to_user_id="bob",
                 trace_id=f"m{n}")  # fmt: skip


def batch_with(tenant_id: str, body: Any) -> list[Event]:
    """20 good events (m0..m19) with a bad one (m999) in the middle."""
    events = [chat(tenant_id, n) for n in range(20)]
    events.insert(10, chat(tenant_id, 999, body))
    return events


def dropped(tenant: str, sink: str, reason: str = "unencodable") -> float:
    labels = {"tenant": tenant, "sink": sink, "reason": reason}
    return metrics.REGISTRY.get_sample_value("mics_events_dropped_total", labels) or 0.0


class Recorder:
    """A publisher (the WAMP sink's session) or a producer loop (the Kafka sink's) that keeps what it got."""

    def __init__(self) -> None:
        self.published: list[tuple[str, dict[str, Any]]] = []
        self.produced: list[Any] = []
        self.sinks: set[Any] = set()
        self.shutting_down = False

    def publish(self, topic: str, options: Any, kwargs: dict[str, Any]) -> None:
        self.published.append((topic, kwargs))

    def produce(self, sink: Any, record: Any, headers: Any) -> None:
        self.produced.append(record)

    def create_topic(self, topic: str, partitions: int) -> Any:
        return succeed(None)


@pytest.mark.parametrize("case", list(POISON))
def test_the_file_sink_writes_every_other_event_of_a_batch_with_one_it_cannot_write(tmp_path, case):
    body = POISON[case]
    tenant = f"file-{list(POISON).index(case)}"
    sink = FileSink(tenant, str(tmp_path))
    before = dropped(tenant, "file")

    sink.deliver(batch_with(tenant, body))
    sink.close()

    lines = [json.loads(line) for line in open(sink.path, "rb").read().splitlines()]
    written = [e["msg_id"] for e in lines]
    if case.startswith(("a lone", "NaN")):  # JSON lines cannot carry these
        assert written == [f"m{n}" for n in range(20)]
        assert dropped(tenant, "file") - before == 1
    else:  # JSON can: Python ints are unbounded and nesting is only a matter of depth
        assert len(written) == 21 and dropped(tenant, "file") == before


@pytest.mark.parametrize("case", list(POISON))
def test_the_kafka_sink_produces_every_other_event_of_a_batch_with_one_it_cannot_encode(tmp_path, case):
    tenant = f"kafka-{list(POISON).index(case)}"
    loop = Recorder()
    sink = KafkaSink(tenant, TenantConfig.parse(tenant, {"secret": "s" * 16}), loop, None, 1)  # type: ignore[arg-type]
    before = dropped(tenant, "kafka")

    sink.deliver(batch_with(tenant, POISON[case]))

    produced = [mq.decode(r.value)["msg_id"] for r in loop.produced]
    if case.startswith("an integer"):  # protobuf's Struct holds numbers as doubles: 2**64 passes as one
        assert len(produced) == 21 and dropped(tenant, "kafka") == before
    else:  # a lone surrogate and 200 levels protobuf refuses; NaN it takes but no consumer could decode
        assert produced == [f"m{n}" for n in range(20)]
        assert dropped(tenant, "kafka") - before == 1


def test_the_kafka_sink_drops_an_event_whose_record_key_is_not_unicode():
    tenant = "kafka-key"
    loop = Recorder()
    sink = KafkaSink(tenant, TenantConfig.parse(tenant, {"secret": "s" * 16}), loop, None, 1)  # type: ignore[arg-type]
    events = [chat(tenant, 1), chat(tenant, 2)]
    events.insert(1, Event(tenant, SINGLE_CHAT_MSG, 3, "n", chat(tenant, 3).data, msg_id="m3", to_user_id="b\udfff"))

    sink.deliver(events)

    assert [r.key for r in loop.produced] == ["bob", "bob"] and dropped(tenant, "kafka") == 1


@pytest.mark.parametrize("case", list(POISON))
def test_the_wamp_sink_publishes_every_other_event_of_a_batch_with_one_a_backend_could_not_receive(case):
    tenant = f"wamp-{list(POISON).index(case)}"
    session = Recorder()
    sink = WampSink(tenant, session)
    before = dropped(tenant, "wamp")

    sink.deliver(batch_with(tenant, POISON[case]))

    published = [kwargs["msg_id"] for _, kwargs in session.published]
    if case.startswith("nesting"):  # msgpack and JSON carry 200 levels
        assert len(published) == 21 and dropped(tenant, "wamp") == before
    else:
        assert published == [f"m{n}" for n in range(20)]
        assert dropped(tenant, "wamp") - before == 1


def test_a_lone_surrogate_in_any_string_field_costs_only_its_own_event(tmp_path):
    tenant = "file-cmid"
    sink = FileSink(tenant, str(tmp_path))
    events = [chat(tenant, 1), chat(tenant, 2, client_msg_id="c\udfff"), chat(tenant, 3, content_type="t\ud800")]
    events.append(chat(tenant, 4))

    sink.deliver(events)
    sink.close()

    assert [json.loads(line)["msg_id"] for line in open(sink.path, "rb").read().splitlines()] == ["m1", "m4"]
    assert dropped(tenant, "file") == 2


def test_a_file_the_sink_cannot_write_counts_the_batch_and_the_next_batch_tries_again(tmp_path):
    tenant = "file-io"
    sink = FileSink(tenant, str(tmp_path))
    real = sink._file
    sink._file = open("/dev/full", "wb", buffering=0)  # every write fails with ENOSPC

    sink.deliver([chat(tenant, 1), chat(tenant, 2)])
    sink._file.close()
    sink._file = real
    sink.deliver([chat(tenant, 3)])
    sink.close()

    assert dropped(tenant, "file", "write_failed") == 2
    assert [json.loads(line)["msg_id"] for line in open(sink.path, "rb").read().splitlines()] == ["m3"]


class Broken(EventSink):
    name = "broken"

    def deliver(self, events: list[Event]) -> None:
        raise RuntimeError("a bug in a sink")


def test_a_sink_that_raises_loses_its_batch_counted_and_the_other_sinks_still_get_it(tmp_path):
    tenant = "queue-bug"
    good = FileSink(tenant, str(tmp_path))
    queue = EventQueue(tenant, [Broken(), good])
    for n in range(5):
        queue.put(chat(tenant, n))

    queue.drain()
    good.close()

    assert dropped(tenant, "broken", "sink_failed") == 5
    assert len(open(good.path, "rb").read().splitlines()) == 5
