"""One call of one agent, from the send that triggered it to the final message (protocol.md section 12).

    trigger (after the Ack) -> guard (concurrency, breaker, total timeout) -> context from the engine
    -> the transport's call: each delta checked and delivered live as an `agent_chunk` Message
    (never held, no seq, `chunk_seq` from 1) -> the final `chat`/`group_chat` from the agent, held
    and delivered like a send, or a `system` one with `{"error": {code, message}}` -> AGENT_CALL event.

Chunks go through the engine's live delivery (`Engine.group`: this node's router, plus one broadcast
in a cluster), so a conversation's devices on every node see the stream; nothing waits per chunk.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import CancelledError, Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from txaio import make_logger

from mics import uris
from mics.agents import (
    ERROR,
    ERROR_CODES,
    MAX_CHUNKS,
    OK,
    TIMEOUT,
    UNAVAILABLE,
    Agent,
    AgentError,
    Trigger,
    delta_of,
    final_of,
)
from mics.engine import Conversation
from mics.hooks.guard import HookUnavailable
from mics.logs import RateLimitedLog
from mics.types import AGENT_CHUNK, CHAT, GROUP_CHAT, SYSTEM, Message, Sender, now_ms
from mics.values import body_size

if TYPE_CHECKING:
    from mics.tenants import TenantRuntime

log = make_logger()
_limited = RateLimitedLog(log)

MAX_CONTEXT_BYTES = 1024 * 1024  # the context's bodies, newest first, up to this much (the rest is left out)
_FAILED = (ERROR, "the agent failed")
_GUARD_FAILURES = {
    "timeout": (TIMEOUT, "the agent did not finish within timeout_ms"),
    "breaker_open": (UNAVAILABLE, "the agent is unavailable (too many recent failures)"),
    "queue_full": (UNAVAILABLE, "the agent is busy"),
}


class AgentRun:
    """Streams one agent's answer into the conversation of the send that triggered it."""

    def __init__(self, tenant: TenantRuntime, agent: Agent, trigger: Trigger, stream_id: str,
                 reactor: IReactorTime) -> None:  # fmt: skip
        self._tenant = tenant
        self._agent = agent
        self._trigger = trigger
        self.stream_id = stream_id
        self._reactor = reactor
        self._started = reactor.seconds()
        self._limit = tenant.config.max_payload_bytes
        self._chunks = 0
        self._error: AgentError | None = None
        self._call: Deferred[Any] | None = None
        self._first_chunk_timer: IDelayedCall | None = None
        self._done = False
        self._unsent: deque[dict[str, Any]] = deque()  # chunks waiting for the one before to reach every node
        self._flushing = False
        self._flushed: Deferred[None] | None = None  # fires once the chunks sent so far reached every node
        self.finished: Deferred[str] = Deferred()  # fires with the outcome once the final message is out
        sender = trigger.sender
        group_id = trigger.group_id
        if group_id is not None:
            self._topic, self._to = uris.group_topic(group_id), trigger.members
            self._where: dict[str, Any] = {"group_id": group_id}
        else:
            self._topic, self._to = uris.inbox_topic(sender.user_id), (sender.user_id,)
            self._where = {"to_user_id": sender.user_id}

    @property
    def agent_id(self) -> str:
        return self._agent.config.agent_id

    def start(self, done: Callable[[AgentRun], None]) -> None:
        d = Deferred.fromCoroutine(self._run())
        d.addErrback(lambda f: log.failure("agent run failed: tenant_id={tenant_id} agent_id={agent_id}", f,
                                           tenant_id=self._tenant.tenant_id, agent_id=self.agent_id))  # fmt: skip
        d.addBoth(lambda _: done(self))

    def cancel(self) -> None:
        """The tenant goes (node shutdown, tenant removed): end the call, answer unavailable."""
        self._abort(AgentError(UNAVAILABLE, "the node is shutting down"))

    # -- the call ---------------------------------------------------------------------------------------
    async def _run(self) -> None:
        agent = self._agent
        outcome, text = OK, ""
        try:
            body, content_type, size = await agent.guard.run(self._attempt)
        except HookUnavailable as e:
            error = self._error if e.cause == "failure" else None
            outcome, text = (error.outcome, error.message) if error else _GUARD_FAILURES.get(e.cause, _FAILED)
        except Exception:
            log.failure("agent call failed: tenant_id={tenant_id} agent_id={agent_id}",
                        tenant_id=self._tenant.tenant_id, agent_id=self.agent_id)  # fmt: skip
            outcome, text = _FAILED
        finally:
            self._done = True
            self._stop_first_chunk_timer()
        if outcome != OK:
            body, content_type = {"error": {"code": ERROR_CODES[outcome], "message": text}}, None
            size = body_size(body)
            self._warn(outcome, "agent call failed: tenant_id={tenant_id} agent_id={agent_id} outcome={outcome} "
                       "why={why}", outcome=outcome, why=text)  # fmt: skip
        try:
            await self._post(outcome, body, content_type, size)
        finally:
            duration_s = self._reactor.seconds() - self._started
            agent.duration.observe(duration_s)
            agent.chunks.inc(self._chunks)
            self._tenant.agents.emit(agent, self._trigger, self.stream_id, outcome, int(duration_s * 1000),
                                     self._chunks)  # fmt: skip
            self.finished.callback(outcome)

    async def _attempt(self) -> tuple[Any, str | None, int]:
        """Inside the agent's guard: one call; its final answer checked. Any AgentError counts against
        the breaker; a first-chunk timeout or a bad chunk cancels the call."""
        agent = self._agent
        request = await self._request()
        budget_s = agent.config.timeout_ms / 1000
        self._call = call = Deferred.fromCoroutine(agent.transport.call(request, self._on_progress, budget_s))
        if self._error is not None:  # cancelled while the context was read
            call.cancel()
        self._first_chunk_timer = self._reactor.callLater(
            agent.config.first_chunk_timeout_ms / 1000, self._abort,
            AgentError(TIMEOUT, f"no first chunk within {agent.config.first_chunk_timeout_ms} ms"),
        )  # fmt: skip
        try:
            final = await call
        except CancelledError:
            if self._error is not None:
                raise self._error from None
            raise  # the guard's total timeout
        except AgentError as e:
            self._error = self._error or e
            raise self._error from None
        finally:
            self._stop_first_chunk_timer()
        if self._error is not None:  # a bad chunk came just before the final answer
            raise self._error
        try:
            return final_of(final, self._limit)
        except AgentError as e:
            self._error = e
            raise

    async def _request(self) -> dict[str, Any]:
        """What the agent gets: the trigger Message and up to context_messages held messages of that
        conversation in the sender's inbox (oldest first, the trigger left out)."""
        trigger = self._trigger
        message = trigger.message
        config = self._agent.config
        context: list[dict[str, Any]] = []
        if config.context_messages:
            user_id = trigger.sender.user_id
            if trigger.group_id is not None:
                conversation = Conversation(user_id, group_id=trigger.group_id, skip=message["msg_id"])
            else:
                conversation = Conversation(user_id, peer=config.agent_id, skip=message["msg_id"])
            engine = self._tenant.engine
            try:
                context = _within(await engine.recent(conversation, config.context_messages), MAX_CONTEXT_BYTES)
            except engine.transient_errors as e:  # the answer still comes, without its context
                self._warn("context", "agent context unreachable: tenant_id={tenant_id} agent_id={agent_id} "
                           "error={error}", error=str(e))  # fmt: skip
        return {"agent_id": config.agent_id, "tenant_id": self._tenant.tenant_id, "stream_id": self.stream_id,
                "message": message, "context": context}  # fmt: skip

    def _on_progress(self, obj: Any) -> None:
        """One streamed object: checked, then delivered live to the conversation as the next chunk."""
        if self._done or self._error is not None:
            return
        try:
            delta = delta_of(obj, self._limit)
        except AgentError as e:
            self._abort(e)
            return
        if self._chunks >= MAX_CHUNKS:
            self._abort(AgentError(ERROR, f"the agent streamed more than {MAX_CHUNKS} chunks"))
            return
        if not self._chunks:
            self._stop_first_chunk_timer()
            self._agent.first_chunk.observe(self._reactor.seconds() - self._started)
        self._chunks += 1
        tenant = self._tenant
        ts = now_ms()
        chunk = Message(
            msg_id=tenant.ids.make(ts), type=AGENT_CHUNK, tenant_id=tenant.tenant_id, from_user_id=self.agent_id,
            from_device_id=None, body={"delta": delta}, ts=ts, trace_id=self._trigger.message["trace_id"],
            stream_id=self.stream_id, chunk_seq=self._chunks, **self._where,
        ).to_kwargs()  # fmt: skip
        self._send(chunk)

    def _send(self, chunk: dict[str, Any]) -> None:
        """Chunks go out one after another: each once the one before reached every node (in a cluster
        the pool's publishes could overtake each other; on one node each goes at once)."""
        self._unsent.append(chunk)
        if not self._flushing:
            self._flushing = True
            self._flushed = Deferred.fromCoroutine(self._flush())

    async def _flush(self) -> None:
        engine, unsent = self._tenant.engine, self._unsent
        try:
            while unsent:
                try:
                    await engine.stream(self._topic, self._to, unsent.popleft())
                except Exception as e:
                    self._chunk_lost(str(e))
        finally:
            self._flushing = False

    def _chunk_lost(self, error: str) -> None:
        self._warn("chunk", "agent chunk not delivered: tenant_id={tenant_id} agent_id={agent_id} error={error}",
                   error=error)  # fmt: skip

    def _warn(self, what: str, text: str, **fields: Any) -> None:
        """One line a minute per (tenant, agent, what): a broken agent must not flood the log."""
        tenant_id = self._tenant.tenant_id
        _limited.warn((tenant_id, self.agent_id, what), text, tenant_id=tenant_id, agent_id=self.agent_id, **fields)

    def _abort(self, error: AgentError) -> None:
        """End the call with `error` (the first reason wins)."""
        if self._done or self._error is not None:
            return
        self._error = error
        call = self._call
        if call is not None and not call.called:
            call.cancel()

    def _stop_first_chunk_timer(self) -> None:
        timer, self._first_chunk_timer = self._first_chunk_timer, None
        if timer is not None and timer.active():
            timer.cancel()

    # -- the final message -------------------------------------------------------------------------------
    async def _post(self, outcome: str, body: Any, content_type: str | None, size: int) -> None:
        """The agent's final message: its answer (`chat`/`group_chat`) or why there is none (`system`),
        with the stream's id, replying to the trigger; held and delivered like a send."""
        tenant = self._tenant
        if self._flushed is not None:  # after the last chunk, on every node
            await self._flushed
        group = self._trigger.group_id is not None
        kind = (GROUP_CHAT if group else CHAT) if outcome == OK else SYSTEM
        ts = now_ms()
        message = Message(
            msg_id=tenant.ids.make(ts), type=kind, tenant_id=tenant.tenant_id, from_user_id=self.agent_id,
            from_device_id=None, body=body, ts=ts, trace_id=self._trigger.message["trace_id"],
            content_type=content_type, reply_to=self._trigger.message["msg_id"], stream_id=self.stream_id,
            **self._where,
        )  # fmt: skip
        try:
            await tenant.service.post(Sender(self.agent_id, None, 0, True), message, size, self._trigger.members)
        except Exception as e:  # the shared store is unreachable: the stream ends without its final message
            self._warn("final", "agent's final message not delivered: tenant_id={tenant_id} agent_id={agent_id} "
                       "error={error}", error=str(e))  # fmt: skip


def _within(messages: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    """The newest of `messages` (oldest first) whose bodies fit in `budget` bytes together."""
    kept = 0
    for index in range(len(messages) - 1, -1, -1):
        kept += body_size(messages[index]["body"]) if messages[index].get("body") is not None else 0
        if kept > budget:
            return messages[index + 1 :]
    return messages
