"""The SDK's agent streams as pure logic: order, repeats, the end, and the bound on kept streams."""

from __future__ import annotations

import pytest_twisted
from twisted.internet.defer import Deferred

from mics_client.streams import AgentStream, StreamTable
from mics_client.types import Message


def chunk(seq: int, delta: object, stream_id: str = "s1") -> Message:
    return Message.from_kwargs({"msg_id": f"c{seq}", "type": "agent_chunk", "from_user_id": "helper", "ts": 1,
                                "stream_id": stream_id, "chunk_seq": seq, "body": {"delta": delta}})  # fmt: skip


def final(stream_id: str = "s1", **fields: object) -> Message:
    return Message.from_kwargs({"msg_id": "f", "type": "chat", "from_user_id": "helper", "ts": 2,
                                "stream_id": stream_id, "body": "the answer", **fields})  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_a_stream_yields_its_chunks_in_order_then_the_final_message_and_drops_repeats():
    started: list[AgentStream] = []
    table = StreamTable(started.append)
    stream = table.get("s1")
    assert table.arrived(chunk(1, "a")) is stream and started == [stream]
    assert table.arrived(chunk(1, "a")) is None, "a repeat"
    table.arrived(chunk(2, {"not": "text"}))
    table.arrived(chunk(3, "c"))
    assert stream.text == "ac" and not stream.ended and stream.agent_id == "helper"
    table.arrived(final())
    assert table.arrived(chunk(4, "late")) is None and table.arrived(final()) is None
    assert [m.msg_id async for m in stream] == ["c1", "c2", "c3", "f"]
    assert (await stream.done()).body == "the answer" and stream.error is None and started == [stream]


@pytest_twisted.ensureDeferred
async def test_a_stream_iterated_before_its_first_chunk_waits_for_it_and_an_error_is_readable():
    table = StreamTable(lambda stream: None)
    stream = table.get("s9")
    seen: list[str] = []

    async def read() -> None:
        async for message in stream:
            seen.append(message.type)

    reading = Deferred.fromCoroutine(read())
    assert seen == [] and not reading.called
    table.arrived(chunk(1, "x", "s9"))
    table.arrived(final("s9", type="system", body={"error": {"code": 504, "message": "no first chunk"}}))
    await reading
    assert seen == ["agent_chunk", "system"] and stream.error == {"code": 504, "message": "no first chunk"}


def test_the_table_keeps_the_most_recent_streams():
    table = StreamTable(lambda stream: None, limit=2)
    first = table.get("a")
    table.get("b")
    table.get("c")
    assert table.get("a") is not first, "the oldest went"
