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


def start_redis(tmp: Path, port: int | None = None) -> tuple[ManagedProcess, str]:
    """A throwaway redis-server on a free loopback port (or `port`), persistence off; returns it and its URL."""

    def spawn(chosen: int) -> ManagedProcess:
        argv = ["redis-server", "--port", str(chosen), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(tmp)]  # fmt: skip
        return ManagedProcess("redis", argv, tmp / f"redis-{chosen}.log")

    proc, port = start_listening(spawn, lambda chosen, proc: _redis_pid(chosen) == proc.proc.pid, port, timeout=10)
    return proc, f"redis://127.0.0.1:{port}/0"


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
