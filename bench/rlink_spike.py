"""Crossbar's router-to-router links (rlinks), measured: do they carry what cluster mode needs?

Two plain Crossbar nodes on loopback (standalone `crossbar start`), realm `realm1` on both, each
with an rlink to the other (node keys, cryptosign between the nodes, local invocations and events
forwarded). A client on node A registers a procedure and publishes; a client on node B calls it and
subscribes. Prints what the callee sees of the caller, what happens to an error, to
`wamp.session.get(caller)`, to prefix subscriptions and eligible_authid, and the latencies.

    .venv/bin/python -m bench.rlink_spike

docs/architecture.md ("Cross-node WAMP") has the findings and why MICS forwards over Redis instead.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import ROOT, percentile

REALM = "realm1"
ALL = {"uri": "", "match": "prefix", "allow": {"call": True, "register": True, "publish": True, "subscribe": True},
       "disclose": {"caller": True, "publisher": True}, "cache": True}  # fmt: skip
ROUNDS = 300


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _node_key(cbdir: Path) -> str:
    from crossbar.common.key import _maybe_generate_node_key

    _maybe_generate_node_key(str(cbdir))
    line = next(ln for ln in (cbdir / "key.pub").read_text().splitlines() if ln.startswith("public-key-ed25519:"))
    return line.split(":", 1)[1].strip()


def _config(port: int, me: str, other: str, other_port: int, other_key: str) -> dict[str, Any]:
    link = {"id": f"to_{other}", "realm": REALM, "authid": me,
            "transport": {"type": "websocket", "endpoint": {"type": "tcp", "host": "127.0.0.1", "port": other_port},
                          "url": f"ws://127.0.0.1:{other_port}/ws", "serializers": ["cbor"]},
            "forward_local_events": True, "forward_remote_events": False,
            "forward_local_invocations": True, "forward_remote_invocations": False}  # fmt: skip
    auth = {"anonymous": {"type": "static", "role": "anonymous"},
            "cryptosign": {"type": "static",
                           "principals": {other: {"realm": REALM, "role": "rlink", "authorized_keys": [other_key]}}}}
    return {"version": 2, "controller": {"id": me}, "workers": [{
        "type": "router", "id": "router1",
        "realms": [{"name": REALM, "id": REALM, "rlinks": [link],
                    "roles": [{"name": "anonymous", "permissions": [ALL]}, {"name": "rlink", "permissions": [ALL]}]}],
        "transports": [{"type": "websocket", "serializers": ["json", "cbor"], "auth": auth,
                        "endpoint": {"type": "tcp", "interface": "127.0.0.1", "port": port}}]}]}  # fmt: skip


async def _measure(port_a: int, port_b: int) -> dict[str, Any]:
    from autobahn.twisted.wamp import ApplicationSession
    from autobahn.twisted.websocket import WampWebSocketClientFactory
    from autobahn.wamp.exception import ApplicationError
    from autobahn.wamp.types import ComponentConfig, PublishOptions, RegisterOptions, SubscribeOptions
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.internet.endpoints import TCP4ClientEndpoint, connectProtocol
    from twisted.internet.task import deferLater

    class Client(ApplicationSession):
        def onJoin(self, details: Any) -> None:
            self.config.extra.callback(self)

    async def join(port: int) -> Any:
        joined: Deferred[Any] = Deferred()
        factory = WampWebSocketClientFactory(lambda: Client(ComponentConfig(REALM, joined)),
                                             url=f"ws://127.0.0.1:{port}/ws")  # fmt: skip
        await connectProtocol(TCP4ClientEndpoint(reactor, "127.0.0.1", port), factory.buildProtocol(None))
        return await joined

    def pause(s: float) -> Deferred[None]:
        return deferLater(reactor, s, lambda: None)

    deadline = time.monotonic() + 60
    while True:
        try:
            callee, caller = await join(port_a), await join(port_b)
            break
        except Exception:
            if time.monotonic() > deadline:
                raise
            await pause(0.5)
    seen: list[tuple[Any, ...]] = []

    def echo(*args: Any, details: Any = None, **kwargs: Any) -> dict[str, bool]:
        seen.append((details.caller, details.caller_authid, details.caller_authrole))
        if kwargs.get("fail"):
            raise ApplicationError("tenant.error.nope", "refused", code=7)
        return {"ok": True}

    await callee.register(echo, "tenant.echo", options=RegisterOptions(details_arg="details"))
    out: dict[str, Any] = {"caller": {"session": caller._session_id, "authid": caller._authid}}
    for _ in range(120):  # the link forwards the registration after a moment
        try:
            out["result"] = await caller.call("tenant.echo")
            break
        except ApplicationError:
            await pause(0.25)
    out["callee_saw"] = dict(zip(("session", "authid", "authrole"), seen[-1], strict=True)) if seen else None
    try:
        out["error_call"] = {"answered": repr(await caller.call("tenant.echo", fail=True))}
    except ApplicationError as e:
        out["error_call"] = {"error": e.error}
    try:
        info = await callee.call("wamp.session.get", seen[-1][0])
        out["session_get"] = {k: info.get(k) for k in ("authid", "authrole")}
    except ApplicationError as e:
        out["session_get"] = {"error": e.error}
    out["call_ms"] = {}
    for name, session in (("via rlink", caller), ("same node", callee)):
        lat = []
        for _ in range(ROUNDS):
            t = time.perf_counter()
            await session.call("tenant.echo")
            lat.append((time.perf_counter() - t) * 1000)
        lat.sort()
        out["call_ms"][name] = {"p50": round(percentile(lat, 50) or 0, 2), "p99": round(percentile(lat, 99) or 0, 2)}
    events: list[tuple[float, dict[str, Any]]] = []
    waiter: list[Deferred[None]] = []

    def on_event(*args: Any, **kwargs: Any) -> None:
        events.append((time.perf_counter(), kwargs))
        if waiter and not waiter[-1].called:
            waiter[-1].callback(None)

    prefixed: list[dict[str, Any]] = []
    await caller.subscribe(on_event, "tenant.news")
    prefix = SubscribeOptions(match="prefix")
    await caller.subscribe(lambda *a, **kw: prefixed.append(kw), "tenant.pre.", options=prefix)
    await pause(1.0)
    publisher = await join(port_a)
    ack = PublishOptions(acknowledge=True)
    await publisher.publish("tenant.news", n=0, options=ack)
    await publisher.publish("tenant.pre.x", n=1, options=ack)
    only_caller = PublishOptions(acknowledge=True, eligible_authid=[caller._authid])
    await publisher.publish("tenant.news", n=2, options=only_caller)
    await pause(0.5)
    out["exact_subscription"] = any(kw.get("n") == 0 for _t, kw in events)
    out["prefix_subscription"] = bool(prefixed)
    out["eligible_authid_of_the_subscriber"] = any(kw.get("n") == 2 for _t, kw in events)
    lat = []
    for i in range(ROUNDS):
        waiter.append(Deferred())
        t = time.perf_counter()
        publisher.publish("tenant.news", n=i + 10)
        await waiter[-1]
        lat.append((events[-1][0] - t) * 1000)
    lat.sort()
    out["event_ms"] = {"p50": round(percentile(lat, 50) or 0, 2), "p99": round(percentile(lat, 99) or 0, 2)}
    return out


def main() -> None:
    import txaio

    txaio.use_twisted()
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    tmp = tempfile.TemporaryDirectory()
    dirs = [Path(tmp.name) / n / ".crossbar" for n in ("a", "b")]
    for d in dirs:
        d.mkdir(parents=True)
    keys = [_node_key(d) for d in dirs]
    ports = [_free_port(), _free_port()]
    for i, d in enumerate(dirs):
        other = 1 - i
        config = _config(ports[i], f"node{i}", f"node{other}", ports[other], keys[other])
        (d / "config.json").write_text(json.dumps(config))
    crossbar = str(Path(sys.executable).with_name("crossbar"))
    procs = [subprocess.Popen([crossbar, "start", "--cbdir", str(d), "--loglevel", "warn"], cwd=str(ROOT),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
             for d in dirs]  # fmt: skip

    async def run() -> None:
        try:
            print(json.dumps(await _measure(*ports), indent=2))
        finally:
            for proc in procs:
                os.killpg(proc.pid, signal.SIGTERM)
            for proc in procs:
                proc.wait(20)
            tmp.cleanup()

    task.react(lambda _reactor: Deferred.fromCoroutine(run()))


if __name__ == "__main__":
    main()
