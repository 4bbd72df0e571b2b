"""What the cross-node relay adds to each streamed agent chunk (docs/agents.md, "Cluster mode").

Two real nodes on one redis-server; a tenant backend on node B serves `mics.agent.bench_bot` with
progressive results, each delta stamped with the time the agent sent it. Alice on node B triggers it
(the call stays on B), Bob on node A triggers it (node A calls it through the relay: each progressive
result crosses Redis to A, is put in order there and delivered to Bob). Each chunk's delay from the
agent's send to the user's client, same node against other node; the difference is the relay's cost.

    .venv/bin/python -m bench.agent_relay [--streams 10] [--chunks 100] [--interval-ms 5]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

from autobahn.wamp.types import CallResult, RegisterOptions
from twisted.internet import reactor, task
from twisted.internet.defer import Deferred

from bench.common import percentile  # first: puts tests/ on sys.path

# isort: split
from agent_servers import agent_config

from cluster_tenants import ClusterTenant
from harness import start_nodes, start_redis
from wamp_clients import TestSession, backend, sleep, user

AGENT_ID = "bench_bot"


async def _agent(url: str, tenant: ClusterTenant) -> TestSession:
    """The tenant backend on node B: streams `chunks` deltas `interval` s apart, each stamped."""
    session = await backend(url, tenant.tenant_id, tenant.secret, authid="backend-agent", serializer="msgpack")

    async def answer(details: Any = None, message: Any = None, **_: Any) -> Any:
        body = message["body"]
        for n in range(1, body["chunks"] + 1):
            details.progress(delta={"t": time.time(), "n": n})
            await sleep(body["interval"])
        return CallResult(body={"done": body["chunks"]})

    await session.register(answer, f"mics.agent.{AGENT_ID}", options=RegisterOptions(details_arg="details"))
    tenant.sessions.append(session)
    return session


class Listener:
    """A user's inbox events with the time each arrived, and a Deferred per stream for its final message."""

    def __init__(self, session: TestSession, user_id: str) -> None:
        self.session, self.user_id = session, user_id
        self.chunks: dict[str, list[tuple[float, dict[str, Any]]]] = {}
        self.finals: dict[str, Deferred[dict[str, Any]]] = {}

    async def listen(self) -> None:
        await self.session.subscribe(self._event, f"mics.inbox.{self.user_id}")

    def _event(self, **event: Any) -> None:
        stream_id = event.get("stream_id")
        if stream_id is None:
            return
        if event["type"] == "agent_chunk":
            self.chunks.setdefault(stream_id, []).append((time.time(), event))
        else:
            self.finals.setdefault(stream_id, Deferred()).callback(event)

    async def streams(self, count: int, chunks: int, interval: float) -> dict[str, Any]:
        """`count` answers one after another: every chunk's delay from the agent's send (ms)."""
        delays: list[float] = []
        misordered = failed = 0
        for _ in range(count):
            ack = await self.session.call("mics.message.send", to_user_id=AGENT_ID,
                                          body={"chunks": chunks, "interval": interval})  # fmt: skip
            stream_id = ack["agents"][0]["stream_id"]
            final = await self.finals.setdefault(stream_id, Deferred()).addTimeout(60, reactor)
            failed += final["type"] != "chat"
            got = self.chunks.pop(stream_id, [])
            misordered += sum(1 for n, (_t, c) in enumerate(got, 1) if c["chunk_seq"] != n)
            delays.extend((arrived - c["body"]["delta"]["t"]) * 1000 for arrived, c in got)
        delays.sort()
        return {"chunks": len(delays), "misordered": misordered, "failed": failed,
                **{f"p{q}_ms": round(percentile(delays, q) or 0, 2) for q in (50, 90, 99)}}  # fmt: skip


async def main(reactor: Any, args: argparse.Namespace) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="mics-agent-relay-"))
    (tmp / "redis").mkdir()
    redis, url = start_redis(tmp / "redis")
    a, b = start_nodes(tmp, ["ra", "rb"], {"MICS_REDIS_URL": url})
    try:
        agents = [agent_config(AGENT_ID, "wamp", None, max_qps=1000, timeout_ms=600_000)]
        tenant = await ClusterTenant.create(a, "http", prefix="bar", agents=agents)
        await _agent(b.url, tenant)
        await sleep(0.5)  # node B's announcement of the agent reaches node A
        results = {}
        for name, node, user_id in (("same node", b, "alice"), ("other node", a, "bob")):
            session = await user(node.url, tenant.tenant_id, f"tok-{user_id}", "d1", serializer="msgpack")
            tenant.sessions.append(session)
            listener = Listener(session, user_id)
            await listener.listen()
            await listener.streams(2, 10, 0.001)  # warm up
            results[name] = await listener.streams(args.streams, args.chunks, args.interval_ms / 1000)
        for name, row in results.items():
            print(f"{name:>10}: {row}")
        same, other = results["same node"], results["other node"]
        print(f"added per chunk across nodes: p50 {other['p50_ms'] - same['p50_ms']:.2f} ms, "
              f"p99 {other['p99_ms'] - same['p99_ms']:.2f} ms")  # fmt: skip
        await tenant.close()
    finally:
        for node in (a, b):
            node.process.stop()
        redis.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--chunks", type=int, default=100)
    parser.add_argument("--interval-ms", type=float, default=5.0)
    task.react(main, [parser.parse_args()])
