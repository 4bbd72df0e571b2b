"""The Python SDK's side of section 12 on a real node: agents written with `@agent` on a TenantBackend
(WAMP) and on a HookServer (HTTP), and clients following their answers as streams."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted
import treq
from test_hook_sdk import ShopBackend, ShopHooks, TenantSetup
from test_sdk_python import Device

from mics_client import AgentStream
from mics_client.hooks.agents import AgentRequest, Reply, agent
from mics_client.hooks.backend import connect_backend
from mics_client.hooks.http import HookServer
from mics_client.signing import sign_headers
from mics_client.types import Message
from wamp_clients import sleep


class Bots(ShopHooks):
    """Three agents in a few lines each: a streaming echo, a one-shot counter, a broken one."""

    @agent("echo")
    async def echo(self, request: AgentRequest) -> AsyncIterator[Any]:
        for n, word in enumerate(request.text.split()):
            yield word if n == 0 else " " + word
        yield Reply({"text": f"{request.text} (after {len(request.context)} earlier)"}, "application/json")

    @agent("counter")
    def counter(self, request: AgentRequest) -> int:
        return len(request.text.split())

    @agent("broken")
    async def broken(self, request: AgentRequest) -> AsyncIterator[Any]:
        yield "starting"
        raise RuntimeError("the model fell over")


class BotBackend(Bots, ShopBackend):
    def __init__(self, config: Any) -> None:
        ShopBackend.__init__(self, config)


AGENTS = [{"agent_id": a, "name": a.title(), "transport": "wamp", "keywords": [f"{a}!"]}
          for a in ("echo", "counter", "broken")]  # fmt: skip


@pytest_twisted.async_yield_fixture(params=["wamp", "http"])
async def bots(request: Any, mics_node: Any) -> AsyncIterator[tuple[TenantSetup, str]]:
    """A tenant whose agents run on the SDK: a TenantBackend, or a HookServer."""
    setup = TenantSetup(mics_node.url)
    ids = setup.new_ids()
    if request.param == "wamp":
        tenant_id, secret = await setup.create(ids, hook_transport="wamp", agents=AGENTS)
        backend = await connect_backend(setup.url, tenant_id, secret, BotBackend)
        setup.closers.append(lambda: backend.leave())
    else:
        server = HookServer(Bots(), ids[1])
        setup.closers.append(server.stop)
        agents = [{**a, "transport": "http", "url": f"{server.base_url}agents/{a['agent_id']}"} for a in AGENTS]
        tenant_id, _ = await setup.create(ids, hook_transport="http", hook_base_url=server.base_url, agents=agents)
    yield setup, tenant_id
    await setup.close()


@pytest_twisted.ensureDeferred
async def test_a_client_follows_an_agents_answer_as_a_stream_that_ends_with_the_final_message(bots) -> None:
    setup, tenant_id = bots
    alice = Device(await setup.client(tenant_id, "ok-alice"))
    chunks: list[Message] = []
    alice.client.on_agent_chunk(chunks.append)
    first = await alice.client.send("echo", {"text": "warm up"})
    await alice.client.stream(first.agents[0].stream_id).done()
    ack = await alice.client.send("echo", {"text": "one two three"})
    [call] = ack.agents
    assert (call.agent_id, call.status) == ("echo", "started")
    stream = alice.client.stream(call.stream_id)
    seen = [m async for m in stream]
    assert [m.chunk_seq for m in seen[:-1]] == [1, 2, 3] and [m.delta for m in seen[:-1]] == ["one", " two", " three"]
    final = seen[-1]
    assert (final.type, final.stream_id, final.reply_to) == ("chat", call.stream_id, ack.msg_id)
    assert final.body == {"text": "one two three (after 2 earlier)"} and final.content_type == "application/json"
    assert stream.ended and stream.text == "one two three" and stream.error is None and stream.agent_id == "echo"
    assert [m async for m in stream] == seen, "a stream can be read again, from the start"
    assert [m.chunk_seq for m in chunks if m.stream_id == call.stream_id] == [1, 2, 3]
    await alice.client.ping()
    delivered = [m for m in alice.messages if m.from_user_id == "echo"]
    assert [m.type for m in delivered] == ["chat", "chat"], "final messages reach on_message; chunks do not"


@pytest_twisted.ensureDeferred
async def test_a_group_member_hears_of_each_new_stream_and_a_one_shot_answer_has_no_chunks(bots) -> None:
    setup, tenant_id = bots
    alice = await setup.client(tenant_id, "ok-alice")
    bob = await setup.client(tenant_id, "ok-bob")
    await bob.subscribe_group("team")
    started: list[AgentStream] = []
    bob.on_agent_stream(started.append)
    ack = await alice.send_group("team", {"text": "counter! how many words"})
    assert [a.agent_id for a in ack.agents] == ["counter"]
    for _ in range(100):
        if started and started[0].ended:
            break
        await sleep(0.02)
    [stream] = started
    assert stream.chunks == [] and stream.final is not None and stream.final.body == 4
    assert stream.final.type == "group_chat" and stream.final.from_user_id == "counter"
    assert await alice.agents() == [{"agent_id": a["agent_id"], "name": a["name"]} for a in AGENTS]


@pytest_twisted.ensureDeferred
async def test_an_agent_that_raises_ends_its_stream_with_an_error_the_client_can_read(bots) -> None:
    setup, tenant_id = bots
    alice = await setup.client(tenant_id, "ok-alice")
    ack = await alice.send("broken", "go")
    stream = alice.stream(ack.agents[0].stream_id)
    final = await stream.done()
    assert final.type == "system" and stream.error is not None and stream.error["code"] == 503
    assert final.agent_error == stream.error
    assert [c.delta for c in stream.chunks] in ([], ["starting"])


@pytest_twisted.ensureDeferred
async def test_the_http_hook_server_streams_only_signed_calls_of_the_agents_it_serves() -> None:
    server = HookServer(Bots(), "the-secret")
    try:
        body = b'{"agent_id": "echo", "tenant_id": "shop", "stream_id": "s1", "message": {"body": "a b"}}'

        async def post(path: str, headers: dict[str, str]) -> tuple[int, bytes]:
            response = await treq.post(server.base_url + path, data=body, headers=headers)
            return int(response.code), await response.content()

        assert await post("agents/echo", sign_headers("shop", "the-secret", body)) == (
            200, b'{"delta":"a"}\n{"delta":" b"}\n{"body":{"text":"a b (after 0 earlier)"},'
                 b'"content_type":"application/json"}\n',
        )  # fmt: skip
        assert (await post("agents/nobody", sign_headers("shop", "the-secret", body)))[0] == 404
        assert (await post("agents/echo", sign_headers("shop", "other-secret", body)))[0] == 401
        assert (await post("agents/echo", {}))[0] == 401
        assert server.resource.stats["agents"] == 1 and server.resource.stats["bad_signature"] == 2
    finally:
        await server.stop()
