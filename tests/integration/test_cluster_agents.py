"""WAMP agents across the cluster (protocol.md section 12, docs/agents.md "Cluster mode"): the backend
serving `mics.agent.<agent_id>` joins node B only; the users who trigger it and the recipients are on
node A (and one recipient on B). Node A's call goes through the cross-node relay (mics.cluster.relay),
its progressive results come back numbered and put in order, the answer after the last of them.

Two real nodes on one redis-server, the tenant's hooks over HTTP (one hook server answers both)."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from agent_servers import AgentLogic, agent_config, stream, wamp_agent
from autobahn.wamp.exception import ApplicationError

from cluster_tenants import ClusterTenant
from harness import Node
from wamp_clients import TestSession, sleep

WORDS = " ".join(f"w{n}" for n in range(60))  # 60 chunks streamed back to back: the pool reorders some


class AgentCluster:
    """A tenant whose agents are served by a backend on node B."""

    def __init__(self, tenant: ClusterTenant, a: Node, b: Node) -> None:
        self.tenant, self.a, self.b = tenant, a, b
        self.logic: dict[str, AgentLogic] = {}
        self.agents_backend: TestSession | None = None

    async def serve(self, logic: dict[str, AgentLogic], **extra: dict[str, Any]) -> None:
        """Declare the agents (`extra`: more config per agent id) and serve them on node B, with a
        `probe` agent; returns once node A calls them there."""
        self.logic = logic = {**logic, "probe": AgentLogic()}
        extra = {**extra, "probe": {"max_qps": 100}}
        declared = [agent_config(agent_id, "wamp", None, **extra.get(agent_id, {})) for agent_id in logic]
        adm = await self.tenant.admin(self.a)
        config = {"secret": self.tenant.secret, "hook_transport": "http", "hook_base_url": self.tenant.hooks.base_url,
                  "agents": declared, "group_buffering": True}  # fmt: skip
        await adm.call("mics.admin.tenant.upsert", tenant_id=self.tenant.tenant_id, config=config)
        self.agents_backend = await wamp_agent(self.b.url, self.tenant.tenant_id, self.tenant.secret, logic)
        self.tenant.sessions.append(self.agents_backend)
        await self._reached()

    async def _reached(self) -> None:
        """Node B's announcement of the agents reaches node A through Redis a few ms after they
        register: a probe user on A asks the probe agent until its answer is not `unavailable`."""
        agent_id = "probe"
        probe = await self.tenant.user(self.a, "prober")
        for _ in range(50):
            ack = await probe.call("mics.message.send", to_user_id=agent_id, body={"text": "ping"})
            _chunks, final = await stream(probe, "mics.inbox.prober", ack["agents"][0]["stream_id"])
            if final["type"] != "system":
                return
            await sleep(0.05)
        raise AssertionError("node A never reached the agents on node B")


@pytest_twisted.async_yield_fixture()
async def served(cluster_nodes: tuple[Node, Node]) -> AsyncIterator[AgentCluster]:
    a, b = cluster_nodes
    tenant = await ClusterTenant.create(a, "http", prefix="ca")
    yield AgentCluster(tenant, a, b)
    await tenant.close()


def in_order(chunks: list[dict[str, Any]]) -> str:
    assert [c["chunk_seq"] for c in chunks] == list(range(1, len(chunks) + 1)), "in order, no gaps"
    return "".join(c["body"]["delta"] for c in chunks)


async def failed(session: TestSession, user_id: str, ack: dict[str, Any]) -> tuple[list[dict[str, Any]], dict]:
    chunks, final = await stream(session, f"mics.inbox.{user_id}", ack["agents"][0]["stream_id"])
    assert (final["type"], final["from_user_id"], final["reply_to"]) == ("system", "helper", ack["msg_id"])
    return chunks, final["body"]["error"]


async def cancelled(logic: AgentLogic) -> bool:
    """Whether the backend on node B saw its call interrupted (the cancel crossed the cluster)."""
    for _ in range(60):
        if logic.cancelled:
            return True
        await sleep(0.05)
    return False


@pytest_twisted.ensureDeferred
async def test_an_agent_on_the_other_node_streams_every_chunk_in_order_then_the_final_message(served):
    await served.serve({"helper": AgentLogic()})
    alice = await served.tenant.user(served.a, "alice", "phone")
    ack = await alice.call("mics.message.send", to_user_id="helper", body={"text": WORDS})
    [entry] = ack["agents"]
    assert entry["status"] == "started"
    chunks, final = await stream(alice, "mics.inbox.alice", entry["stream_id"])
    assert len(chunks) == 60 and in_order(chunks) == WORDS
    assert (final["type"], final["from_user_id"], final["reply_to"]) == ("chat", "helper", ack["msg_id"])
    assert final["body"] == {"text": f"{WORDS} (60 words)"} and final["seq"] == ack["seq"] + 1
    [request] = served.logic["helper"].requests
    assert request["message"]["msg_id"] == ack["msg_id"] and request["stream_id"] == entry["stream_id"]
    laptop = await served.tenant.user(served.b, "alice", "laptop")  # a late device, on the agent's node
    held = (await laptop.call("mics.inbox.sync", since_seq=0))["messages"]
    assert [(m["msg_id"], m["type"]) for m in held] == [(ack["msg_id"], "chat"), (final["msg_id"], "chat")]


@pytest_twisted.ensureDeferred
async def test_a_group_mention_streams_to_members_on_both_nodes_in_the_same_order(served):
    await served.serve({"helper": AgentLogic(delay=0.002)})
    served.tenant.logic.groups["team"] = ["alice", "bob", "carol"]
    alice, bob = await served.tenant.user(served.a, "alice"), await served.tenant.user(served.a, "bob")
    carol = await served.tenant.user(served.b, "carol")
    for session in (alice, bob, carol):
        await session.listen("mics.group.team")
    ack = await alice.call("mics.group.send", group_id="team", body={"text": f"@helper {WORDS}"}, mentions=["helper"])
    [entry] = ack["agents"]
    finals = []
    for session in (alice, bob, carol):
        chunks, final = await stream(session, "mics.group.team", entry["stream_id"])
        assert len(chunks) == 61 and in_order(chunks) == f"@helper {WORDS}"
        assert (final["type"], final["from_user_id"], final["group_id"]) == ("group_chat", "helper", "team")
        finals.append(final["msg_id"])
    assert len(set(finals)) == 1


@pytest_twisted.ensureDeferred
async def test_no_first_chunk_in_time_gets_a_504_and_the_call_is_cancelled_on_the_agents_node(served):
    logic = AgentLogic(silent=True)
    await served.serve({"silent": logic}, silent={"first_chunk_timeout_ms": 400})
    alice = await served.tenant.user(served.a, "alice")
    ack = await alice.call("mics.message.send", to_user_id="silent", body="hello?")
    chunks, final = await stream(alice, "mics.inbox.alice", ack["agents"][0]["stream_id"])
    assert chunks == [] and final["type"] == "system"
    assert final["body"]["error"]["code"] == 504 and "first chunk" in final["body"]["error"]["message"]
    assert await cancelled(logic), "the cancel reached the backend on node B"


@pytest_twisted.ensureDeferred
async def test_streaming_past_timeout_ms_ends_with_a_504_after_gap_free_chunks_and_stops_the_agent(served):
    logic = AgentLogic(forever=True, delay=0.02)
    await served.serve({"helper": logic}, helper={"timeout_ms": 800, "first_chunk_timeout_ms": 400})
    alice = await served.tenant.user(served.a, "alice")
    ack = await alice.call("mics.message.send", to_user_id="helper", body="go on")
    chunks, error = await failed(alice, "alice", ack)
    assert error["code"] == 504 and len(chunks) >= 5
    in_order(chunks)
    assert await cancelled(logic)


@pytest_twisted.ensureDeferred
async def test_an_agent_error_on_the_other_node_gets_a_503(served):
    await served.serve({"broken": AgentLogic(fail=True)})
    alice = await served.tenant.user(served.a, "alice")
    ack = await alice.call("mics.message.send", to_user_id="broken", body="break")
    _chunks, final = await stream(alice, "mics.inbox.alice", ack["agents"][0]["stream_id"])
    assert final["type"] == "system" and final["body"]["error"]["code"] == 503


@pytest_twisted.ensureDeferred
async def test_the_agents_backend_leaving_mid_stream_ends_the_stream_with_a_503_after_its_chunks(served):
    logic = AgentLogic(forever=True, delay=0.02)
    await served.serve({"helper": logic}, helper={"timeout_ms": 20_000})
    alice = await served.tenant.user(served.a, "alice")
    ack = await alice.call("mics.message.send", to_user_id="helper", body="keep going")
    first = [await alice.next_event("mics.inbox.alice") for _ in range(5)]
    assert [c["chunk_seq"] for c in first] == [1, 2, 3, 4, 5]
    assert served.agents_backend is not None
    served.agents_backend._transport.transport.abortConnection()  # the backend's process died
    began = time.monotonic()
    rest, error = await failed(alice, "alice", ack)
    assert error["code"] == 503 and time.monotonic() - began < 5, "not the 20 s timeout"
    in_order(first + rest)


@pytest_twisted.ensureDeferred
async def test_a_user_cannot_call_an_agent_served_on_the_other_node(served):
    await served.serve({"helper": AgentLogic()})
    for node in (served.a, served.b):
        mallory = await served.tenant.user(node, f"mallory{node.node_id}")
        with pytest.raises(ApplicationError) as denied:
            await mallory.call("mics.agent.helper", message={"body": "free answers?"})
        assert denied.value.error == "wamp.error.not_authorized"
    assert served.logic["helper"].requests == []
