"""The two routers under test: a MICS node (the real config, via the test harness) and a raw
Crossbar node (one router worker, one realm, static ticket auth, same WebSocket options).

Both are timed from process spawn: to HTTP ready, and (with a probe process) to a first join.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from bench.common import ROOT
from harness import ADMIN_SECRET, ManagedProcess, free_port, http_get

RAW_REALM = "bench"


@dataclass
class Router:
    """A node under test and the process that routes (its router worker)."""

    system: str  # "mics" | "raw"
    url: str
    http: str
    process: ManagedProcess
    startup: dict[str, float] = field(default_factory=dict)
    _worker: psutil.Process | None = None
    proxy: psutil.Process | None = None  # the proxy worker in front of the router worker, if any

    @property
    def worker(self) -> psutil.Process:
        """The router worker: the controller's child that does the routing."""
        if self._worker is None:
            children = psutil.Process(self.process.proc.pid).children(recursive=True)
            workers = [c for c in children if "crossbar" in " ".join(c.cmdline())] or children
            self._worker = max(workers, key=lambda c: c.memory_info().rss)
        return self._worker

    def stop(self) -> None:
        self.process.stop()


def _probe(url: str, realm: str, ticket: str, authid: str | None) -> subprocess.Popen[str]:
    """A child that retries a join every 20 ms and prints the wall time of the first success."""
    args = json.dumps({"url": url, "realm": realm, "ticket": ticket, "authid": authid})
    return subprocess.Popen([sys.executable, "-m", "bench.probe", args], cwd=str(ROOT), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)  # fmt: skip


def _first_join(probe: subprocess.Popen[str], spawned: float) -> float | None:
    try:
        out, _ = probe.communicate(timeout=60)
        return round(float(out.strip().splitlines()[-1]) - spawned, 3)
    except Exception:
        probe.kill()
        return None


def start_mics(tmp: Path, tenants: dict[str, Any], node_id: str = "bench", env: dict[str, str] | None = None) -> Router:
    """A MICS node from the real router config plus the bench tenants (like tests/harness.start_node,
    but spawned here so a probe can time the first join, into the demo tenant, from the spawn).
    `env` adds MICS_* settings (e.g. MICS_REDIS_URL for the cluster scenario)."""
    from mics.cli import crossbar_command, effective_config, write_node_dir

    base = json.loads((ROOT / "router/.crossbar/config.json").read_text())
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MICS_")}, **(env or {})}
    settings = {"admin_secret": ADMIN_SECRET, "data_dir": str(tmp / node_id), "port": port, "node_id": node_id}
    cbdir = write_node_dir(effective_config(base, env, tenants=tenants, node=settings))
    url = f"ws://127.0.0.1:{port}/ws"
    spawned = time.time()
    proc = ManagedProcess(node_id, crossbar_command(cbdir, "warn"), tmp / f"{node_id}.log", env=env)
    probe = _probe(url, "demo", "demo-alice", None)
    try:
        proc.wait_ready(lambda: http_get(f"http://127.0.0.1:{port}/ready", 0.5)[0] == 200)
    except Exception:
        probe.kill()
        proc.stop()
        raise
    ready = time.time() - spawned
    router = Router("mics", url, f"http://127.0.0.1:{port}", proc)
    router.startup = {"ready_s": round(ready, 3), "first_join_s": _first_join(probe, spawned) or -1.0}
    return router


def raw_config(port: int, users: list[str]) -> dict[str, Any]:
    principals = {u: {"ticket": f"tok-{u}", "role": "user"} for u in users}
    allow = {"call": True, "register": True, "publish": True, "subscribe": True}
    return {
        "version": 2,
        "controller": {},
        "workers": [
            {
                "type": "router",
                "id": "router1",
                "options": {"title": "raw-router"},
                "realms": [
                    {
                        "name": RAW_REALM,
                        "roles": [
                            {
                                "name": "user",
                                "permissions": [
                                    {
                                        "uri": "",
                                        "match": "prefix",
                                        "allow": allow,
                                        "disclose": {"caller": False},
                                        "cache": True,
                                    }
                                ],
                            }
                        ],
                    }
                ],
                "transports": [
                    {
                        "type": "web",
                        "endpoint": {"type": "tcp", "port": port, "backlog": 1024},
                        "paths": {
                            "/": {"type": "json", "value": {"status": "ready"}},
                            "ws": {
                                "type": "websocket",
                                "serializers": ["json", "msgpack", "cbor"],
                                "options": {
                                    "max_message_size": 1048576,
                                    "open_handshake_timeout": 10000,
                                    "auto_ping_interval": 30000,
                                    "auto_ping_timeout": 10000,
                                },
                                "auth": {"ticket": {"type": "static", "principals": principals}},
                            },
                        },
                    }
                ],
            }
        ],
    }


def proxied_config(port: int, users: list[str], socket: Path) -> dict[str, Any]:
    """`raw_config`'s realm behind a Crossbar proxy worker (crossbar-notes section 6): the proxy
    terminates the clients' WebSockets (and their ticket auth) and forwards each session over its own
    RawSocket connection (a Unix socket, cbor) to the router worker."""
    config = raw_config(port, users)
    router = config["workers"][0]
    web = router["transports"][0]
    router["transports"] = [{"type": "rawsocket", "endpoint": {"type": "unix", "path": str(socket)},
                             "serializers": ["cbor"], "auth": {"anonymous-proxy": {"type": "static"}}}]  # fmt: skip
    backend = {"transport": {"type": "rawsocket", "endpoint": {"type": "unix", "path": str(socket)},
                             "url": "ws://localhost", "serializer": "cbor"},
               "auth": {"anonymous-proxy": {"type": "static"}}}  # fmt: skip
    proxy = {
        "type": "proxy",
        "id": "proxy1",
        "options": {"title": "raw-proxy"},
        "connections": {"conn1": backend},
        "routes": {RAW_REALM: {"user": "conn1"}},
        "transports": [{"type": "web", "endpoint": web["endpoint"], "paths": web["paths"]}],
    }
    config["workers"].append(proxy)
    return config


def start_raw(tmp: Path, users: list[str], proxied: bool = False) -> Router:
    """A plain Crossbar node; ready = its web transport answers, then a probe joins. `proxied`: the
    router worker behind a proxy worker (`proxied_config`); `Router.proxy` is then the proxy's process."""
    from mics.cli import crossbar_command

    port = free_port()
    name = "raw-proxied" if proxied else "raw"
    cbdir = tmp / name / ".crossbar"
    cbdir.mkdir(parents=True, exist_ok=True)
    config = proxied_config(port, users, cbdir / "router.sock") if proxied else raw_config(port, users)
    (cbdir / "config.json").write_text(json.dumps(config))
    url = f"ws://127.0.0.1:{port}/ws"
    spawned = time.time()
    proc = ManagedProcess(name, crossbar_command(cbdir, "warn"), tmp / f"{name}.log")
    probe = _probe(url, RAW_REALM, f"tok-{users[0]}", users[0])
    try:
        proc.wait_ready(lambda: http_get(f"http://127.0.0.1:{port}/", 0.5)[0] != 0)  # the web transport answers
    except Exception:
        probe.kill()
        proc.stop()
        raise
    ready = time.time() - spawned
    joined = _first_join(probe, spawned)
    router = Router("raw", url, f"http://127.0.0.1:{port}", proc)
    router.startup = {"ready_s": round(ready, 3), "first_join_s": joined or -1.0}
    if proxied:  # the workers by their process titles
        children = psutil.Process(proc.proc.pid).children()
        router._worker = next(c for c in children if "raw-router" in " ".join(c.cmdline()))
        router.proxy = next(c for c in children if "raw-proxy" in " ".join(c.cmdline()))
    return router
