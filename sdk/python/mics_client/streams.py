"""AI agents' answers as they stream (protocol.md section 12), on the client side.

An agent's answer is a stream: live `agent_chunk` Messages (`chunk_seq` 1, 2, ...; `body = {"delta":
...}`), then one final message with the same `stream_id` (`chat` / `group_chat`, or `system` with
`body.error` when the call failed). The final message is held like any message, so a device that
missed the chunks still gets it by sync. `AgentStream` gathers one stream; `StreamTable` keeps the
recent ones, so a stream asked for after its first chunks arrived (an Ack is awaited, then the
stream) still yields them from the start.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import txaio

from mics_client.types import Message

MAX_STREAMS = 100  # streams kept per client (the most recent)
MAX_CHUNKS = 10_000  # chunks kept per stream (the node sends at most this many)


class AgentStream:
    """One agent answer: `chunks` so far, `text` (the string deltas joined), `final` once it ended.

    `async for message in stream` yields each chunk, then the final message, then stops (from the
    start, whenever it is iterated); `await stream.done()` waits for the final message.
    """

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        self.agent_id: str | None = None
        self.chunks: list[Message] = []
        self.final: Message | None = None
        self._waiters: list[Any] = []

    @property
    def ended(self) -> bool:
        return self.final is not None

    @property
    def text(self) -> str:
        """The string deltas so far, joined (what a chat UI shows while the answer grows)."""
        return "".join(d for d in (c.delta for c in self.chunks) if isinstance(d, str))

    @property
    def error(self) -> dict[str, Any] | None:
        """`{"code", "message"}` when the stream ended without an answer (504 timeout, 503 error)."""
        return self.final.agent_error if self.final is not None else None

    def add(self, message: Message) -> bool:
        """Take a chunk (in chunk_seq order; repeats and chunks after the end are dropped) or the final
        message; True when it was new."""
        if self.final is not None:
            return False
        self.agent_id = self.agent_id or message.from_user_id
        if message.type == "agent_chunk":
            last = (self.chunks[-1].chunk_seq or 0) if self.chunks else 0
            if (message.chunk_seq or 0) <= last or len(self.chunks) >= MAX_CHUNKS:
                return False
            self.chunks.append(message)
        else:
            self.final = message
        waiters, self._waiters = self._waiters, []
        for waiter in waiters:
            txaio.resolve(waiter, None)
        return True

    async def done(self) -> Message:
        """The final message, once it came."""
        while self.final is None:
            await self._changed()
        return self.final

    def _changed(self) -> Any:
        waiter = txaio.create_future()
        self._waiters.append(waiter)
        return waiter

    def __aiter__(self) -> _Iterator:
        return _Iterator(self)


class _Iterator:
    def __init__(self, stream: AgentStream) -> None:
        self._stream = stream
        self._next = 0

    def __aiter__(self) -> _Iterator:
        return self

    async def __anext__(self) -> Message:
        stream = self._stream
        while True:
            if self._next < len(stream.chunks):
                self._next += 1
                return stream.chunks[self._next - 1]
            if stream.final is not None:
                if self._next == len(stream.chunks):
                    self._next += 1
                    return stream.final
                raise StopAsyncIteration
            await stream._changed()


class StreamTable:
    """The client's recent streams by id (bounded: the oldest go first)."""

    def __init__(self, on_new: Callable[[AgentStream], None], limit: int = MAX_STREAMS) -> None:
        self._streams: OrderedDict[str, AgentStream] = OrderedDict()
        self._on_new = on_new
        self._limit = limit

    def get(self, stream_id: str) -> AgentStream:
        """The stream with this id (an empty one until its first message comes)."""
        stream = self._streams.get(stream_id)
        if stream is None:
            stream = self._streams[stream_id] = AgentStream(stream_id)
            if len(self._streams) > self._limit:
                self._streams.popitem(last=False)
        return stream

    def arrived(self, message: Message) -> AgentStream | None:
        """A chunk or a final message (one with a stream_id): into its stream; the stream, if it was new
        to it (`on_new` heard of the stream's first message)."""
        assert message.stream_id is not None
        stream = self.get(message.stream_id)
        first = not stream.chunks and stream.final is None
        if not stream.add(message):
            return None
        if first:
            self._on_new(stream)
        return stream


class AgentFeatures:
    """The client's side of section 12 (a mixin of `ClientCore`, which routes chunks and final messages
    into `_streams` and provides `_call` and the callback table)."""

    _streams: StreamTable
    _callbacks: dict[str, list[Callable[..., Any]]]

    if TYPE_CHECKING:  # provided by ClientCore

        async def _call(self, procedure: str, **kwargs: Any) -> Any: ...

    def stream(self, stream_id: str) -> AgentStream:
        """An agent's answer (`Ack.agents[i].stream_id`): iterate it (`async for`) for each chunk, then
        the final message; it keeps what came before you asked."""
        return self._streams.get(stream_id)

    def on_agent_stream(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """`callback(AgentStream)` when an agent's answer starts here (its first chunk, or its final
        message when no chunk came): answers in groups, or to your other devices' questions."""
        self._callbacks["agent_stream"].append(callback)
        return callback

    def on_agent_chunk(self, callback: Callable[..., Any]) -> Callable[..., Any]:
        """`callback(Message)` for each `agent_chunk` (`message.delta`, `message.stream_id`)."""
        self._callbacks["agent_chunk"].append(callback)
        return callback

    async def agents(self) -> list[dict[str, Any]]:
        """`mics.agent.list`: the tenant's agents (`agent_id`, `name`, `description`?)."""
        result = await self._call("mics.agent.list")
        return list(result.get("agents") or [])
