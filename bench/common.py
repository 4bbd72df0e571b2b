"""Helpers shared by the suite and its child processes: paths, fd limits, statistics, process CPU."""

from __future__ import annotations

import resource
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
if str(ROOT / "tests") not in sys.path:
    sys.path.insert(0, str(ROOT / "tests"))  # reuse the test harness and clients, not copies of them


def raise_fd_limit() -> int:
    """Lift the soft open-files limit to the hard one (idle-connection runs need thousands)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def percentile(sorted_values: list[float], q: float) -> float | None:
    if not sorted_values:
        return None
    k = min(len(sorted_values) - 1, max(0, round(q / 100.0 * (len(sorted_values) - 1))))
    return sorted_values[k]


def latency_summary(lat_us: list[int]) -> dict[str, Any]:
    """p50/p90/p99/max in milliseconds."""
    values = sorted(lat_us)
    out: dict[str, Any] = {"n": len(values)}
    for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100)):
        v = percentile(values, q)
        out[f"{name}_ms"] = None if v is None else round(v / 1000.0, 3)
    return out


def cpu_seconds(proc: Any) -> float:
    """User + system CPU seconds of one psutil.Process (0 once it is gone)."""
    try:
        t = proc.cpu_times()
    except Exception:
        return 0.0
    return float(t.user + t.system)


def rss_bytes(proc: Any) -> int:
    try:
        return int(proc.memory_info().rss)
    except Exception:
        return 0
