"""Test harness: real processes on loopback, readiness probes with deadlines, log tails on failure.

- `mics_node`: one Crossbar node per test session, from the real router config (test admin secret,
  a temp data dir, a free port). Tests isolate themselves with a fresh tenant each.
- `start_redis`: a throwaway redis-server for cluster mode and the Redis buffer tests.
- `ManagedProcess`: spawn, probe, kill (SIGTERM, then SIGKILL), keep a log to print on failure.
- `start_listening`: servers bind their ports themselves, so a port picked free may be taken
  before they do; such a start is retried, and a probe that another server answers is not "ready".
"""

from __future__ import annotations

import json
import os
import re
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
_ADDRESS_IN_USE = re.compile(r"address already in use|EADDRINUSE|errno 98", re.IGNORECASE)


def clean_env(**extra: str) -> dict[str, str]:
    """This process's environment without MICS_* settings, plus `extra`."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("MICS_")}, **extra}


def free_port() -> int:
    """A port free right now. A server that binds it itself must be started with `start_listening`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ManagedProcess:
    """A child process with its output in a log file; stopped with SIGTERM, then SIGKILL."""

    def __init__(
        self, name: str, argv: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path = ROOT
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, start_new_session=True, cwd=str(cwd)
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

    def lost_its_port(self) -> bool:
        """It exited because its address was in use."""
        return self.proc.poll() is not None and _ADDRESS_IN_USE.search(self.tail(200)) is not None

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


def start_listening(
    spawn: Callable[[int], ManagedProcess],
    ready: Callable[[int, ManagedProcess], bool],
    port: int | None = None,
    timeout: float = 30.0,
    attempts: int = 5,
) -> tuple[ManagedProcess, int]:
    """Start a server that binds its port itself (Crossbar, redis-server, the Kafka broker).

    Between picking a free port and the server binding it, another process may take it; the server
    then exits saying the address is in use, and it is started again: on a new free port, or, for a
    fixed `port` (a restart on the same address), on that port after a short pause. `ready` must
    also tell our server from another one answering on that port.
    """
    for attempt in range(1, attempts + 1):
        chosen = port or free_port()
        proc = spawn(chosen)
        try:
            proc.wait_ready(lambda chosen=chosen, proc=proc: ready(chosen, proc), timeout)
        except RuntimeError:
            proc.stop()
            if attempt == attempts or not proc.lost_its_port():
                raise
            time.sleep(0.2 * attempt)
            continue
        return proc, chosen
    raise AssertionError("unreachable")


def _redis_pid(port: int) -> int | None:
    """The process id of the redis-server answering on `port` (INFO server), or None."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"INFO server\r\n")
            reply = b""
            while b"process_id:" not in reply or not reply.endswith(b"\r\n"):
                chunk = s.recv(4096)
                if not chunk:
                    break
                reply += chunk
    except OSError:
        return None
    found = re.search(rb"process_id:(\d+)", reply)
    return int(found.group(1)) if found else None


def start_redis(tmp: Path, port: int | None = None, *options: str) -> tuple[ManagedProcess, str]:
    """A throwaway redis-server on a free loopback port (or `port`), persistence off; returns it and its URL.
    `options` are more redis-server arguments (e.g. "--replicaof", "127.0.0.1", "6379")."""

    def spawn(chosen: int) -> ManagedProcess:
        argv = ["redis-server", "--port", str(chosen), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(tmp), *options]  # fmt: skip
        return ManagedProcess("redis", argv, tmp / f"redis-{chosen}.log")

    proc, port = start_listening(spawn, _is_ours, port, timeout=10)
    return proc, f"redis://127.0.0.1:{port}/0"


def _is_ours(port: int, proc: ManagedProcess) -> bool:
    """The redis-server (or sentinel) answering on `port` is the process we started."""
    return _redis_pid(port) == proc.proc.pid


def redis_port(url: str) -> int:
    return int(url.rsplit(":", 1)[1].split("/")[0])


def redis_cli(port: int, *args: str) -> str:
    """One command through redis-cli (the Debian redis-server package ships it)."""
    done = subprocess.run(["redis-cli", "-p", str(port), *args], capture_output=True, text=True, timeout=10)
    return done.stdout.strip()


@dataclass
class SentinelGroup:
    """A primary, replicas and three sentinels (quorum 2) on loopback: Redis as production runs it."""

    servers: dict[int, ManagedProcess]  # port -> redis-server
    sentinels: dict[int, ManagedProcess]  # port -> redis-server --sentinel
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
    primary, url = start_redis(tmp, None, *guard)
    primary_port = redis_port(url)
    servers = {primary_port: primary}
    for _n in range(replicas):
        replica, replica_url = start_redis(tmp, None, "--replicaof", "127.0.0.1", str(primary_port), *guard)
        servers[redis_port(replica_url)] = replica
    sentinels: dict[int, ManagedProcess] = {}

    def spawn(port: int) -> ManagedProcess:
        conf = tmp / f"sentinel-{port}.conf"
        conf.write_text(
            f"port {port}\nbind 127.0.0.1\ndir {tmp}\n"
            f"sentinel monitor {master} 127.0.0.1 {primary_port} 2\n"
            f"sentinel down-after-milliseconds {master} {DOWN_AFTER_MS}\n"
            f"sentinel failover-timeout {master} 10000\n"
        )
        return ManagedProcess("sentinel", ["redis-server", str(conf), "--sentinel"], tmp / f"sentinel-{port}.log")

    for _n in range(3):
        proc, port = start_listening(spawn, _is_ours, timeout=10)
        sentinels[port] = proc
    group = SentinelGroup(servers, sentinels, master)
    deadline = time.monotonic() + 15
    while group.replicas_known() < replicas:
        if time.monotonic() > deadline:
            group.stop()
            raise RuntimeError("the sentinels never saw the replicas")
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


def node_ready(port: int, node_id: str | None = None) -> bool:
    """/ready answers 200, and /health names `node_id` (or `<node_id>-w<n>`), when given: not a node
    that took the port first."""
    if http_get(f"http://127.0.0.1:{port}/ready", 0.5)[0] != 200:
        return False
    if node_id is None:
        return True
    status, body = http_get(f"http://127.0.0.1:{port}/health", 0.5)
    try:
        answered = json.loads(body).get("node_id", "") if status == 200 else ""
    except ValueError:
        return False
    return bool(answered == node_id or answered.startswith(f"{node_id}-w"))


def start_node(
    tmp: Path, name: str = "node", tenants: dict | None = None, node: dict | None = None, env: dict | None = None
) -> Node:
    """Start a node from the real router config with test settings; waits for /ready.

    `env` adds environment variables for the node process (e.g. tuning knobs)."""
    from mics.cli import crossbar_command, effective_config, write_node_dir

    base = json.loads((ROOT / "router/.crossbar/config.json").read_text())
    data_dir = tmp / name
    env = clean_env(**(env or {}))
    node_id = (node or {}).get("node_id", f"test-{name}")

    def spawn(port: int) -> ManagedProcess:
        settings = {"admin_secret": ADMIN_SECRET, "data_dir": str(data_dir), "port": port, "node_id": node_id}
        cbdir = write_node_dir(effective_config(base, env, tenants=tenants, node={**settings, **(node or {})}))
        return ManagedProcess(name, crossbar_command(cbdir, "warn"), tmp / f"{name}.log", env=env)

    proc, port = start_listening(spawn, lambda port, _proc: node_ready(port, node_id))
    return Node(port, data_dir, proc, node_id)


def start_mics_node(
    argv: list[str],
    tmp: Path,
    env: dict[str, str],
    log_name: str = "mics-node.log",
    cwd: Path = ROOT,
    timeout: float = 30.0,
) -> tuple[ManagedProcess, int]:
    """`mics node ...` as an operator starts it, on a free MICS_PORT; returns it and the port."""

    def spawn(port: int) -> ManagedProcess:
        return ManagedProcess("mics-node", argv, tmp / log_name, {**env, "MICS_PORT": str(port)}, cwd)

    return start_listening(spawn, lambda port, _proc: node_ready(port, env.get("MICS_NODE_ID")), timeout=timeout)


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
