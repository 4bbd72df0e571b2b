"""Test harness: real processes on loopback, readiness probes with deadlines, log tails on failure.

- `mics_node`: one Crossbar node per test session, from the real router config (test admin secret,
  a temp data dir, a free port). Tests isolate themselves with a fresh tenant each.
- `start_redis`: a throwaway redis-server for cluster mode and the Redis buffer tests.
- `ManagedProcess`: spawn, probe, kill (SIGTERM, then SIGKILL), keep a log to print on failure.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

ADMIN_SECRET = "test-admin-secret-0123456789"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ManagedProcess:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=str(ROOT)
        )

    def wait_ready(self, probe: Callable[[], bool], timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            if probe():
                return
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{self.tail()}")

    def tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, timeout: float = 10.0) -> int | None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(timeout)
            except (subprocess.TimeoutExpired, ProcessLookupError):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait(5)
        self._log.close()
        return self.proc.returncode


def start_redis(tmp: Path, port: int | None = None, *options: str) -> tuple[ManagedProcess, str]:
    """A throwaway redis-server on a free loopback port (or `port`), persistence off; returns it and its URL.
    `options` are more redis-server arguments (e.g. "--replicaof", "127.0.0.1", "6379")."""
    port = port or free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", str(tmp), *options]  # fmt: skip
    proc = ManagedProcess("redis", argv, tmp / f"redis-{port}.log")
    proc.wait_ready(lambda: _pong(port), timeout=10)
    return proc, f"redis://127.0.0.1:{port}/0"


def _pong(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def redis_cli(port: int, *args: str) -> str:
    """One command through redis-cli (the Debian redis-server package ships it)."""
    done = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10)
    return done.stdout.strip()


@dataclass
class SentinelGroup:
    """A primary, a replica and three sentinels (quorum 2) on loopback: Redis as production runs it."""

    servers: dict[int, ManagedProcess]  # port -> redis-server
    sentinels: dict[int, ManagedProcess]  # port -> redis-sentinel
    master: str

    @property
    def url(self) -> str:
        return "redis+sentinel://" + ",".join(f"127.0.0.1:{p}" for p in self.sentinels) + f"/{self.master}/0"

    def primary_port(self) -> int:
        """The primary as the sentinels see it now."""
        answer = redis_cli(next(iter(self.sentinels)), "SENTINEL", "get-master-addr-by-name", self.master)
        return int(answer.split()[1])

    def replicas_known(self) -> int:
        """Replicas every sentinel knows (a failover can pick them), 0 until the sentinels know each
        other (a failover needs a majority of them)."""
        known = []
        for port in self.sentinels:
            fields = redis_cli(port, "SENTINEL", "master", self.master).split("\n")
            others = int(fields[fields.index("num-other-sentinels") + 1]) if "num-other-sentinels" in fields else 0
            if others < len(self.sentinels) - 1:
                return 0
            known.append(redis_cli(port, "SENTINEL", "replicas", self.master).count("\nslave\n"))
        return min(known)

    def stop(self) -> None:
        for proc in [*self.sentinels.values(), *self.servers.values()]:
            proc.stop()


DOWN_AFTER_MS = 1500  # a primary silent this long is down (production: 5000 or more)


def start_sentinel_group(tmp: Path, master: str = "mics", replicas: int = 2) -> SentinelGroup:
    """redis-server primary + `replicas`, each refusing writes without a replica at most 1 s behind
    (min-replicas-to-write: what docs/operations.md recommends, so a primary cut off from its
    replicas stops acknowledging what a failover would lose), and three sentinels (quorum 2) that
    declare the primary down after DOWN_AFTER_MS. Returns once the sentinels know every replica."""
    guard = ("--min-replicas-to-write", "1", "--min-replicas-max-lag", "1", "--repl-diskless-sync-delay", "0")
    primary_port = free_port()
    servers = {primary_port: start_redis(tmp, primary_port, *guard)[0]}
    for _n in range(replicas):
        port = free_port()
        servers[port] = start_redis(tmp, port, "--replicaof", "127.0.0.1", str(primary_port), *guard)[0]
    sentinels: dict[int, ManagedProcess] = {}
    for _n in range(3):
        port = free_port()
        conf = tmp / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {tmp}\n"
            f"sentinel monitor {master} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {master} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {master} 10000\n"
        )
        proc = ManagedProcess("sentinel", ["redis-server", str(conf), "--sentinel"], tmp / f"sentinel-{port}.log")
        proc.wait_ready(lambda port=port: _pong(port), timeout=10)
        sentinels[port] = proc
    group = SentinelGroup(servers, sentinels, master)
    deadline = time.monotonic() + 15
    while group.replicas_known() < replicas:
        if time.monotonic() > deadline:
            group.stop()
            raise RuntimeError("the sentinels never saw the replica")
        time.sleep(0.1)
    return group


def http_get(url: str, timeout: float = 2.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError:
        return 0, b""


def http_post_json(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    """POST `body`; returns the status and the decoded JSON answer (error answers too)."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=5) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


@dataclass
class Node:
    """A running MICS node under test."""

    port: int
    data_dir: Path
    process: ManagedProcess
    node_id: str

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def start_node(
    tmp: Path, name: str = "node", tenants: dict | None = None, node: dict | None = None, env: dict | None = None
) -> Node:
    """Start a node from the real router config with test settings; waits for /ready.

    `env` adds environment variables for the node process (e.g. tuning knobs)."""
    from mics.cli import crossbar_command, effective_config, write_node_dir

    base = json.loads((ROOT / "router/.crossbar/config.json").read_text())
    port = free_port()
    data_dir = tmp / name
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MICS_")}, **(env or {})}
    settings = {"admin_secret": ADMIN_SECRET, "data_dir": str(data_dir), "port": port, "node_id": f"test-{name}"}
    config = effective_config(base, env, tenants=tenants, node={**settings, **(node or {})})
    cbdir = write_node_dir(config)
    proc = ManagedProcess(name, crossbar_command(cbdir, "warn"), tmp / f"{name}.log", env=env)
    try:
        proc.wait_ready(lambda: http_get(f"http://127.0.0.1:{port}/ready", 0.5)[0] == 200)
    except Exception:
        proc.stop()
        raise
    return Node(port, data_dir, proc, settings["node_id"])


def start_nodes(tmp: Path, names: list[str], env: dict[str, str]) -> list[Node]:
    """Several nodes with the same environment (a cluster); none left running if one fails to start."""
    nodes: list[Node] = []
    try:
        for name in names:
            nodes.append(start_node(tmp, name, env=env))
    except Exception:
        for node in nodes:
            node.process.stop()
        raise
    return nodes
