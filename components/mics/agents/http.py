"""Agents served over HTTP: a signed POST (the hook headers of section 5) answered with NDJSON.

The request body is the call's input as JSON (`agent_id`, `tenant_id`, `stream_id`, `message`,
`context`; bytes as base64). The answer is `200` with one JSON object per line, read as it arrives:
`{"delta": ...}` lines, then the last one with `body`. A line `{"error": ...}` ends the call as an
error (the status was sent already). Lines are bounded; a connection refused or broken is
`unavailable`, any other status, a malformed line or a stream that ends without a `body` is `error`.
Cancelling the call drops the connection.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import treq
from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import HTTPConnectionPool, PotentialDataLoss, ResponseDone

from mics.agents import ERROR, UNAVAILABLE, AgentError, AgentTransport
from mics.hooks.codec import JSON, dumps
from mics.hooks.signing import sign_headers

NDJSON = "application/x-ndjson"
MAX_LINE_BYTES = 4 * 1024 * 1024  # one line: a delta or the final answer (within max_payload_bytes, escaped)


class HttpAgent(AgentTransport):
    """POSTs each call to the agent's `url`, signed with the tenant secret, over a persistent pool."""

    def __init__(self, tenant_id: str, secret: str, url: str, reactor: IReactorTime) -> None:
        self.tenant_id = tenant_id
        self._secret = secret
        self._url = url
        self._reactor = reactor
        self._pool = HTTPConnectionPool(reactor, persistent=True)
        self._pool.maxPersistentPerHost = 64
        self._pool.cachedConnectionTimeout = 120

    async def call(self, request: dict[str, Any], on_progress: Callable[[Any], None], timeout_s: float) -> Any:
        body = dumps(request)
        headers = sign_headers(self.tenant_id, self._secret, body)
        headers["Content-Type"] = JSON
        headers["Accept"] = NDJSON
        try:
            response = await treq.post(self._url, data=body, headers=headers, pool=self._pool, reactor=self._reactor,
                                       unbuffered=True)  # fmt: skip
        except CancelledError:
            raise
        except Exception as e:  # refused, reset, DNS...: nobody serves the agent there
            raise AgentError(UNAVAILABLE, f"the agent's endpoint is unreachable ({type(e).__name__})") from None
        if response.code != 200:
            response.deliverBody(_Discard())
            raise AgentError(ERROR, f"the agent answered HTTP {response.code}")
        reader = _NdjsonReader(on_progress)
        response.deliverBody(reader)
        return await reader.done

    def close(self) -> None:
        self._pool.closeCachedConnections()


class _NdjsonReader(Protocol):
    """Reads an NDJSON body line by line: each object but the final one goes to `on_progress`; `done`
    fires with the final object (the one with `body`). Cancelling `done` drops the connection."""

    def __init__(self, on_progress: Callable[[Any], None]) -> None:
        self._on_progress = on_progress
        self._buffer = b""
        self._final: Any = None
        self.done: Deferred[Any] = Deferred(self._cancel)

    def dataReceived(self, data: bytes) -> None:
        if self.done.called:
            return
        self._buffer += data
        try:
            if b"\n" in data:
                *lines, self._buffer = self._buffer.split(b"\n")
                for line in lines:
                    if self.done.called:  # the call ended (a bad chunk): the rest is not read
                        return
                    self._line(line)
            if len(self._buffer) > MAX_LINE_BYTES:
                raise AgentError(ERROR, f"the agent streamed a line over {MAX_LINE_BYTES} bytes")
        except AgentError as e:
            self._stop(e)

    def _line(self, line: bytes) -> None:
        if not line.strip():
            return
        if len(line) > MAX_LINE_BYTES:
            raise AgentError(ERROR, f"the agent streamed a line over {MAX_LINE_BYTES} bytes")
        if self._final is not None:
            raise AgentError(ERROR, "the agent streamed more after its final answer")
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            raise AgentError(ERROR, "the agent streamed a line that is not JSON") from None
        if isinstance(obj, dict) and "error" in obj:
            raise AgentError(ERROR, "the agent reported an error")
        if isinstance(obj, dict) and "body" in obj:
            self._final = obj
        else:
            self._on_progress(obj)

    def connectionLost(self, reason: Failure = Failure(ResponseDone())) -> None:  # noqa: B008 - Twisted's idiom
        if self.done.called:
            return
        if not reason.check(ResponseDone, PotentialDataLoss):
            self.done.errback(AgentError(ERROR, "the agent's stream broke off"))
            return
        try:
            self._line(self._buffer)  # a last line without its newline
        except AgentError as e:
            self.done.errback(e)
            return
        if self._final is None:
            self.done.errback(AgentError(ERROR, "the agent's stream ended without a final body"))
        else:
            self.done.callback(self._final)

    def _stop(self, error: AgentError) -> None:
        if self.transport is not None:
            self.transport.stopProducing()
        if not self.done.called:
            self.done.errback(error)

    def _cancel(self, _d: Deferred[Any]) -> None:
        if self.transport is not None:
            self.transport.stopProducing()


class _Discard(Protocol):
    """Reads and drops an error answer's body (so the connection may go back to the pool)."""

    def dataReceived(self, data: bytes) -> None:
        if len(data) > MAX_LINE_BYTES and self.transport is not None:
            self.transport.stopProducing()
