"""Sample a running router worker with py-spy and say what dominates its CPU.

py-spy attaches from outside (no change to the node) and writes collapsed stacks
(`frame;frame;... count`, loadable in speedscope or flamegraph.pl); we sum them per function
(self and inclusive) and per package.
"""

from __future__ import annotations

import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

PACKAGES = ("mics", "crossbar", "autobahn", "twisted", "txaio", "msgpack", "cbor2", "json", "prometheus_client",
            "treq", "hyperlink", "zope", "asyncio", "logging")  # fmt: skip


def start(pid: int, seconds: float, out: Path) -> tuple[subprocess.Popen[bytes], Path]:
    spy = Path(sys.executable).with_name("py-spy")
    # --gil: only samples that hold the GIL, i.e. Python running (a thread waiting in epoll or
    # preempted by the other processes on a shared machine is not work of the router)
    argv = [str(spy), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "250",
            "--format", "raw", "--nonblocking", "--gil", "--output", str(out)]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE), out


def _package(frame: str) -> str:
    """`func (path/to/file.py:123)` -> the top-level package the file belongs to."""
    path = frame.rsplit("(", 1)[-1]
    for pkg in PACKAGES:
        if f"/{pkg}/" in path or f"/{pkg}." in path or path.startswith(f"{pkg}/"):
            return pkg
    return "other"


# What a router worker does per message, by the file of the innermost Python frame (py-spy samples
# the GIL holder: time inside a C call or syscall counts for the Python function that made it).
LAYERS = (
    ("WebSocket framing", ("/autobahn/websocket/", "/autobahn/nvx/", "/autobahn/twisted/websocket.py", "/wsaccel")),
    ("WAMP serialization", ("/autobahn/wamp/serializer.py", "/msgpack/", "/cbor2/", "/json/", "/ujson")),
    ("WAMP messages and sessions", ("/autobahn/wamp/", "/autobahn/util.py", "/txaio/")),
    ("Crossbar routing", ("/crossbar/",)),
    ("MICS", ("/mics/", "/mics_client/", "<string>")),  # <string>: dataclass __init__s (mics.types)
    ("reactor, sockets, Deferreds", ("/twisted/",)),
)


def _layer(frame: str) -> str:
    path = frame.rsplit("(", 1)[-1]
    for name, parts in LAYERS:
        if any(part in path or path.startswith(part.lstrip("/")) for part in parts):
            return name
    return "other"


def _function(frame: str) -> str:
    """Drop the line number: `f (a/b.py:12)` -> `f (a/b.py)`, so a function is counted once."""
    head, sep, tail = frame.rpartition(":")
    return f"{head})" if sep and tail.rstrip(")").isdigit() else frame


def summarize(collapsed: str, top: int = 25) -> dict[str, Any]:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    by_layer: Counter[str] = Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        n = int(count)
        frames = [_function(f) for f in stack.split(";")]
        total += n
        self_time[frames[-1]] += n
        by_package[_package(frames[-1])] += n
        by_layer[_layer(frames[-1])] += n
        for f in set(frames):
            inclusive[f] += n
    pct = lambda n: round(100.0 * n / max(total, 1), 1)  # noqa: E731
    mics_inclusive = [(f, pct(n)) for f, n in inclusive.most_common() if _package(f) == "mics"][:top]
    return {
        "samples": total,
        "self_top": [(f, pct(n)) for f, n in self_time.most_common(top)],
        "self_by_package": [(p, pct(n)) for p, n in by_package.most_common()],
        "self_by_layer": [(p, pct(n)) for p, n in by_layer.most_common()],
        "mics_inclusive_top": mics_inclusive,
    }


def finish(rec: tuple[subprocess.Popen[bytes], Path]) -> dict[str, Any]:
    proc, out = rec
    _, err = proc.communicate(timeout=120)
    if proc.returncode != 0 or not out.exists():
        return {"profile_error": err.decode(errors="replace")[-500:]}
    return {"collapsed_stacks": out.name, **summarize(out.read_text())}
