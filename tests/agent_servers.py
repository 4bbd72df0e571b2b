"""AI agents for tests, over both transports (protocol.md section 12), with switchable behaviour.

`AgentLogic` is what the agent says: `answer(request)` yields the objects it streams, the last one
being the final answer. Knobs make it slow, silent, failing or hostile. `wamp_agent` serves it as
`mics.agent.<agent_id>` from a real backend session (progressive call results); `HttpAgentServer`
from a real Twisted HTTP server answering NDJSON, verifying every request's signature.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallResult, RegisterOptions
from twisted.internet import reactor
from twisted.internet.defer import CancelledError, ensureDeferred, maybeDeferred
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

from hook_servers import TrackingSite
from mics.hooks.signing import SignatureError, SignatureVerifier
from wamp_clients import TestSession, backend, sleep

RAW = "raw"  # (RAW, x): streamed as it is: over WAMP as positional arguments, over HTTP as the line x (JSON of x)


@dataclass
class AgentLogic:
    """Echoes the message's text word by word, then answers `{"text": "<text> (<n> words)"}`."""

    delay: float = 0.0  # between chunks
    first_delay: float = 0.0  # before the first chunk
    fail: bool = False  # WAMP: an error; HTTP: status 500
    silent: bool = False  # never answers anything
    forever: bool = False  # streams a chunk every `delay` until cancelled
    script: list[Any] | None = None  # stream exactly these objects (hostile tests), then stop
    requests: list[dict[str, Any]] = field(default_factory=list)
    cancelled: int = 0

    async def answer(self, request: dict[str, Any]) -> AsyncIterator[Any]:
        self.requests.append(request)
        if self.first_delay or self.silent:
            await sleep(3600 if self.silent else self.first_delay)
        if self.script is not None:
            for item in self.script:
                yield item
            return
        if self.forever:
            while True:
                yield {"delta": "."}
                await sleep(self.delay or 0.05)
        body = request["message"]["body"]
        text = body.get("text", "") if isinstance(body, dict) else str(body)
        words = text.split()
        for n, word in enumerate(words):
            yield {"delta": word if n == 0 else " " + word}
            if self.delay:
                await sleep(self.delay)
        yield {"body": {"text": f"{text} ({len(words)} words)"}, "content_type": "application/json"}


async def wamp_agent(url: str, tenant_id: str, secret: str, agents: dict[str, AgentLogic],
                     serializer: str = "json") -> TestSession:  # fmt: skip
    """A backend session serving each agent as `mics.agent.<agent_id>` with progressive results."""
    session = await backend(url, tenant_id, secret, authid="backend-agents", serializer=serializer)
    options = RegisterOptions(details_arg="details")
    for agent_id, logic in agents.items():
        await session.register(_endpoint(logic), f"mics.agent.{agent_id}", options=options)
    return session


def _endpoint(logic: AgentLogic) -> Any:
    async def serve(details: Any = None, **request: Any) -> Any:
        if logic.fail:
            raise ApplicationError("tenant.error.agent_broken", "the model is down")
        last = None
        try:
            async for item in logic.answer(request):
                if last is not None:
                    _progress(details, last)
                last = item
        except CancelledError:
            logic.cancelled += 1
            raise
        # as keyword arguments (the SDK's TenantBackend answers with one positional dict: both are read)
        return CallResult(**last) if isinstance(last, dict) else last

    return serve


def _progress(details: Any, item: Any) -> None:
    if isinstance(item, tuple) and item[0] == RAW:
        details.progress(*item[1:])
    else:
        details.progress(**item)


class _AgentResource(Resource):
    isLeaf = True

    def __init__(self, server: HttpAgentServer) -> None:
        super().__init__()
        self.server = server

    def render_POST(self, request: Any) -> Any:
        d = ensureDeferred(self._handle(request))
        request.notifyFinish().addErrback(lambda _f: d.cancel())  # the node dropped the connection
        return NOT_DONE_YET

    async def _handle(self, request: Any) -> None:
        server = self.server
        body = request.content.read()
        headers = {k.decode(): v[0].decode() for k, v in request.requestHeaders.getAllRawHeaders()}
        server.requests.append((request.path.decode(), headers))
        logic = server.agents.get(request.path.decode().rsplit("/", 1)[-1])
        try:
            server.verifier.verify(headers, body)
        except SignatureError as e:
            server.signature_errors.append(str(e))
            logic = None
        if logic is None or logic.fail:
            request.setResponseCode(404 if logic is None else 500)
            request.finish()
            return
        request.setHeader(b"content-type", b"application/x-ndjson")
        try:
            async for item in logic.answer(json.loads(body)):
                raw = item[1] if isinstance(item, tuple) and item[0] == RAW else item
                line = raw if isinstance(raw, bytes) else json.dumps(raw).encode()
                request.write(line + b"\n")
        except CancelledError:
            logic.cancelled += 1
            return
        if not request.finished and not getattr(request, "_disconnected", False):
            request.finish()


class HttpAgentServer:
    """Serves POST /agents/<agent_id> on 127.0.0.1 (a free port) for each agent in `agents`."""

    def __init__(self, secret: str, agents: dict[str, AgentLogic]) -> None:
        self.agents = agents
        self.verifier = SignatureVerifier(secret)
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.signature_errors: list[str] = []
        self._site = TrackingSite(_AgentResource(self))
        self._port = reactor.listenTCP(0, self._site, interface="127.0.0.1")

    def url(self, agent_id: str) -> str:
        return f"http://127.0.0.1:{self._port.getHost().port}/agents/{agent_id}"

    async def stop(self) -> None:
        """Stop listening and drop open connections: the agent is really gone (twice is fine)."""
        await maybeDeferred(self._port.stopListening)
        for transport in list(self._site.live):
            transport.abortConnection()


def agent_config(agent_id: str, transport: str, server: HttpAgentServer | None = None, **extra: Any) -> dict[str, Any]:
    """One entry of a tenant's `agents`; an HTTP agent's url points at `server`."""
    config: dict[str, Any] = {"agent_id": agent_id, "name": agent_id.title(), "transport": transport, **extra}
    if transport == "http":
        assert server is not None
        config["url"] = server.url(agent_id)
    return config


async def stream(session: TestSession, topic: str, stream_id: str,
                 timeout: float = 10.0) -> tuple[list[dict[str, Any]], dict[str, Any]]:  # fmt: skip
    """The chunks of one stream as they arrive on `topic` (other events are passed over), and its final
    message."""
    chunks: list[dict[str, Any]] = []
    while True:
        event = await session.next_event(topic, timeout)
        if event.get("stream_id") != stream_id:
            continue
        if event["type"] != "agent_chunk":
            return chunks, event
        chunks.append(event)
