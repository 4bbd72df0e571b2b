"""An AI agent that needs no AI service: a deterministic local bot, served with the hook SDK.

It creates (or updates) the tenant `bots` through the admin API with one agent, `echo`, and serves
it: over WAMP as a TenantBackend (`mics.agent.echo`, progressive results), or with `--http` as a
signed HTTP endpoint streaming NDJSON (HookServer). The bot answers word by word: your words back,
then how many there were and how much of the conversation it was given as context. Swap its body
for a call to your model and stream the model's tokens instead. Run:

    .venv/bin/python examples/echo_agent.py                # serve over WAMP until Ctrl-C
    .venv/bin/python examples/echo_agent.py --http         # serve over HTTP instead
    .venv/bin/python examples/echo_agent.py --self-test    # also ask it once as alice, then exit

then chat with it: `.venv/bin/python examples/python_cli_chat.py --tenant bots --user alice
--token bots-alice` and send to `echo` (or mention @echo / write "echo:" in a group).
The admin secret is MICS_ADMIN_SECRET or the embedded default's development secret.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import AsyncIterator
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred

from mics_client.admin import connect_admin
from mics_client.hooks import Hooks, RejectToken
from mics_client.hooks.agents import AgentRequest, agent
from mics_client.hooks.backend import TenantBackend, connect_backend
from mics_client.hooks.http import HookServer
from mics_client.twisted import MicsClient

WORD_DELAY_S = 0.05  # a model takes its time; so does the bot, so the stream is worth watching


class EchoBot(Hooks):
    """Tokens `bots-<user>`; a group `lab` of alice and bob; the agent `echo`."""

    async def auth(self, token: str, device_id: str, tenant_id: str) -> str:
        if not token.startswith("bots-"):
            raise RejectToken("tokens are bots-<user>")
        return token.removeprefix("bots-")

    async def group_members(self, group_id: str, from_user_id: str, tenant_id: str) -> list[str]:
        return ["alice", "bob"] if group_id == "lab" else []

    @agent("echo")
    async def echo(self, request: AgentRequest) -> AsyncIterator[str]:
        from twisted.internet import reactor

        words = request.text.split()
        answer = [*words, "—", f"{len(words)} words,", f"{len(request.context)} earlier in this chat."]
        for n, word in enumerate(answer):
            if n:
                await task.deferLater(reactor, WORD_DELAY_S, lambda: None)
            yield word if n == 0 else " " + word  # each piece reaches the chat at once


class EchoBackend(EchoBot, TenantBackend):
    """The same bot served over WAMP."""


def agent_config(url: str | None) -> dict[str, Any]:
    config = {"agent_id": "echo", "name": "Echo", "description": "Says your words back, then counts them",
              "keywords": ["echo:"], "transport": "http" if url else "wamp"}  # fmt: skip
    return {**config, "url": url} if url else config


async def self_test(url: str, tenant: str) -> None:
    """Ask the bot once as alice and print its answer as it streams."""
    alice = MicsClient(url, tenant, "bots-alice", "example")
    await alice.connect()
    ack = await alice.send("echo", {"text": "hello streaming world"})
    stream = alice.stream(ack.agents[0].stream_id)
    async for message in stream:
        if message.type == "agent_chunk":
            print(f"self-test: chunk {message.chunk_seq}: {message.delta!r}")
    print(f"self-test: final {stream.final.type if stream.final else None}: {stream.text!r}")
    await alice.close()


async def main(reactor: Any, args: argparse.Namespace) -> None:
    admin = await connect_admin(args.url, args.admin_secret)
    stopped: Deferred[Any]
    if args.http:
        server = HookServer(EchoBot(), args.secret, port=args.port)
        await admin.upsert_tenant(args.tenant, secret=args.secret, hook_transport="http", hook_base_url=server.base_url,
                                  agents=[agent_config(f"{server.base_url}agents/echo")])  # fmt: skip
        print(f"agent echo for tenant {args.tenant!r} at {server.base_url}agents/echo")
        stopped = Deferred()
    else:
        await admin.upsert_tenant(args.tenant, secret=args.secret, hook_transport="wamp", agents=[agent_config(None)])
        backend = await connect_backend(args.url, args.tenant, args.secret, EchoBackend)
        print(f"agent echo for tenant {args.tenant!r} served over WAMP")
        stopped = backend.left
    if args.self_test:
        await self_test(args.url, args.tenant)
        admin.leave()
        return
    await stopped


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://127.0.0.1:8080/ws")
    parser.add_argument("--tenant", default="bots")
    parser.add_argument("--secret", default="bots-secret-change-me-0123456789")
    parser.add_argument("--admin-secret", default=os.environ.get("MICS_ADMIN_SECRET", "dev-admin-secret"))
    parser.add_argument("--http", action="store_true", help="serve the agent over HTTP (NDJSON) instead of WAMP")
    parser.add_argument("--port", type=int, default=0, help="with --http: the port (0: any free one)")
    parser.add_argument("--self-test", action="store_true")
    task.react(lambda reactor: ensureDeferred(main(reactor, parser.parse_args())))
