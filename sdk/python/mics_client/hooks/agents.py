"""Writing an AI agent for MICS (protocol.md section 12) in a few lines.

Mark a method of your `Hooks` (or `TenantBackend`) subclass with `@agent("<agent_id>")`. It gets an
`AgentRequest` and yields the answer piece by piece; each piece reaches the conversation at once as
an `agent_chunk`. The final message is the pieces joined (when they are strings), or what you yield
last as `Reply(body, content_type)`. A plain (async) function that returns a value answers in one go.

    class Bots(Hooks):
        @agent("echo")
        async def echo(self, request: AgentRequest):
            for word in request.text.split():
                yield word + " "

Served over WAMP by `TenantBackend` (`mics.agent.<agent_id>`, progressive call results) and over
HTTP by `HookServer` (`POST /agents/<agent_id>`, an NDJSON stream): the same function either way.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mics_client.hooks.codec import dumps

_MARK = "__mics_agent__"
NDJSON = "application/x-ndjson"
AGENT_PREFIX = "mics.agent."


def agent(agent_id: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Mark a method as the agent `agent_id` (declared in the tenant's config with that id)."""

    def mark(fn: Callable[..., Any]) -> Callable[..., Any]:
        setattr(fn, _MARK, agent_id)
        return fn

    return mark


def agents_of(obj: Any) -> dict[str, Callable[..., Any]]:
    """The `@agent` methods of `obj`, bound, by agent id."""
    found: dict[str, Callable[..., Any]] = {}
    for name in dir(type(obj)):
        agent_id = getattr(getattr(type(obj), name, None), _MARK, None)
        if isinstance(agent_id, str):
            found[agent_id] = getattr(obj, name)
    return found


@dataclass(frozen=True, slots=True)
class AgentRequest:
    """What the node sends an agent: the message that called it and the conversation before it."""

    agent_id: str
    tenant_id: str
    stream_id: str
    message: dict[str, Any]
    #: up to the agent's `context_messages` held messages of that conversation, oldest first
    context: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def from_fields(cls, fields: dict[str, Any]) -> AgentRequest:
        context = fields.get("context")
        return cls(
            str(fields.get("agent_id") or ""), str(fields.get("tenant_id") or ""), str(fields.get("stream_id") or ""),
            dict(fields.get("message") or {}), list(context) if isinstance(context, list) else [],
        )  # fmt: skip

    @property
    def text(self) -> str:
        """The message's text: a string body, or a dict body's `text`."""
        return text_of(self.message.get("body"))

    @property
    def sender(self) -> str | None:
        return self.message.get("from_user_id")


def text_of(body: Any) -> str:
    if isinstance(body, str):
        return body
    if isinstance(body, dict) and isinstance(body.get("text"), str):
        return str(body["text"])
    return ""


@dataclass(frozen=True, slots=True)
class Reply:
    """The final answer, when it is not simply the pieces joined: yield it last (or return it)."""

    body: Any
    content_type: str | None = None


async def run_agent(fn: Callable[..., Any], request: AgentRequest, emit: Callable[[Any], Any]) -> dict[str, Any]:
    """Run an agent function: `emit(delta)` for each piece it yields; returns the final answer
    `{"body", "content_type"?}`."""
    result = fn(request)
    final: Reply | None = None
    pieces: list[Any] = []

    async def take(item: Any) -> None:
        nonlocal final
        if isinstance(item, Reply):
            final = item
            return
        if item is None:
            return
        pieces.append(item)
        sent = emit(item)
        if inspect.isawaitable(sent):
            await sent

    if inspect.isasyncgen(result):
        async for item in result:
            await take(item)
    elif inspect.isgenerator(result):
        for item in result:
            await take(item)
    else:
        value = (await result) if inspect.isawaitable(result) else result
        final = value if isinstance(value, Reply) else Reply(value)
    if final is None:
        joined = all(isinstance(p, str) for p in pieces)
        final = Reply("".join(pieces) if joined else pieces)
    answer: dict[str, Any] = {"body": final.body}
    if final.content_type:
        answer["content_type"] = final.content_type
    return answer


def wamp_endpoint(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The procedure to register as `mics.agent.<agent_id>` (with `RegisterOptions(details_arg="details")`):
    each piece as a progressive result `{"delta"}`, the final answer as the result."""

    async def serve(details: Any = None, **fields: Any) -> dict[str, Any]:
        progress = getattr(details, "progress", None)

        def emit(delta: Any) -> None:
            if progress is not None:  # a caller that asked for no progress gets the answer only
                progress(delta=delta)

        return await run_agent(fn, AgentRequest.from_fields(fields), emit)

    return serve


async def register_agents(session: Any, obj: Any) -> list[str]:
    """Register the `@agent` methods of `obj` on a backend session; returns their agent ids."""
    from autobahn.wamp.types import RegisterOptions

    options = RegisterOptions(details_arg="details")
    agents = agents_of(obj)
    for agent_id, fn in agents.items():
        await session.register(wamp_endpoint(fn), AGENT_PREFIX + agent_id, options=options)
    return list(agents)


def ndjson_line(obj: Any) -> bytes:
    """One line of an HTTP agent's answer (bytes as base64, like the hook bodies)."""
    return dumps(obj) + b"\n"


def parse_request(body: bytes) -> AgentRequest:
    fields = json.loads(body)
    if not isinstance(fields, dict):
        raise ValueError("an agent request is a JSON object")
    return AgentRequest.from_fields(fields)


__all__ = [
    "AGENT_PREFIX", "NDJSON", "AgentRequest", "Reply", "agent", "agents_of", "ndjson_line", "parse_request",
    "register_agents", "run_agent", "wamp_endpoint",
]  # fmt: skip
