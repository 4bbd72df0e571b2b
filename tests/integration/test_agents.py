"""AI agents on a real node (protocol.md section 12), each over both transports: a WAMP backend answering
`mics.agent.<agent_id>` with progressive results, and a signed HTTP endpoint streaming NDJSON.

Every trigger, chunk order, the final message in sync, the context, every failure (first-chunk and total
timeouts, errors, nobody serving, the breaker, max_qps), logins as an agent, mics.agent.list, AGENT_CALL
events; and what a hostile user or a hostile agent can do (nothing to anyone else)."""

from __future__ import annotations

import itertools
import json
import os
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from agent_servers import RAW, AgentLogic, HttpAgentServer, agent_config, stream, wamp_agent
from autobahn.wamp.exception import ApplicationError
from test_conversation import events_path, listening, refused
from test_events_sinks import read_lines
from twisted.internet.utils import getProcessOutputAndValue

from harness import ADMIN_SECRET, ROOT
from wamp_clients import JoinRefused, TestSession, sleep, user

_examples = itertools.count(1)


class AgentTenant:
    """A fresh tenant whose agents are served over one transport."""

    def __init__(self, tenant: Any, transport: str) -> None:
        self.tenant = tenant
        self.transport = transport
        self.server: HttpAgentServer | None = None
        self.logic: dict[str, AgentLogic] = {}

    async def serve(self, logic: dict[str, AgentLogic], **extra: dict[str, Any]) -> None:
        """Serve `logic` and declare the agents (`extra`: more config per agent id)."""
        self.logic = logic
        if self.transport == "http":
            self.server = HttpAgentServer(self.tenant.secret, logic)
        else:
            self.tenant.sessions.append(await wamp_agent(self.tenant.node.url, self.tenant.tenant_id,
                                                         self.tenant.secret, logic))  # fmt: skip
        await self.declare({agent_id: extra.get(agent_id, {}) for agent_id in logic})

    async def declare(self, agents: dict[str, dict[str, Any]]) -> None:
        declared = [agent_config(a, self.transport, self.server, **c) for a, c in agents.items()]
        await self.tenant.configure(agents=declared)

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()


@pytest_twisted.async_yield_fixture(params=["wamp", "http"])
async def agents(request: Any, make_tenant: Any) -> AsyncIterator[Any]:
    made: list[AgentTenant] = []

    async def make(**config: Any) -> AgentTenant:
        setup = AgentTenant(await make_tenant(event_sinks=["file"], **config), request.param)
        made.append(setup)
        return setup

    yield make
    for setup in made:
        await setup.stop()


async def agent_calls(node: Any, tenant: Any, count: int) -> list[dict[str, Any]]:
    """The first `count` AGENT_CALL events in the tenant's event file, once they are there."""
    path = events_path(node, tenant)
    deadline = time.monotonic() + 10
    while True:
        found = [e for e in map(json.loads, read_lines(path)) if e["event_type"] == "AGENT_CALL"]
        if len(found) >= count or time.monotonic() > deadline:
            return found[:count]
        await sleep(0.05)


# -- triggers and streams -----------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_a_1to1_send_streams_the_answer_in_chunk_order_and_a_late_device_syncs_the_final_message(
    agents, mics_node
):
    setup = await agents()
    await setup.serve({"helper": AgentLogic(delay=0.01)})
    tenant = setup.tenant
    phone = await listening(tenant, "alice", "phone")
    ack = await phone.call("mics.message.send", to_user_id="helper", body={"text": "one two three four"})
    [entry] = ack["agents"]
    assert entry["agent_id"] == "helper" and entry["status"] == "started" and ack["delivered"] == "online"
    chunks, final = await stream(phone, "mics.inbox.alice", entry["stream_id"])
    assert [c["chunk_seq"] for c in chunks] == [1, 2, 3, 4]
    assert "".join(c["body"]["delta"] for c in chunks) == "one two three four"
    assert all(c["from_user_id"] == "helper" and c["type"] == "agent_chunk" and "seq" not in c for c in chunks)
    assert (final["type"], final["from_user_id"], final["reply_to"]) == ("chat", "helper", ack["msg_id"])
    assert final["body"] == {"text": "one two three four (4 words)"} and final["seq"] == ack["seq"] + 1
    laptop = await tenant.user("alice", "laptop")
    held = (await laptop.call("mics.inbox.sync", since_seq=0))["messages"]
    assert [(m["msg_id"], m["type"]) for m in held] == [(ack["msg_id"], "chat"), (final["msg_id"], "chat")]
    assert held[1]["stream_id"] == entry["stream_id"], "chunks are never held; the final message is"
    [event] = await agent_calls(mics_node, tenant, 1)
    assert event["event_data"]["outcome"] == "ok" and event["event_data"]["chunks"] == 4
    assert (event["msg_id"], event["user_id"], event["to_user_id"]) == (ack["msg_id"], "alice", "helper")
    assert event["event_data"]["duration_ms"] >= 30


@pytest_twisted.ensureDeferred
async def test_a_group_mention_and_a_keyword_call_agents_whose_streams_reach_every_member(agents):
    setup = await agents(group_buffering=True)
    await setup.serve({"helper": AgentLogic(), "scribe": AgentLogic()}, scribe={"keywords": ["Minutes"]})
    tenant = setup.tenant
    tenant.logic.groups["team"] = ["alice", "bob", "carol"]
    alice, bob = await tenant.user("alice"), await tenant.user("bob")
    for session in (alice, bob):
        await session.listen("mics.group.team")
    ack = await alice.call("mics.group.send", group_id="team", body={"text": "@helper take the MINUTES"},
                           mentions=["helper"])  # fmt: skip
    assert [(a["agent_id"], a["status"]) for a in ack["agents"]] == [("helper", "started"), ("scribe", "started")]
    for entry in ack["agents"]:
        for session in (alice, bob):
            chunks, final = await stream(session, "mics.group.team", entry["stream_id"])
            assert [c["chunk_seq"] for c in chunks] == [1, 2, 3, 4] and chunks[0]["group_id"] == "team"
            assert (final["type"], final["from_user_id"]) == ("group_chat", entry["agent_id"])
    carol = await tenant.user("carol")
    held = (await carol.call("mics.inbox.sync", since_seq=0))["messages"]
    assert sorted(m["from_user_id"] for m in held) == ["alice", "helper", "scribe"], "held like group chat"
    plain = await alice.call("mics.group.send", group_id="team", body={"text": "no agent here"})
    assert "agents" not in plain


@pytest_twisted.ensureDeferred
async def test_the_agent_gets_the_trigger_and_the_conversations_held_messages_as_context(agents):
    setup = await agents()
    await setup.serve({"helper": AgentLogic()}, helper={"context_messages": 3})
    tenant = setup.tenant
    alice = await listening(tenant, "alice")
    bob = await tenant.user("bob")
    await bob.call("mics.message.send", to_user_id="alice", body="another chat")
    for text in ("first question", "second question"):
        ack = await alice.call("mics.message.send", to_user_id="helper", body={"text": text})
        await stream(alice, "mics.inbox.alice", ack["agents"][0]["stream_id"])
    request = setup.logic["helper"].requests[-1]
    assert request["message"]["msg_id"] == ack["msg_id"] and request["message"]["body"] == {"text": "second question"}
    assert (request["agent_id"], request["tenant_id"]) == ("helper", tenant.tenant_id)
    assert request["stream_id"] == ack["agents"][0]["stream_id"]
    assert [(m["from_user_id"], m["body"]) for m in request["context"]] == [
        ("alice", {"text": "first question"}),
        ("helper", {"text": "first question (2 words)"}),
    ], "this conversation only, oldest first, the trigger left out"
    assert all(m["seq"] for m in request["context"])


# -- failures -----------------------------------------------------------------------------------------------
async def failed(session: TestSession, user_id: str, ack: dict[str, Any]) -> tuple[list[dict[str, Any]], dict]:
    chunks, final = await stream(session, f"mics.inbox.{user_id}", ack["agents"][0]["stream_id"])
    assert (final["type"], final["from_user_id"], final["reply_to"]) == ("system", "helper", ack["msg_id"])
    return chunks, final["body"]["error"]


@pytest_twisted.ensureDeferred
async def test_an_agent_that_never_starts_gets_a_504_and_never_delays_anyones_sends(agents, mics_node):
    setup = await agents()
    await setup.serve({"helper": AgentLogic(silent=True)}, helper={"first_chunk_timeout_ms": 400})
    tenant = setup.tenant
    alice = await listening(tenant, "alice")
    bob = await listening(tenant, "bob")
    started = time.monotonic()
    ack = await alice.call("mics.message.send", to_user_id="helper", body="hello?")
    for n in range(3):  # the silent agent holds nothing up
        await bob.call("mics.message.send", to_user_id="alice", body=f"meanwhile {n}")
    assert time.monotonic() - started < 0.35, "the sends were answered before the agent's deadline"
    chunks, error = await failed(alice, "alice", ack)
    assert chunks == [] and error["code"] == 504 and "first chunk" in error["message"]
    [event] = await agent_calls(mics_node, tenant, 1)
    assert event["event_data"]["outcome"] == "timeout" and event["event_data"]["chunks"] == 0
    for _ in range(50):  # the node cancelled the call
        if setup.logic["helper"].cancelled:
            break
        await sleep(0.05)
    assert setup.logic["helper"].cancelled == 1


@pytest_twisted.ensureDeferred
async def test_an_agent_that_streams_past_timeout_ms_gets_a_504_after_its_chunks(agents):
    setup = await agents()
    logic = AgentLogic(forever=True, delay=0.05)
    await setup.serve({"helper": logic}, helper={"timeout_ms": 600, "first_chunk_timeout_ms": 300})
    alice = await listening(setup.tenant, "alice")
    ack = await alice.call("mics.message.send", to_user_id="helper", body="go on forever")
    chunks, error = await failed(alice, "alice", ack)
    assert error["code"] == 504 and len(chunks) >= 3
    assert [c["chunk_seq"] for c in chunks] == list(range(1, len(chunks) + 1)), "no gaps"


@pytest_twisted.ensureDeferred
async def test_an_agent_error_gets_a_503_and_so_does_an_agent_nobody_serves(agents, mics_node):
    setup = await agents()
    await setup.serve({"helper": AgentLogic(fail=True)})
    alice = await listening(setup.tenant, "alice")
    ack = await alice.call("mics.message.send", to_user_id="helper", body="break")
    _chunks, error = await failed(alice, "alice", ack)
    assert error["code"] == 503
    if setup.transport == "http":  # nobody serves: the endpoint is gone
        await setup.server.stop()  # type: ignore[union-attr]
    else:  # nobody serves: declared, but no backend registered it
        await setup.declare({"helper": {}, "ghost": {}})
        setup.logic["ghost"] = AgentLogic()
    ghost = "helper" if setup.transport == "http" else "ghost"
    ack = await alice.call("mics.message.send", to_user_id=ghost, body="anyone?")
    _chunks, final = await stream(alice, "mics.inbox.alice", ack["agents"][0]["stream_id"])
    assert final["type"] == "system" and final["body"]["error"]["code"] == 503
    outcomes = [e["event_data"]["outcome"] for e in await agent_calls(mics_node, setup.tenant, 2)]
    assert outcomes == ["error", "unavailable"]


@pytest_twisted.ensureDeferred
async def test_after_repeated_failures_the_breaker_answers_unavailable_without_calling(agents):
    setup = await agents(hook_breaker_failure_threshold=2, hook_breaker_open_ms=60_000)
    logic = AgentLogic(fail=True)
    await setup.serve({"helper": logic})
    alice = await listening(setup.tenant, "alice")
    for _ in range(2):
        await failed(alice, "alice", await alice.call("mics.message.send", to_user_id="helper", body="x"))
    calls = len(logic.requests) if setup.transport == "http" else None
    ack = await alice.call("mics.message.send", to_user_id="helper", body="x")
    assert ack["agents"][0]["status"] == "unavailable" and ack["delivered"] == "offline"
    _chunks, error = await failed(alice, "alice", ack)
    assert error["code"] == 503
    if calls is not None:
        assert len(logic.requests) == calls, "the open breaker called nothing"


@pytest_twisted.ensureDeferred
async def test_over_max_qps_the_ack_says_rate_limited_and_nothing_is_called(agents, mics_node):
    setup = await agents()
    logic = AgentLogic()
    await setup.serve({"helper": logic}, helper={"max_qps": 1})
    alice = await listening(setup.tenant, "alice")
    first = await alice.call("mics.message.send", to_user_id="helper", body="one")
    second = await alice.call("mics.message.send", to_user_id="helper", body="two")
    assert second["agents"] == [{"agent_id": "helper", "status": "rate_limited"}] and second["delivered"] == "offline"
    await stream(alice, "mics.inbox.alice", first["agents"][0]["stream_id"])
    await sleep(0.2)
    assert [r["message"]["msg_id"] for r in logic.requests] == [first["msg_id"]]
    events = await agent_calls(mics_node, setup.tenant, 2)
    assert sorted(e["event_data"]["outcome"] for e in events) == ["ok", "rate_limited"]


# -- the rest of the contract -----------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_nobody_logs_in_as_an_agent_and_users_cannot_call_or_serve_an_agent(agents):
    setup = await agents()
    await setup.serve({"helper": AgentLogic()}, helper={"description": "answers questions"})
    tenant = setup.tenant
    with pytest.raises(JoinRefused) as refused_join:
        await tenant.user("helper")
    assert refused_join.value.reason == "mics.error.invalid_token"
    alice = await tenant.user("alice")
    listed = await alice.call("mics.agent.list")
    assert listed == {"agents": [{"agent_id": "helper", "name": "Helper", "description": "answers questions"}]}
    assert await (await tenant.backend("backend-lister")).call("mics.agent.list") == listed
    await refused(alice.call("mics.agent.helper", message={}), "wamp.error.not_authorized")
    with pytest.raises(ApplicationError):
        await alice.register(lambda **_: {"body": "fake"}, "mics.agent.helper")
    with pytest.raises(ApplicationError):
        await (await tenant.backend("backend-rogue")).register(lambda **_: {}, "mics.agent.list")


@pytest_twisted.ensureDeferred
async def test_agent_call_events_reach_the_wamp_sink_too(agents):
    setup = await agents()
    await setup.tenant.configure(event_sinks=["file", "wamp"])
    await setup.serve({"helper": AgentLogic()})
    listener = await setup.tenant.backend("backend-events")
    await listener.listen("mics.event.agent_call")
    alice = await listening(setup.tenant, "alice")
    ack = await alice.call("mics.message.send", to_user_id="helper", body="hi")
    event = await listener.next_event("mics.event.agent_call")
    assert event["event_data"] == {"agent_id": "helper", "stream_id": ack["agents"][0]["stream_id"], "outcome": "ok",
                                   "duration_ms": event["event_data"]["duration_ms"], "chunks": 1}  # fmt: skip


# -- hostile users and hostile agents --------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_a_user_cannot_forge_an_agent_chunk_or_an_agents_final_message(agents):
    setup = await agents()
    await setup.serve({"helper": AgentLogic()})
    mallory = await setup.tenant.user("mallory")
    bob = await listening(setup.tenant, "bob")
    forged = {"type": "agent_chunk", "stream_id": "s-fake", "chunk_seq": 1, "from_user_id": "helper"}
    await mallory.call("mics.message.send", to_user_id="bob", body={"delta": "trust me"}, **forged)
    got = await bob.next_event("mics.inbox.bob")
    assert (got["type"], got["from_user_id"]) == ("chat", "mallory")
    assert "stream_id" not in got and "chunk_seq" not in got


HOSTILE = {
    "not an object": [(RAW, "junk")],
    "no delta": [{"text": "hi"}],
    "huge delta": [{"delta": "x" * 5000}],
    "nested too deep": [{"delta": json.loads("[" * 40 + "]" * 40)}],
    "an integer out of range": [{"delta": 2**65}],
}
HOSTILE_HTTP = {
    "a line that is not JSON": [(RAW, b"\xff<html>oops"), {"body": "never shown"}],
    "NaN": [(RAW, b'{"delta": NaN}'), {"body": "never shown"}],
    "a lone surrogate": [(RAW, b'{"delta": "\\ud800"}'), {"body": "never shown"}],
    "more after the final answer": [{"body": "done"}, {"delta": "late"}],
    "an error line": [{"error": "the model crashed"}],
    "no final answer": [],
}


@pytest.mark.parametrize("garbage", list(HOSTILE))
@pytest_twisted.ensureDeferred
async def test_an_agent_streaming_garbage_ends_as_an_error_and_the_conversation_goes_on(agents, garbage):
    await _garbage_ends_as_an_error(agents, [*HOSTILE[garbage], {"body": "never shown"}])


@pytest.mark.parametrize("agents", ["http"], indirect=True)  # a WAMP serializer carries none of these
@pytest.mark.parametrize("garbage", list(HOSTILE_HTTP))
@pytest_twisted.ensureDeferred
async def test_an_http_agent_streaming_what_no_json_line_may_hold_ends_as_an_error(agents, garbage):
    await _garbage_ends_as_an_error(agents, HOSTILE_HTTP[garbage])


async def _garbage_ends_as_an_error(agents: Any, hostile: list[Any]) -> None:
    setup = await agents(max_payload_bytes=1000)
    script = [{"delta": "fine"}, *hostile]
    await setup.serve({"helper": AgentLogic(script=script)})
    alice = await listening(setup.tenant, "alice")
    ack = await alice.call("mics.message.send", to_user_id="helper", body="go")
    chunks, error = await failed(alice, "alice", ack)
    assert error["code"] == 503 and [c["body"]["delta"] for c in chunks] in ([], ["fine"])
    bob = await setup.tenant.user("bob")
    await bob.call("mics.message.send", to_user_id="alice", body="still here")
    assert (await alice.next_event("mics.inbox.alice"))["body"] == "still here"
    synced = await alice.call("mics.inbox.sync", since_seq=0)
    assert synced["complete"] and [m["type"] for m in synced["messages"]] == ["chat", "system", "chat"]


# -- the embedded default -----------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_the_demo_tenant_has_a_local_bot_that_streams_word_by_word(mics_node):
    """What `scripts/run` shows: the demo tenant's in-node backend serves the agent `assistant`."""
    alice = await user(mics_node.url, "demo", "demo-alice", "agents-test")
    try:
        await alice.listen("mics.inbox.alice")
        assert [a["agent_id"] for a in (await alice.call("mics.agent.list"))["agents"]] == ["assistant"]
        ack = await alice.call("mics.message.send", to_user_id="assistant", body={"text": "hello there"})
        chunks, final = await stream(alice, "mics.inbox.alice", ack["agents"][0]["stream_id"])
        streamed = "".join(c["body"]["delta"] for c in chunks)
        assert [c["chunk_seq"] for c in chunks] == list(range(1, len(chunks) + 1)) and len(chunks) > 2
        assert streamed.startswith("hello there —") and "2 words" in streamed
        assert final["type"] == "chat" and final["body"] == streamed
        with pytest.raises(JoinRefused):
            await user(mics_node.url, "demo", "demo-assistant", "impostor")
    finally:
        await alice.close()


@pytest.mark.parametrize("transport", [[], ["--http"]], ids=["wamp", "http"])
@pytest_twisted.ensureDeferred
async def test_the_example_agent_runs_as_documented_and_streams_word_by_word(mics_node, transport):
    tenant = f"bots{os.getpid() % 10000}x{next(_examples)}"
    args = [str(ROOT / "examples" / "echo_agent.py"), "--url", mics_node.url, "--tenant", tenant,
            "--admin-secret", ADMIN_SECRET, "--self-test", *transport]  # fmt: skip
    out, err, code = await getProcessOutputAndValue(sys.executable, args, env=dict(os.environ))
    assert code == 0, err.decode()
    lines = out.decode().splitlines()
    chunks = [line for line in lines if line.startswith("self-test: chunk")]
    assert chunks[0] == "self-test: chunk 1: 'hello'" and len(chunks) == 6
    assert lines[-1] == "self-test: final chat: 'hello streaming world — 3 words, 0 earlier in this chat.'"
