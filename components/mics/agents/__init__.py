"""AI agents in conversations (protocol.md section 12): triggers, limits, transports.

A tenant declares agents in its config. A user's send can trigger some (a 1:1 send to an agent, a
group send that mentions one or whose text holds one of its keywords); the send is delivered as
usual and its Ack lists what was started. Each call runs after the Ack (`run.AgentRun`): it streams
the agent's deltas to the conversation as live `agent_chunk` Messages and ends with one held final
message, or a `system` one saying why not.

- `Agents` (one per tenant, `TenantRuntime.agents`): which agents a send triggers, their per-agent
  rate (`max_qps`), `mics.agent.list`. The send service asks it after holding the message.
- `AgentTransport`: one call, two transports: `wamp.WampAgent` (the tenant backend's
  `mics.agent.<agent_id>`, progressive results) and `http.HttpAgent` (a signed POST answered with
  NDJSON). Both run under the hook policy (`hooks.policy.Guard`: concurrency, breaker, total timeout).
- What an agent streams is checked here (`delta_of`, `final_of`): the section-4 value rules and the
  tenant's `max_payload_bytes` hold for every chunk and the final body.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twisted.internet.interfaces import IReactorTime

from mics import events, metrics
from mics.config import AgentConfig, TenantConfig
from mics.hooks import HookFailure
from mics.hooks.guard import Guard
from mics.limits import TokenBucket
from mics.types import Sender, now_ms
from mics.values import InvalidValue, body_size, is_text
from mics_client.hooks.agents import text_of  # keywords are looked for where the SDK's agents read the text

if TYPE_CHECKING:
    from mics.tenants import TenantRuntime

# outcomes of a call (AGENT_CALL events, mics_agent_calls_total) and the final message's error codes
OK, TIMEOUT, ERROR, RATE_LIMITED, UNAVAILABLE = "ok", "timeout", "error", "rate_limited", "unavailable"
ERROR_CODES = {TIMEOUT: 504, ERROR: 503, UNAVAILABLE: 503}
# Ack statuses
STARTED = "started"

MAX_CHUNKS = 10_000  # chunks per answer: past this the agent is streaming garbage (an error)
MAX_CONTENT_TYPE = 128


class AgentError(HookFailure):
    """A call that gave no usable answer; `outcome` is timeout, error or unavailable. A HookFailure, so
    the agent's breaker counts it."""

    def __init__(self, outcome: str, message: str) -> None:
        super().__init__(message)
        self.outcome = outcome
        self.message = message


class AgentTransport(ABC):
    """One call of one agent over one transport."""

    @abstractmethod
    async def call(self, request: dict[str, Any], on_progress: Callable[[Any], None], timeout_s: float) -> Any:
        """Send `request`; `on_progress(obj)` for each streamed object before the last one; return the
        last one (unchecked: `final_of` reads it). Raise AgentError when nobody serves the agent
        (unavailable) or it failed (error). Cancelling the call must stop it. `timeout_s` is the whole
        answer's budget: the guard enforces it; a transport passes it on where a hop needs one."""

    def close(self) -> None:  # noqa: B027 - optional
        """Release pooled connections."""


def delta_of(obj: Any, limit: int) -> Any:
    """The delta of one streamed object `{"delta": ...}`; AgentError when it is anything else, breaks a
    section-4 rule, or is over `limit` bytes."""
    if not isinstance(obj, dict) or "delta" not in obj or obj["delta"] is None:
        raise AgentError(ERROR, "the agent streamed something other than {delta}")
    delta = obj["delta"]
    _check_value(delta, limit, "a delta")
    return delta


def final_of(obj: Any, limit: int) -> tuple[Any, str | None, int]:
    """The final `{"body", "content_type"?}`: body, content type and the body's size."""
    if not isinstance(obj, dict) or obj.get("body") is None:
        raise AgentError(ERROR, "the agent's answer has no body")
    content_type = obj.get("content_type")
    if content_type is not None and not (
        isinstance(content_type, str) and 0 < len(content_type) <= MAX_CONTENT_TYPE and is_text(content_type)
    ):
        raise AgentError(ERROR, "the agent's content_type is not a short string")
    return obj["body"], content_type, _check_value(obj["body"], limit, "the answer")


def _check_value(value: Any, limit: int, what: str) -> int:
    try:
        size = body_size(value, limit)  # one over the limit is measured, not walked
    except InvalidValue as e:
        raise AgentError(ERROR, f"{what} breaks the value rules: {e}") from None
    if size > limit:
        raise AgentError(ERROR, f"{what} is {size} bytes, over max_payload_bytes ({limit})")
    return size


@dataclass(frozen=True, slots=True)
class Trigger:
    """A send that called an agent: who sent what, where; `members` for a group conversation."""

    sender: Sender
    message: dict[str, Any]
    members: tuple[str, ...] = ()

    @property
    def group_id(self) -> str | None:
        return self.message.get("group_id")  # type: ignore[no-any-return]


class Agent:
    """One declared agent on this node: its config, transport, guard (breaker, concurrency, total
    timeout) and rate bucket, and its metric children."""

    def __init__(self, tenant_id: str, config: AgentConfig, tenant_config: TenantConfig,
                 transport: AgentTransport, reactor: IReactorTime) -> None:  # fmt: skip
        self.config = config
        self.transport = transport
        self._clock = reactor.seconds
        self.guard = Guard(tenant_id, f"agent:{config.agent_id}", tenant_config, config.timeout_ms, None, reactor)
        self.bucket = TokenBucket(config.max_qps, reactor.seconds)
        self.keywords = tuple(k.lower() for k in config.keywords)
        agent_id = config.agent_id
        self.calls = {o: metrics.AGENT_CALLS.labels(tenant_id, agent_id, o) for o in metrics.AGENT_OUTCOMES}
        self.first_chunk = metrics.AGENT_FIRST_CHUNK_SECONDS.labels(tenant_id, agent_id)
        self.duration = metrics.AGENT_SECONDS.labels(tenant_id, agent_id)
        self.chunks = metrics.AGENT_CHUNKS.labels(tenant_id, agent_id)

    def configure(self, config: AgentConfig, tenant_config: TenantConfig) -> None:
        """New limits in place: calls in flight and the breaker's state stay."""
        self.config = config
        self.guard.configure(tenant_config, config.timeout_ms)
        if self.bucket.rate != config.max_qps:
            self.bucket = TokenBucket(config.max_qps, self._clock)
        self.keywords = tuple(k.lower() for k in config.keywords)

    def matches(self, text: str) -> bool:
        lowered = text.lower()
        return any(k in lowered for k in self.keywords)


def _transport_of(config: AgentConfig, tenant_config: TenantConfig) -> tuple[Any, ...]:
    """What an agent's transport is built from: a change here makes a new one (and a new breaker)."""
    return (config.transport, config.url, tenant_config.secret)


class Agents:
    """A tenant's agents on this node: triggers, per-agent rates, and the calls they start."""

    def __init__(self, tenant: TenantRuntime, reactor: IReactorTime) -> None:
        self._tenant = tenant
        self._reactor = reactor
        self._agents: dict[str, Agent] = {}
        self._built: dict[str, tuple[Any, ...]] = {}
        self._keyworded: tuple[Agent, ...] = ()
        self.running: set[Any] = set()  # AgentRuns in flight (tests and the drain look at it)

    @property
    def enabled(self) -> bool:
        return bool(self._agents)

    def serves(self, user_id: str) -> bool:
        """Whether `user_id` is one of the tenant's agents (its inbox holds nothing: nobody reads it)."""
        return user_id in self._agents

    def get(self, agent_id: str) -> Agent | None:
        return self._agents.get(agent_id)

    def configure(self, config: TenantConfig) -> None:
        """The tenant's config changed: agents come and go; a changed transport is rebuilt."""
        old, self._agents = self._agents, {}
        for agent_config in config.agents:
            agent_id = agent_config.agent_id
            agent = old.pop(agent_id, None)
            built = _transport_of(agent_config, config)
            if agent is not None and self._built.get(agent_id) == built:
                agent.configure(agent_config, config)
            else:
                if agent is not None:
                    agent.transport.close()
                agent = Agent(self._tenant.tenant_id, agent_config, config, self._make_transport(agent_config, config),
                              self._reactor)  # fmt: skip
                self._built[agent_id] = built
            self._agents[agent_id] = agent
        for agent_id, agent in old.items():
            agent.transport.close()
            self._built.pop(agent_id, None)
        self._keyworded = tuple(a for a in self._agents.values() if a.keywords)

    def _make_transport(self, agent: AgentConfig, config: TenantConfig) -> AgentTransport:
        if agent.transport == "http":
            from mics.agents.http import HttpAgent

            assert agent.url is not None
            return HttpAgent(self._tenant.tenant_id, config.secret, agent.url, self._reactor)
        from mics.agents.wamp import WampAgent

        return WampAgent(agent.agent_id, self._tenant.port)

    def listing(self) -> list[dict[str, Any]]:
        """`mics.agent.list`: id, name and description of each agent."""
        out = []
        for agent in self._agents.values():
            entry = {"agent_id": agent.config.agent_id, "name": agent.config.name}
            if agent.config.description is not None:
                entry["description"] = agent.config.description
            out.append(entry)
        return out

    # -- triggers ---------------------------------------------------------------------------------------
    def trigger(self, sender: Sender, message: dict[str, Any], members: Sequence[str] = ()) -> list[dict[str, Any]]:
        """The agents a user's delivered send calls, as the Ack's `agents` entries; each started one runs
        after the Ack. A backend's system messages call no agent."""
        if sender.is_system or not self._agents:
            return []
        if "group_id" in message:
            called = self._called_in_group(message)
        else:
            agent = self._agents.get(message["to_user_id"])
            called = [agent] if agent is not None else []
        if not called:
            return []
        trigger = Trigger(sender, message, tuple(members))
        return [self._start(agent, trigger) for agent in called]

    def _called_in_group(self, message: dict[str, Any]) -> list[Agent]:
        called = [self._agents[m] for m in message.get("mentions") or () if m in self._agents]
        text = text_of(message.get("body")) if self._keyworded else None
        if text:
            called.extend(a for a in self._keyworded if a not in called and a.matches(text))
        return called

    def _start(self, agent: Agent, trigger: Trigger) -> dict[str, Any]:
        from mics.agents.run import AgentRun

        agent_id = agent.config.agent_id
        if not agent.bucket.try_take():
            self.emit(agent, trigger, "", RATE_LIMITED, 0, 0)
            return {"agent_id": agent_id, "status": RATE_LIMITED}
        stream_id = self._tenant.ids.make(now_ms())
        run = AgentRun(self._tenant, agent, trigger, stream_id, self._reactor)
        self.running.add(run)
        # after the Ack: the send's RESULT goes out in this reactor turn, the call in the next one
        self._reactor.callLater(0, run.start, self.running.discard)
        status = UNAVAILABLE if agent.guard.breaker.state == "open" else STARTED
        return {"agent_id": agent_id, "status": status, "stream_id": stream_id}

    def emit(self, agent: Agent, trigger: Trigger, stream_id: str, outcome: str, duration_ms: int, chunks: int) -> None:
        """The AGENT_CALL event of one call (or refusal), and its count."""
        agent.calls[outcome].inc()
        message = trigger.message
        agent_id = agent.config.agent_id
        data = {"agent_id": agent_id, "stream_id": stream_id, "outcome": outcome, "duration_ms": duration_ms,
                "chunks": chunks}  # fmt: skip
        self._tenant.emit(
            events.AGENT_CALL, data, msg_id=message["msg_id"], user_id=trigger.sender.user_id,
            device_id=trigger.sender.device_id or "", to_user_id="" if trigger.group_id else agent_id,
            group_id=trigger.group_id or "", trace_id=message["trace_id"],
        )  # fmt: skip

    def close(self) -> None:
        for run in list(self.running):
            run.cancel()
        for agent in self._agents.values():
            agent.transport.close()
