"""A load-generator process: opens user sessions, then runs the steps the suite sends it.

One JSON command per stdin line, one JSON reply per stdout line (nothing else is printed there).
The same code drives MICS (`mics.message.send` CALL, delivery as an inbox EVENT) and raw Crossbar
(PUBLISH to the same kind of topic), so both sides pay the same client costs. Latency = receive
time - send time written in the body; generators on one host share the clock.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from autobahn.wamp.types import PublishOptions, SubscribeOptions
from twisted.internet import reactor, stdio
from twisted.internet.defer import Deferred, DeferredSemaphore, gatherResults
from twisted.protocols.basic import LineReceiver

from bench.common import raise_fd_limit  # first: puts tests/ on sys.path
from wamp_clients import JoinRefused, TestSession, connect, sleep

TICK_S = 0.002
QUIET_S = 0.3
PAD = "x" * 150  # with the timestamps and step id: a ~200 byte body, like a short chat line


class Generator:
    """The sessions of this process and the step being measured."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        self.system: str = spec["system"]  # "mics" | "raw"
        self.users: list[str] = spec["users"]
        self.peers: list[str] = spec.get("peers") or []
        self.sessions: list[TestSession] = []
        self.step = -1
        self.lat_us: list[int] = []
        self.recv_window = 0
        self.window_end = 0.0
        self.last_recv = 0.0
        self.sent = 0
        self.errors = 0
        self.outstanding = 0
        self.join_lat_ms: list[float] = []
        self.refused: dict[str, int] = {}
        self.presence_events = 0
        # agents (section 12): per chunk, agent send -> client receive; per stream, trigger -> first chunk
        self.chunk_lat_us: list[int] = []
        self.first_chunk_lat_us: list[int] = []
        self.trigger_to_first_us: list[int] = []
        self.finals = 0

    # -- sessions ------------------------------------------------------------------------------------
    async def _join(self, user: str) -> TestSession:
        spec = self.spec
        t = time.perf_counter()
        session = await connect(
            spec["url"],
            spec["realm"],
            authmethod="ticket",
            ticket=f"tok-{user}",
            authid=user if self.system == "raw" else None,
            authextra={"device_id": "d1"},
            serializer=spec["serializer"],
            timeout=60,
        )
        self.join_lat_ms.append((time.perf_counter() - t) * 1000)
        topic = spec.get("subscribe")
        if topic == "inbox":
            await session.subscribe(self._on_event, f"mics.inbox.{user}")
        elif topic:
            await session.subscribe(self._on_event, topic, options=SubscribeOptions(match="exact"))
        return session

    async def _try_join(self, user: str) -> TestSession | None:
        try:
            return await self._join(user)
        except JoinRefused as e:  # counted and reported: a refused join is a result, not a crash
            self.refused[e.reason] = self.refused.get(e.reason, 0) + 1
            return None

    async def open(self) -> dict[str, Any]:
        sem = DeferredSemaphore(self.spec.get("concurrency", 50))
        t0 = time.time()
        joined = await gatherResults([sem.run(self._try_join, u) for u in self.users], consumeErrors=True)
        t1 = time.time()
        self.sessions = [s for s in joined if s is not None]
        return {"joined": len(self.sessions), "refused": self.refused, "t_start": t0, "t_end": t1,
                "join_lat_ms": self.join_lat_ms}  # fmt: skip

    async def close(self) -> dict[str, Any]:
        await gatherResults([Deferred.fromCoroutine(s.close()) for s in self.sessions], consumeErrors=True)
        n, self.sessions = len(self.sessions), []
        return {"closed": n}

    # -- receiving -----------------------------------------------------------------------------------
    def _on_event(self, *args: Any, **kwargs: Any) -> None:
        if "devices" in kwargs and "online" in kwargs:  # a presence event (section 11)
            self.presence_events += 1
            return
        body = kwargs.get("body")
        if isinstance(body, dict) and ("delta" in body or "done" in body):
            self._on_agent_event(body)
            return
        if not isinstance(body, dict) or body.get("s") != self.step:
            return
        now = time.time()
        self.lat_us.append(int((now - body["t"]) * 1e6))
        self.last_recv = now
        if now <= self.window_end:
            self.recv_window += 1

    # -- sending -------------------------------------------------------------------------------------
    def _body(self) -> dict[str, Any]:
        return {"t": time.time(), "s": self.step, "p": PAD}

    def _done(self, _: Any) -> None:
        self.outstanding -= 1

    def _failed(self, _f: Any) -> None:
        self.outstanding -= 1
        self.errors += 1

    def _send_p2p(self, i: int) -> None:
        sessions = self.sessions
        peers = self.peers  # cluster runs: recipients connected to another node
        session = sessions[i % len(sessions)]
        to = peers[i % len(peers)] if peers else self.users[(i + 1) % len(sessions)]
        if self.system == "mics":
            self.outstanding += 1
            session.call("mics.message.send", to_user_id=to, body=self._body()).addCallbacks(self._done, self._failed)
        else:
            session.publish(f"mics.inbox.{to}", body=self._body())

    def _send_group(self, i: int, cmd: dict[str, Any]) -> None:
        session = self.sessions[i % cmd["senders"]]
        if self.system == "mics":
            self.outstanding += 1
            d = session.call("mics.group.send", group_id=cmd["group"], body=self._body())
            d.addCallbacks(self._done, self._failed)
        else:
            options = PublishOptions(eligible_authid=cmd["members"])
            session.publish(f"mics.group.{cmd['group']}", options=options, body=self._body())

    async def run_step(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Send at a fixed rate (open loop) for `duration`, then wait for stragglers."""
        self.step = cmd["step"]
        self.lat_us, self.recv_window, self.sent, self.errors = [], 0, 0, 0
        rate, duration = float(cmd.get("rate", 0)), float(cmd["duration"])
        send = self._send_p2p if cmd["kind"] == "p2p" else (lambda i: self._send_group(i, cmd))
        t0 = time.time()
        self.window_end = t0 + duration
        self.last_recv = t0
        if rate > 0:
            while True:
                now = time.time()
                if now >= self.window_end:
                    break
                due = int(rate * (now - t0)) - self.sent
                for _ in range(due):
                    send(self.sent)
                    self.sent += 1
                await sleep(TICK_S)
        else:
            await sleep(duration)
        t_sent = time.time()
        drain_until = t_sent + float(cmd.get("drain", 3.0))
        while time.time() < drain_until:
            if self.outstanding <= 0 and time.time() - max(self.last_recv, t_sent) > QUIET_S:
                break
            await sleep(0.05)
        return {
            "sent": self.sent,
            "errors": self.errors,
            "outstanding": self.outstanding,
            "received": len(self.lat_us),
            "received_in_window": self.recv_window,
            "t0": t0,
            "t_sent": t_sent,
            "lat_us": self.lat_us,
        }

    # -- agents (section 12) -------------------------------------------------------------------------
    def _on_agent_event(self, body: dict[str, Any]) -> None:
        if "done" in body:
            self.finals += 1
            return
        delta = body["delta"]
        if delta.get("s") != self.step:
            return
        now = time.time()
        self.chunk_lat_us.append(int((now - delta["t"]) * 1e6))
        if delta["n"] == 1:
            self.first_chunk_lat_us.append(int((now - delta["t"]) * 1e6))
            self.trigger_to_first_us.append(int((now - delta["t0"]) * 1e6))

    async def agents(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Each session asks the agent once, all at the same time: as many answers stream at once."""
        self.step = cmd["step"]
        self.chunk_lat_us, self.first_chunk_lat_us, self.trigger_to_first_us = [], [], []
        self.finals, self.sent, self.errors = 0, 0, 0
        chunks, interval, spread = int(cmd["chunks"]), float(cmd["interval"]), float(cmd.get("spread_s", 0))

        def ask(session: TestSession) -> None:
            body = {"t0": time.time(), "s": self.step, "chunks": chunks, "interval": interval}
            if self.system == "mics":
                d = session.call("mics.message.send", to_user_id=cmd["agent"], body=body)
            else:
                d = session.call("bench.agent", to=session.welcome.authid, t0=body["t0"], s=self.step,
                                 chunks=chunks, interval=interval)  # fmt: skip
            self.outstanding += 1
            self.sent += 1
            d.addCallbacks(self._done, self._failed)

        t_start = time.time()
        n = len(self.sessions)
        for i, session in enumerate(self.sessions):  # all at once, or spread over `spread_s`
            if spread:
                reactor.callLater(spread * i / n, ask, session)
            else:
                ask(session)
        deadline = time.time() + spread + chunks * interval + float(cmd.get("drain", 10.0))
        while self.finals < len(self.sessions) and time.time() < deadline:
            await sleep(0.02)
        return {"sent": self.sent, "errors": self.errors, "finals": self.finals, "seconds": time.time() - t_start,
                "chunk_lat_us": self.chunk_lat_us, "first_chunk_lat_us": self.first_chunk_lat_us,
                "trigger_to_first_us": self.trigger_to_first_us}  # fmt: skip

    # -- presence ------------------------------------------------------------------------------------
    async def toggle(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """`n` presence changes of user `target` one after the other: MICS, a device of `target` joins
        or leaves (each is one change); raw Crossbar, the first session publishes what MICS would."""
        target, n = cmd["target"], int(cmd["n"])
        t = time.perf_counter()
        if self.system == "raw":
            session = self.sessions[0]
            options = PublishOptions(acknowledge=True)
            for i in range(n):
                event = {"user_id": target, "online": i % 2 == 0, "devices": ["d1"] if i % 2 == 0 else [], "ts": 0}
                await session.publish(f"mics.presence.{target}", options=options, **event)
        else:
            device: TestSession | None = None
            for _ in range(n):
                if device is None:
                    device = await connect(self.spec["url"], self.spec["realm"], authmethod="ticket",
                                           ticket=f"tok-{target}", authextra={"device_id": "d1"},
                                           serializer=self.spec["serializer"], timeout=60)  # fmt: skip
                else:
                    await device.close()
                    device = None
            if device is not None:
                await device.close()
        return {"changes": n, "seconds": time.perf_counter() - t}

    def count(self, cmd: dict[str, Any]) -> dict[str, Any]:
        n, self.presence_events = self.presence_events, 0
        return {"presence_events": n}

    # -- sync ----------------------------------------------------------------------------------------
    async def fill(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Send `n` messages to a user who is offline, so MICS holds them for a later sync."""
        sem = DeferredSemaphore(50)
        session = self.sessions[0]
        body = {"t": 0.0, "s": -1, "p": PAD}
        t = time.time()
        await gatherResults(
            [sem.run(session.call, "mics.message.send", to_user_id=cmd["to"], body=body) for _ in range(cmd["n"])],
            consumeErrors=True,
        )
        return {"filled": cmd["n"], "seconds": time.time() - t}

    async def serve_sync(self, cmd: dict[str, Any]) -> dict[str, Any]:
        """Raw baseline: a client callee answers with `n` Message-shaped dicts."""
        held = [
            {"msg_id": f"m{i:08d}", "type": "chat", "tenant_id": "bench", "from_user_id": "filler",
             "from_device_id": "d1", "to_user_id": "syncer", "body": {"t": 0.0, "s": -1, "p": PAD},
             "seq": i + 1, "ts": 0, "trace_id": f"m{i:08d}"}
            for i in range(cmd["n"])
        ]  # fmt: skip

        def sync(**_: Any) -> dict[str, Any]:
            return {"messages": held, "last_seq": len(held), "epoch": "e", "complete": True}

        await self.sessions[cmd.get("index", 0)].register(sync, "bench.sync")
        return {"registered": True}

    async def sync(self, cmd: dict[str, Any]) -> dict[str, Any]:
        procedure = "mics.inbox.sync" if self.system == "mics" else "bench.sync"
        times, count = [], 0
        session = self.sessions[cmd.get("index", 0)]
        for _ in range(cmd["repeat"]):
            t = time.perf_counter()
            result = await session.call(procedure, since_seq=0)
            count = len(result["messages"])
            while result.get("more"):  # MICS answers a page at a time: one catch-up is every page, as the SDKs do
                result = await session.call(procedure, since_seq=result["last_seq"], epoch=result["epoch"])
                count += len(result["messages"])
            times.append((time.perf_counter() - t) * 1000)
        return {"sync_ms": times, "messages": count}


class Control(LineReceiver):
    delimiter = b"\n"
    MAX_LENGTH = 1 << 24  # a group step carries up to 10,000 member ids

    def __init__(self, gen: Generator) -> None:
        self.gen = gen

    def connectionMade(self) -> None:
        self.sendLine(b'{"started": true}')  # sessions open on "open", so all generators join together

    def lineReceived(self, line: bytes) -> None:
        cmd = json.loads(line)
        name = cmd["cmd"]
        if name == "quit":
            reactor.stop()
            return
        gen = self.gen
        handlers = {"open": lambda _c: gen.open(), "close": lambda _c: gen.close(), "step": gen.run_step,
                    "fill": gen.fill, "serve_sync": gen.serve_sync, "sync": gen.sync, "toggle": gen.toggle,
                    "count": lambda c: _now(gen.count(c)), "agents": gen.agents}  # fmt: skip
        handler = handlers[name]
        Deferred.fromCoroutine(self._reply(handler(cmd)))

    async def _reply(self, work: Any) -> None:
        try:
            out = await work
        except Exception as e:  # the suite reports the failure; the process keeps serving
            out = {"error": f"{type(e).__name__}: {e}"}
        self.sendLine(json.dumps(out).encode())


async def _now(value: dict[str, Any]) -> dict[str, Any]:
    return value


def main() -> None:
    raise_fd_limit()
    spec = json.loads(sys.argv[1])
    stdio.StandardIO(Control(Generator(spec)))
    reactor.run()  # until "quit"


if __name__ == "__main__":
    main()
