"""Agents with no node (protocol.md section 12): the send service on the memory engine, a recording realm
port, and an agent transport the test drives by hand, with a task.Clock for every timeout. What a real
WAMP or HTTP agent does on a real node is in tests/integration/test_agents.py."""

from __future__ import annotations

import math
from typing import Any

import pytest
import pytest_twisted
from fakes import FakePort, RecordingSink, online, system
from twisted.internet import defer

from mics import uris
from mics.agents import ERROR, UNAVAILABLE, AgentError, AgentTransport, delta_of, final_of, text_of
from mics.requests import GroupSendRequest, NoArgs, SendRequest, SyncRequest
from mics.tenants import TenantRuntime
from mics.types import Sender

DEEP: Any = 1
for _ in range(40):
    DEEP = [DEEP]
HELPER = {"agent_id": "helper", "name": "Helper", "description": "answers", "transport": "wamp"}


class HandTransport(AgentTransport):
    """An agent the test answers: each call waits until the test streams into it and ends it."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.arrived: defer.Deferred[None] = defer.Deferred()

    async def call(self, request: dict[str, Any], on_progress: Any, timeout_s: float) -> Any:
        call = Call(request, on_progress)
        self.calls.append(call)
        arrived, self.arrived = self.arrived, defer.Deferred()
        arrived.callback(None)
        return await call.result


class Call:
    def __init__(self, request: dict[str, Any], on_progress: Any) -> None:
        self.request = request
        self.stream = on_progress
        self.cancelled = False
        self.result: defer.Deferred[Any] = defer.Deferred(self._cancel)

    def _cancel(self, _d: Any) -> None:
        self.cancelled = True

    def answer(self, body: Any = "done", **extra: Any) -> None:
        self.result.callback({"body": body, **extra})


class Runs(set):  # type: ignore[type-arg]
    """The runtime's set of calls in flight, remembering every call ever started (for `finished`)."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting: list[Any] = []

    def add(self, run: Any) -> None:
        super().add(run)
        self.waiting.append(run)


def send(**kwargs: Any) -> SendRequest:
    return SendRequest.parse((), kwargs)


def with_agents(make_runtime: Any, *agents: dict[str, Any], **config: Any) -> tuple[TenantRuntime, FakePort, Any]:
    runtime, port, sink = make_runtime(agents=list(agents) or [HELPER], **config)
    for agent_config in runtime.config.agents:
        runtime.agents.get(agent_config.agent_id).transport = HandTransport()  # type: ignore[union-attr]
    runtime.agents.running = Runs()
    return runtime, port, sink


def hand(runtime: TenantRuntime, agent_id: str = "helper") -> HandTransport:
    return runtime.agents.get(agent_id).transport  # type: ignore[union-attr,return-value]


async def started(runtime: TenantRuntime, clock: Any, agent_id: str = "helper") -> Call:
    """Let the call begin (it runs after the Ack) and return it."""
    transport = hand(runtime, agent_id)
    arrived = transport.arrived
    clock.advance(0)
    await arrived
    return transport.calls[-1]


async def finished(runtime: TenantRuntime) -> list[str]:
    """The outcomes of the calls started since the last look, once they are over."""
    runs: Runs = runtime.agents.running  # type: ignore[assignment]
    waiting, runs.waiting = runs.waiting, []
    return [await run.finished for run in waiting]


def chunks(port: FakePort, topic: str) -> list[dict[str, Any]]:
    return [m for m in port.on(topic) if m["type"] == "agent_chunk"]


def agent_calls(runtime: TenantRuntime, sink: RecordingSink) -> list[dict[str, Any]]:
    runtime.events.drain()
    return [e.data for e in sink.events if e.event_type == "AGENT_CALL"]


# -- triggers and the stream ------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_a_1to1_send_to_an_agent_is_acked_first_then_streams_chunks_and_one_held_final_message(
    make_runtime, clock
):
    runtime, port, sink = with_agents(make_runtime)
    alice = online(runtime, "alice", "phone")
    ack = await runtime.service.send(alice, send(to_user_id="helper", body={"text": "hi there"}, client_msg_id="c"))
    [entry] = ack["agents"]
    assert entry["agent_id"] == "helper" and entry["status"] == "started" and entry["stream_id"]
    assert ack["delivered"] == "online" and hand(runtime).calls == [], "the call runs after the Ack"
    call = await started(runtime, clock)
    assert call.request["message"]["msg_id"] == ack["msg_id"] and call.request["stream_id"] == entry["stream_id"]
    assert (call.request["agent_id"], call.request["tenant_id"]) == ("helper", runtime.tenant_id)
    for delta in ("hel", "lo ", "alice"):
        call.stream({"delta": delta})
    call.answer({"text": "hello alice"}, content_type="text/x-demo")
    assert await finished(runtime) == ["ok"]
    streamed = chunks(port, uris.inbox_topic("alice"))
    assert [(c["chunk_seq"], c["body"]) for c in streamed] == [(1, {"delta": "hel"}), (2, {"delta": "lo "}),
                                                               (3, {"delta": "alice"})]  # fmt: skip
    assert all(c["from_user_id"] == "helper" and c["stream_id"] == entry["stream_id"] and "seq" not in c
               and c["to_user_id"] == "alice" for c in streamed)  # fmt: skip
    final = port.to("alice")[-1]
    assert (final["type"], final["body"], final["reply_to"], final["stream_id"]) == (
        "chat", {"text": "hello alice"}, ack["msg_id"], entry["stream_id"])  # fmt: skip
    assert final["content_type"] == "text/x-demo" and final["from_user_id"] == "helper" and final["seq"] == 2
    held = (await runtime.service.sync(alice, SyncRequest()))["messages"]
    assert [m["msg_id"] for m in held] == [ack["msg_id"], final["msg_id"]], "no chunk is held"
    assert port.to("helper") == [] and (await runtime.engine.sync("helper", 0, None)).messages == []
    [event] = agent_calls(runtime, sink)
    assert event["outcome"] == "ok" and event["chunks"] == 3 and event["stream_id"] == entry["stream_id"]


@pytest_twisted.ensureDeferred
async def test_a_repeated_send_gets_the_first_ack_and_calls_the_agent_once(make_runtime, clock):
    runtime, _port, _ = with_agents(make_runtime)
    alice = online(runtime, "alice")
    first = await runtime.service.send(alice, send(to_user_id="helper", body="q", client_msg_id="k"))
    again = await runtime.service.send(alice, send(to_user_id="helper", body="q", client_msg_id="k"))
    assert first == again
    (await started(runtime, clock)).answer()
    await finished(runtime)
    assert len(hand(runtime).calls) == 1


@pytest_twisted.ensureDeferred
async def test_a_group_mention_or_a_keyword_calls_the_agents_and_streams_to_the_members(make_runtime, clock):
    scribe = {"agent_id": "scribe", "name": "Scribe", "keywords": ["Summary"], "transport": "wamp"}
    runtime, port, sink = with_agents(make_runtime, HELPER, scribe, group_buffering=True)
    port.members["team"] = ["alice", "bob", "carol"]
    alice = online(runtime, "alice")
    online(runtime, "bob")
    request = GroupSendRequest.parse((), {"group_id": "team", "body": {"text": "@helper a SUMMARY please"},
                                          "mentions": ["helper", "bob"]})  # fmt: skip
    ack = await runtime.service.group_send(alice, request)
    assert [(a["agent_id"], a["status"]) for a in ack["agents"]] == [("helper", "started"), ("scribe", "started")]
    clock.advance(0)
    for agent_id in ("helper", "scribe"):
        call = hand(runtime, agent_id).calls[-1]
        call.stream({"delta": agent_id})
        call.answer(f"{agent_id} says hi")
    assert sorted(await finished(runtime)) == ["ok", "ok"]
    group = port.on(uris.group_topic("team"))
    streamed = [m for m in group if m["type"] == "agent_chunk"]
    assert {(m["from_user_id"], m["chunk_seq"], m["group_id"]) for m in streamed} == {
        ("helper", 1, "team"), ("scribe", 1, "team")}  # fmt: skip
    finals = [m for m in group if m["type"] == "group_chat" and m["from_user_id"] != "alice"]
    assert {m["reply_to"] for m in finals} == {ack["msg_id"]} and len({m["stream_id"] for m in finals}) == 2
    delivered = [d for d in port.delivered if d[0] == uris.group_topic("team") and d[3]["type"] == "agent_chunk"]
    assert all(set(d[1]) == {"alice", "bob", "carol"} for d in delivered), "to the members, alice's devices too"
    carol = (await runtime.service.sync(Sender("carol", "d1", 1, False), SyncRequest()))["messages"]
    assert {m["from_user_id"] for m in carol} == {"alice", "helper", "scribe"}, "held like group chat (buffering)"
    assert len(agent_calls(runtime, sink)) == 2


@pytest_twisted.ensureDeferred
async def test_sends_that_name_no_agent_and_system_sends_call_nothing(make_runtime, clock):
    runtime, port, _ = with_agents(make_runtime, {**HELPER, "keywords": ["help"]})
    port.members["team"] = ["alice", "bob"]
    alice = online(runtime, "alice")
    ack = await runtime.service.send(alice, send(to_user_id="bob", body="help me"))  # keywords: groups only
    assert "agents" not in ack
    quiet = await runtime.service.group_send(alice, GroupSendRequest.parse((), {"group_id": "team", "body": "hi"}))
    assert "agents" not in quiet
    listed = await runtime.service.group_send(alice, GroupSendRequest.parse((), {"group_id": "team", "body": ["help"]}))
    assert "agents" not in listed, "keywords are looked for in a string body or a dict's text only"
    by_backend = await runtime.service.send(system("ops"), send(to_user_id="helper", body="help", from_user_id="ops"))
    assert "agents" not in by_backend and by_backend["delivered"] == "offline"
    clock.advance(1)
    assert hand(runtime).calls == [] and not runtime.agents.running


@pytest_twisted.ensureDeferred
async def test_the_context_is_the_conversations_held_messages_for_the_sender_oldest_first(make_runtime, clock):
    runtime, _port, _ = with_agents(make_runtime, {**HELPER, "context_messages": 2})
    alice = online(runtime, "alice")
    await runtime.service.send(online(runtime, "bob"), send(to_user_id="alice", body="not this chat"))
    for n in range(2):
        await runtime.service.send(alice, send(to_user_id="helper", body=f"q{n}"))
        (await started(runtime, clock)).answer(f"a{n}")
        await finished(runtime)
    ack = await runtime.service.send(alice, send(to_user_id="helper", body="q2"))
    call = await started(runtime, clock)
    assert [(m["from_user_id"], m["body"]) for m in call.request["context"]] == [("alice", "q1"), ("helper", "a1")]
    assert call.request["message"]["msg_id"] == ack["msg_id"]
    call.answer()
    await finished(runtime)


# -- limits and failures ---------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_over_max_qps_the_ack_says_rate_limited_and_nothing_is_called(make_runtime, clock):
    runtime, port, sink = with_agents(make_runtime, {**HELPER, "max_qps": 2})
    alice = online(runtime, "alice")
    statuses = []
    for n in range(3):
        ack = await runtime.service.send(alice, send(to_user_id="helper", body=f"q{n}"))
        statuses.append(ack["agents"][0]["status"])
    assert statuses == ["started", "started", "rate_limited"] and ack["delivered"] == "offline"
    assert "stream_id" not in ack["agents"][0]
    clock.advance(0)
    assert len(hand(runtime).calls) == 2
    for call in hand(runtime).calls:
        call.answer()
    await finished(runtime)
    assert sorted(e["outcome"] for e in agent_calls(runtime, sink)) == ["ok", "ok", "rate_limited"]
    assert [m for m in port.to("alice") if m["type"] == "system"] == [], "nothing said for a refused call"


async def failed_final(runtime: TenantRuntime, port: FakePort, user: str = "alice") -> dict[str, Any]:
    await finished(runtime)
    final = port.to(user)[-1]
    assert final["type"] == "system" and final["from_user_id"] == "helper" and final["stream_id"]
    return final


@pytest_twisted.ensureDeferred
async def test_no_first_chunk_in_time_ends_the_call_with_a_504_system_message(make_runtime, clock):
    runtime, port, sink = with_agents(make_runtime, {**HELPER, "first_chunk_timeout_ms": 500, "timeout_ms": 5000})
    alice = online(runtime, "alice")
    ack = await runtime.service.send(alice, send(to_user_id="helper", body="q"))
    call = await started(runtime, clock)
    clock.advance(0.6)
    final = await failed_final(runtime, port)
    assert final["body"]["error"]["code"] == 504 and "first chunk" in final["body"]["error"]["message"]
    assert final["reply_to"] == ack["msg_id"] and final["stream_id"] == ack["agents"][0]["stream_id"]
    assert call.cancelled, "the call is cancelled"
    call.stream({"delta": "too late"})
    assert chunks(port, uris.inbox_topic("alice")) == []
    [event] = agent_calls(runtime, sink)
    assert event["outcome"] == "timeout" and event["chunks"] == 0 and event["duration_ms"] == 600


@pytest_twisted.ensureDeferred
async def test_no_end_within_timeout_ms_ends_the_call_with_a_504_after_the_chunks(make_runtime, clock):
    runtime, port, sink = with_agents(make_runtime, {**HELPER, "first_chunk_timeout_ms": 500, "timeout_ms": 2000})
    online(runtime, "alice")
    await runtime.service.send(online(runtime, "alice"), send(to_user_id="helper", body="q"))
    call = await started(runtime, clock)
    for _ in range(4):
        clock.advance(0.4)
        call.stream({"delta": "."})
    clock.advance(0.5)
    final = await failed_final(runtime, port)
    assert final["body"]["error"]["code"] == 504 and call.cancelled
    assert len(chunks(port, uris.inbox_topic("alice"))) == 4
    assert agent_calls(runtime, sink)[0]["outcome"] == "timeout"


@pytest.mark.parametrize(
    ("error", "outcome"),
    [(AgentError(ERROR, "the agent failed (tenant.error.boom)"), "error"),
     (AgentError(UNAVAILABLE, "no backend serves this agent"), "unavailable")],
)  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_an_agent_error_or_nobody_serving_it_ends_with_a_503(make_runtime, clock, error, outcome):
    runtime, port, sink = with_agents(make_runtime)
    await runtime.service.send(online(runtime, "alice"), send(to_user_id="helper", body="q"))
    call = await started(runtime, clock)
    call.stream({"delta": "partial"})
    call.result.errback(error)
    final = await failed_final(runtime, port)
    assert final["body"] == {"error": {"code": 503, "message": error.message}}
    assert agent_calls(runtime, sink)[0]["outcome"] == outcome


@pytest.mark.parametrize(
    "bad",
    [{"delta": math.nan}, {"delta": "\ud800"}, {"delta": "x" * 200}, {"delta": None}, {"text": "no delta"},
     "just a string", {"delta": {"deep": DEEP}},
     {"delta": 2**64}],
)  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_a_delta_that_breaks_the_value_rules_or_the_size_ends_the_call_as_an_error(make_runtime, clock, bad):
    runtime, port, sink = with_agents(make_runtime, max_payload_bytes=100)
    await runtime.service.send(online(runtime, "alice"), send(to_user_id="helper", body="q"))
    call = await started(runtime, clock)
    call.stream({"delta": "fine"})
    call.stream(bad)
    call.stream({"delta": "after"})
    final = await failed_final(runtime, port)
    assert final["body"]["error"]["code"] == 503 and call.cancelled
    assert [c["body"]["delta"] for c in chunks(port, uris.inbox_topic("alice"))] == ["fine"]
    assert agent_calls(runtime, sink)[0] == {**agent_calls(runtime, sink)[0], "outcome": "error", "chunks": 1}


@pytest.mark.parametrize("final", [{"text": "no body"}, {"body": None}, {"body": math.inf}, {"body": "x" * 200},
                                   {"body": "ok", "content_type": 7}, ["body"]])  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_a_final_answer_without_a_valid_body_is_an_error(make_runtime, clock, final):
    runtime, port, _ = with_agents(make_runtime, max_payload_bytes=100)
    await runtime.service.send(online(runtime, "alice"), send(to_user_id="helper", body="q"))
    call = await started(runtime, clock)
    call.result.callback(final)
    assert (await failed_final(runtime, port))["body"]["error"]["code"] == 503


@pytest_twisted.ensureDeferred
async def test_after_repeated_failures_the_breaker_opens_the_ack_says_unavailable_and_nothing_is_called(
    make_runtime, clock
):
    runtime, port, sink = with_agents(make_runtime, hook_breaker_failure_threshold=2, hook_breaker_open_ms=10_000)
    alice = online(runtime, "alice")
    for _ in range(2):
        await runtime.service.send(alice, send(to_user_id="helper", body="q"))
        (await started(runtime, clock)).result.errback(AgentError(ERROR, "broken"))
        await finished(runtime)
    ack = await runtime.service.send(alice, send(to_user_id="helper", body="q"))
    assert ack["agents"][0]["status"] == "unavailable" and ack["agents"][0]["stream_id"]
    clock.advance(0)
    final = await failed_final(runtime, port)
    assert final["body"]["error"]["code"] == 503 and len(hand(runtime).calls) == 2
    assert final["stream_id"] == ack["agents"][0]["stream_id"]
    assert [e["outcome"] for e in agent_calls(runtime, sink)] == ["error", "error", "unavailable"]
    clock.advance(10)  # half open: one trial goes through, and its success closes the breaker
    ack = await runtime.service.send(alice, send(to_user_id="helper", body="q"))
    assert ack["agents"][0]["status"] == "started"
    (await started(runtime, clock)).answer()
    assert await finished(runtime) == ["ok"]


@pytest_twisted.ensureDeferred
async def test_an_agents_calls_in_flight_are_bounded_by_the_hook_concurrency(make_runtime, clock):
    runtime, _port, sink = with_agents(make_runtime, hook_max_concurrency=1, hook_queue_timeout_ms=100)
    alice = online(runtime, "alice")
    for n in range(2):
        await runtime.service.send(alice, send(to_user_id="helper", body=f"q{n}"))
    clock.advance(0)
    assert len(hand(runtime).calls) == 1
    clock.advance(0.2)
    [busy] = [run for run in runtime.agents.running.waiting if run.finished.called]  # type: ignore[attr-defined]
    assert busy.finished.result == "unavailable"
    hand(runtime).calls[0].answer()
    await finished(runtime)
    assert sorted(e["outcome"] for e in agent_calls(runtime, sink)) == ["ok", "unavailable"]


# -- the rest of the contract ------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_agent_list_names_each_agent_and_a_config_change_keeps_the_breaker_of_an_unchanged_agent(make_runtime):
    runtime, _, _ = with_agents(make_runtime, HELPER, {"agent_id": "scribe", "name": "Scribe", "transport": "wamp"})
    listed = await runtime.service.agent_list(online(runtime, "alice"), NoArgs())
    assert listed == {"agents": [{"agent_id": "helper", "name": "Helper", "description": "answers"},
                                 {"agent_id": "scribe", "name": "Scribe"}]}  # fmt: skip
    helper = runtime.agents.get("helper")
    assert helper is not None
    runtime.update(runtime.config.merged({"agents": [{**HELPER, "max_qps": 50}]}))
    assert runtime.agents.get("helper") is helper and helper.bucket.rate == 50, "same agent, new limits"
    assert runtime.agents.get("scribe") is None and not runtime.agents.serves("scribe")
    runtime.update(runtime.config.merged({"agents": [{**HELPER, "transport": "http", "url": "http://x.invalid/a"}]}))
    assert runtime.agents.get("helper") is not helper, "a new transport: a new agent (and breaker)"


def test_what_an_agent_streams_is_read_strictly():
    assert delta_of({"delta": {"text": "ok"}}, 100) == {"text": "ok"}
    assert final_of({"body": "fine", "content_type": "text/plain"}, 100) == ("fine", "text/plain", 6)
    with pytest.raises(AgentError):
        delta_of({"delta": b"x" * 101}, 100)
    assert text_of("Hi") == "Hi" and text_of({"text": "Hi"}) == "Hi" and text_of({"text": 1}) == ""
    assert text_of([1]) == ""


@pytest_twisted.ensureDeferred
async def test_a_wamp_agent_is_called_with_the_answers_budget_as_the_calls_own_timeout():
    """Served on another node, the relay waits for the call's own timeout: the whole answer's time, a
    little past the guard's (which ends it first), not the relay's idle limit."""
    from autobahn.wamp.types import CallOptions

    from mics.agents.wamp import CALL_TIMEOUT_SLACK_MS, WampAgent

    seen: list[tuple[str, CallOptions, dict[str, Any]]] = []

    class Port:
        def call(self, procedure: str, options: CallOptions, **kwargs: Any) -> Any:
            seen.append((procedure, options, kwargs))
            options.on_progress(delta="hi")
            return defer.succeed({"body": "done"})

    progress: list[Any] = []
    result = await WampAgent("helper", Port()).call({"text": "q"}, progress.append, 45.0)
    (procedure, options, kwargs), = seen
    assert procedure == uris.agent_procedure("helper") and kwargs == {"text": "q"}
    assert options.timeout == 45_000 + CALL_TIMEOUT_SLACK_MS
    assert progress == [{"delta": "hi"}] and result == {"body": "done"}
