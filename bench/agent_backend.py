"""The bench's AI agent, in its own process (so its CPU is not the router's): a tenant backend serving
`mics.agent.<agent_id>` with progressive results on the MICS node, and, for the raw Crossbar baseline,
a session on the raw router that answers `bench.agent` at once and then publishes the same chunks to
the caller's `mics.inbox.<user>` topic. Either way each chunk carries the time the agent sent it
(`t`), the trigger's time (`t0`, from the message) and its number (`n`), so a client measures the
delivery of every chunk and the time from its trigger to the first one.

One JSON line out when ready; then stdin commands `stats` and `quit`.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from autobahn.wamp.types import CallResult, RegisterOptions
from twisted.internet import reactor, stdio
from twisted.internet.defer import Deferred
from twisted.protocols.basic import LineReceiver

from bench.common import raise_fd_limit  # first: puts tests/ on sys.path
from wamp_clients import backend, connect, sleep

PAD = "x" * 40  # a delta of ~100 bytes with its stamps: a few tokens of text


class Agent(LineReceiver):
    delimiter = b"\n"

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.calls = 0
        self.chunks = 0

    def connectionMade(self) -> None:
        Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        spec = self.spec
        if spec["system"] == "mics":
            session = await backend(spec["url"], spec["tenant"], spec["secret"], authid="backend-agent",
                                    serializer="msgpack")  # fmt: skip
            options = RegisterOptions(details_arg="details")
            await session.register(self._mics_agent, f"mics.agent.{spec['agent_id']}", options=options)
        else:
            session = await connect(spec["url"], spec["realm"], authmethod="ticket", ticket="tok-streamer",
                                    authid="streamer", serializer="msgpack")  # fmt: skip
            await session.register(self._raw_agent, "bench.agent")
        self.session = session
        self.sendLine(json.dumps({"ready": True}).encode())

    def _delta(self, n: int, t0: float, step: int) -> dict[str, Any]:
        self.chunks += 1
        return {"t": time.time(), "t0": t0, "n": n, "s": step, "p": PAD}

    async def _mics_agent(self, details: Any = None, message: Any = None, **_: Any) -> Any:
        """Progressive results through the router-embedded caller (the node)."""
        self.calls += 1
        body = message["body"]
        for n in range(1, body["chunks"] + 1):
            details.progress(delta=self._delta(n, body["t0"], body["s"]))
            await sleep(body["interval"])
        return CallResult(body={"done": body["chunks"]})

    def _raw_agent(self, to: str, t0: float, s: int, chunks: int, interval: float) -> dict[str, Any]:
        """Answer at once, then publish the chunks to the caller's topic (what MICS does for it)."""
        self.calls += 1
        Deferred.fromCoroutine(self._publish(to, t0, s, chunks, interval))
        return {"started": True}

    async def _publish(self, to: str, t0: float, s: int, chunks: int, interval: float) -> None:
        for n in range(1, chunks + 1):
            self.session.publish(f"mics.inbox.{to}", type="agent_chunk", body={"delta": self._delta(n, t0, s)})
            await sleep(interval)
        self.session.publish(f"mics.inbox.{to}", type="chat", body={"done": chunks})

    def lineReceived(self, line: bytes) -> None:
        cmd = json.loads(line)["cmd"]
        if cmd == "stats":
            self.sendLine(json.dumps({"calls": self.calls, "chunks": self.chunks}).encode())
        elif cmd == "quit":
            reactor.stop()


def main() -> None:
    raise_fd_limit()
    stdio.StandardIO(Agent(json.loads(sys.argv[1])))
    reactor.run()


if __name__ == "__main__":
    main()
