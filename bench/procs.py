"""Child processes the suite drives over a JSON-lines pipe (load generators, the hook backend)."""

from __future__ import annotations

import json
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.common import ROOT, cpu_seconds

NOISE = ("NumPy", "numpy", "_ARRAY_API", "bjdata", "pybind11", "rebuild", "support both", "compiled using")


def _is_noise(line: str) -> bool:
    """The known bjdata-vs-NumPy-2 import warning every autobahn process prints (harmless)."""
    return not line.strip() or any(n in line for n in NOISE)


class Child:
    """One `python -m bench.<module> <spec>` process: a JSON command in, one JSON line out."""

    def __init__(self, module: str, spec: dict[str, Any], log: Path) -> None:
        self._log = open(log, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", f"bench.{module}", json.dumps(spec)],
            cwd=str(ROOT),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self._log,
            text=True,
            bufsize=1,
        )
        self.ps = psutil.Process(self.proc.pid)
        self.log = log

    def send(self, cmd: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def reply(self, timeout: float) -> dict[str, Any]:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            lines = self.log.read_text(errors="replace").splitlines()
            tail = "\n".join(ln for ln in lines if not _is_noise(ln))[-1500:]
            raise RuntimeError(f"{self.log.name}: no reply within {timeout}s (exit {self.proc.poll()}):\n{tail}")
        out: dict[str, Any] = json.loads(line)
        if "error" in out:
            raise RuntimeError(f"{self.log.name}: {out['error']}")
        return out

    def cpu(self) -> float:
        return cpu_seconds(self.ps)

    def stop(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"cmd": "quit"})
                self.proc.wait(5)
            except Exception:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()


class Group:
    """Several children driven together; every command goes to all and waits for all replies."""

    def __init__(self, children: list[Child]) -> None:
        self.children = children

    def replies(self, timeout: float) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        return [c.reply(max(0.1, deadline - time.monotonic())) for c in self.children]

    def run(self, cmds: list[dict[str, Any]] | dict[str, Any], timeout: float) -> list[dict[str, Any]]:
        per_child = cmds if isinstance(cmds, list) else [cmds] * len(self.children)
        for child, cmd in zip(self.children, per_child, strict=True):
            child.send(cmd)
        return self.replies(timeout)

    def cpu(self) -> float:
        return sum(c.cpu() for c in self.children)

    def stop(self) -> None:
        for c in self.children:
            c.stop()
