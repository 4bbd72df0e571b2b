"""Turn a suite report into a text table (stdout, docs) and a PNG (throughput and latency vs offered load)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _peak(steps: list[dict[str, Any]]) -> float:
    return max((s["delivered_per_s"] for s in steps), default=0.0)


def at_half_load(steps: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The highest step whose offered load is at most half of the peak delivered rate."""
    half = _peak(steps) / 2
    below = [s for s in steps if s["offered_per_s"] <= half]
    return below[-1] if below else (steps[0] if steps else None)


def _cpu_per_msg(steps: list[dict[str, Any]]) -> float | None:
    """Router CPU per delivered message (µs) at the highest offered load that was still delivered
    (≥ 85%): near saturation, so the node's fixed background cost weighs little."""
    ok = [s for s in steps if "node_us_per_msg" in s and s["delivered_per_s"] >= 0.85 * s["offered_per_s"]]
    return ok[-1]["node_us_per_msg"] if ok else None


SUSTAINED_P50_MS = 50.0  # a third of the default hook_timeout_ms: beyond, checks time out in the router's queue


def _sustained(steps: list[dict[str, Any]], checked: bool) -> dict[str, Any] | None:
    """The highest step that kept up (≥ 85% delivered) without queueing (p50 ≤ 50 ms) and, with
    `checked`, with every send checked (≥ 99%). A saturated router queues for seconds: its hook
    calls time out and degrade, so a hook-on run cannot have a peak like hook-off's at 500 ms p50."""
    kept_up = [s for s in steps if s["delivered_per_s"] >= 0.85 * s["offered_per_s"]]
    ok = [s for s in kept_up if (s["p50_ms"] or 0) <= SUSTAINED_P50_MS
          and (not checked or s.get("hook_checked_share", 0) >= 0.99)]  # fmt: skip
    return ok[-1] if ok else None


def _hook_rows(
    steps: list[dict[str, Any]], off_steps: list[dict[str, Any]], what: str, base: float, off: float, share: float
) -> list[tuple[str, str, str, str]]:
    """A check-hook run against hook-off 1:1 msgpack of the same run."""
    peak = _peak(steps)
    on, off_ok = _sustained(steps, True), _sustained(off_steps, False)
    rate_on, rate_off = on and on["delivered_per_s"], off_ok and off_ok["delivered_per_s"]
    rows = [
        (f"1:1 msgpack, check hook {what}: peak msg/s (vs hook off {_ratio(peak, off)}; hook answered {share:.0%})",
         _fmt(base), _fmt(peak), _ratio(peak, base)),
        (f"1:1 msgpack, check hook {what}: fully checked msg/s at p50 ≤ {SUSTAINED_P50_MS:.0f} ms "
         "(raw column: hook off, same rule)", _fmt(rate_off), _fmt(rate_on), _ratio(rate_on, rate_off)),
    ]  # fmt: skip
    if on:  # CPU per message with every send checked, against hook off at the same offered rate
        same = next((s for s in off_steps if s["offered_per_s"] == on["offered_per_s"]), None)
        cpu_off = same.get("node_us_per_msg") if same else None
        rows.append((f"1:1 msgpack, check hook {what}: router CPU µs/msg at {_fmt(on['offered_per_s'])} msg/s, "
                     "all checked (raw column: hook off)", _fmt(cpu_off), _fmt(on.get("node_us_per_msg")),
                     _ratio(on.get("node_us_per_msg"), cpu_off)))  # fmt: skip
    return rows


def _per_core(us: float | None) -> str:
    return f"{us:.0f} (→ {1e6 / us:,.0f})" if us else "-"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}" if a and b else "-"


def _fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        v = f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"
    return f"{v}{unit}"


def _two_router_rows(
    result: dict[str, Any] | None, steps_key: str, what: str, raw_peak: float
) -> list[tuple[str, str, str, str]]:
    """Rows for a run over two cluster members (nodes or router workers), against one MICS node."""
    if not result:
        return []
    steps = result[steps_key]
    half = at_half_load(steps)
    ok = [s for s in steps if "cluster_us_per_msg" in s and s["delivered_per_s"] >= 0.85 * s["offered_per_s"]]
    out = [
        (
            f"{what} 1:1 msgpack: peak msg/s (MICS/raw column: vs one MICS node)",
            _fmt(raw_peak),
            _fmt(result["peak_per_s"]),
            _ratio(result["peak_per_s"], result.get("one_node_peak_per_s")),
        )
    ]
    if half:
        usage = f"{_fmt(ok[-1]['cluster_us_per_msg']) if ok else '-'}"
        out.append(
            (
                f"{what}: p50 / p99 ms at half load ({_fmt(half['offered_per_s'])} offered); both routers' CPU µs/msg",
                "-",
                f"{_fmt(half['p50_ms'])} / {_fmt(half['p99_ms'])}; {usage}",
                "-",
            )
        )
    return out


def _proxy_rows(result: dict[str, Any] | None) -> list[tuple[str, str, str, str]]:
    """Raw Crossbar direct vs behind a proxy worker: the raw column is direct, the MICS column proxied."""
    if not result or not result.get("direct") or not result.get("proxied"):
        return []
    direct, proxied = result["direct"], result["proxied"]
    ok = [s for s in proxied if s["delivered_per_s"] >= 0.85 * s["offered_per_s"]]
    last = ok[-1] if ok else {}
    cd, cp = _cpu_per_msg(direct), _cpu_per_msg(proxied)
    return [
        ("raw 1:1 msgpack, behind a proxy worker (MICS column): peak msg/s", _fmt(_peak(direct)),
         _fmt(_peak(proxied)), _ratio(_peak(proxied), _peak(direct))),
        ("raw 1:1 msgpack, behind a proxy worker: router worker CPU µs/msg", _per_core(cd), _per_core(cp),
         _ratio(cp, cd)),
        ("raw 1:1 msgpack, behind a proxy worker: proxy CPU µs/msg; router + proxy", "-",
         f"{_fmt(last.get('proxy_us_per_msg'))}; {_fmt(last.get('both_us_per_msg'))}",
         _ratio(last.get("both_us_per_msg"), cd)),
    ]  # fmt: skip


def rows(report: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(what, raw Crossbar, MICS, MICS/raw) rows."""
    res = report["results"]
    out: list[tuple[str, str, str, str]] = []
    for ser in ("json", "msgpack"):
        p2p = res.get(f"p2p_{ser}")
        if not p2p:
            continue
        raw, mics = _peak(p2p.get("raw", [])), _peak(p2p.get("mics", []))
        out.append((f"1:1 {ser}: peak delivered msg/s", _fmt(raw), _fmt(mics), _ratio(mics, raw)))
        cr, cm = _cpu_per_msg(p2p.get("raw", [])), _cpu_per_msg(p2p.get("mics", []))
        out.append((f"1:1 {ser}: router CPU µs/msg (→ msg/s per core)", _per_core(cr), _per_core(cm), _ratio(cm, cr)))
        hr, hm = at_half_load(p2p.get("raw", [])), at_half_load(p2p.get("mics", []))
        if hr and hm:
            out.append(
                (
                    f"1:1 {ser}: p50 / p99 ms at half load ({_fmt(hr['offered_per_s'])} / "
                    f"{_fmt(hm['offered_per_s'])} offered)",
                    f"{_fmt(hr['p50_ms'])} / {_fmt(hr['p99_ms'])}",
                    f"{_fmt(hm['p50_ms'])} / {_fmt(hm['p99_ms'])}",
                    "-",
                )
            )
    base = _peak(res.get("p2p_msgpack", {}).get("raw", []))
    off = _peak(res.get("p2p_msgpack", {}).get("mics", []))
    off_steps = res.get("p2p_msgpack", {}).get("mics", [])
    for transport, what in (("wamp", "wamp, batched"), ("wamp_single", "wamp, one call each"),
                            ("http", "http, batched")):  # fmt: skip
        hook = res.get(f"hook_{transport}")
        if hook:
            out.extend(_hook_rows(hook["mics"], off_steps, what, base, off, hook["hook_checked_share"]))
    for name, row in res.get("group", {}).items():
        raw, mics = row.get("raw", {}), row.get("mics", {})
        out.append(
            (
                f"group {name.replace('_', ' ')}: router CPU ms/send",
                _fmt(raw.get("node_cpu_ms_per_send")),
                _fmt(mics.get("node_cpu_ms_per_send")),
                _ratio(mics.get("node_cpu_ms_per_send"), raw.get("node_cpu_ms_per_send")),
            )
        )
        if mics.get("node_cpu_us_per_event") is not None:
            out.append(
                (
                    f"group {name.replace('_', ' ')}: router CPU µs per online recipient",
                    _fmt(raw.get("node_cpu_us_per_event")),
                    _fmt(mics.get("node_cpu_us_per_event")),
                    _ratio(mics.get("node_cpu_us_per_event"), raw.get("node_cpu_us_per_event")),
                )
            )
        out.append(
            (
                f"group {name.replace('_', ' ')}: p50 / p99 ms",
                f"{_fmt(raw.get('p50_ms'))} / {_fmt(raw.get('p99_ms'))}",
                f"{_fmt(mics.get('p50_ms'))} / {_fmt(mics.get('p99_ms'))}",
                "-",
            )
        )
    sync = res.get("sync")
    if sync and "raw" in sync and "mics" in sync:
        r, m = sync["raw"], sync["mics"]
        out.append(
            (
                f"sync {m['messages']} held messages: p50 ms (raw: RPC of {r['messages']})",
                _fmt(r["p50_ms"]),
                _fmt(m["p50_ms"]),
                _ratio(m["p50_ms"], r["p50_ms"]),
            )
        )
    presence = res.get("presence")
    if presence and "raw" in presence and "mics" in presence:
        r, m = presence["raw"], presence["mics"]
        out.append(
            (
                f"presence change to {m['watchers']} watchers: router CPU ms (fan-out only; raw: a publish)",
                _fmt(r["fanout_cpu_ms_per_change"]),
                _fmt(m["fanout_cpu_ms_per_change"]),
                _ratio(m["fanout_cpu_ms_per_change"], r["fanout_cpu_ms_per_change"]),
            )
        )
        out.append(("presence change: events delivered per change", _fmt(r["events_per_change"]),
                    _fmt(m["events_per_change"]), "-"))  # fmt: skip
    for row in res.get("agents", {}).values():
        r, m = row.get("raw"), row.get("mics")
        if not (r and m):
            continue
        asked = f"asked over {m['spread_s']:g} s" if m.get("spread_s") else "asked at once"
        what = f"agents: {m['streams']} answers, {m['chunks_per_stream']} chunks each, {asked}"
        what += f" ({m['chunks_per_s']:,.0f} chunks/s)"
        out.append((f"{what}: router CPU µs/chunk (raw: the backend publishes them)", _fmt(r["node_us_per_chunk"]),
                    _fmt(m["node_us_per_chunk"]), _ratio(m["node_us_per_chunk"], r["node_us_per_chunk"])))  # fmt: skip
        for key, label in (("first_chunk_delivery", "first chunk, agent sent -> client got"),
                           ("chunk_delivery", "every chunk, agent sent -> client got"),
                           ("trigger_to_first_chunk", "trigger -> first chunk")):  # fmt: skip
            out.append((f"{what}: {label}, p50 / p99 ms", f"{_fmt(r[key]['p50_ms'])} / {_fmt(r[key]['p99_ms'])}",
                        f"{_fmt(m[key]['p50_ms'])} / {_fmt(m[key]['p99_ms'])}", "-"))  # fmt: skip
    idle = res.get("idle")
    if idle and "raw" in idle and "mics" in idle:
        r, m = idle["raw"], idle["mics"]
        out.append(
            (
                "joins/s (MICS incl. auth hook)",
                _fmt(r["joins_per_s"]),
                _fmt(m["joins_per_s"]),
                _ratio(m["joins_per_s"], r["joins_per_s"]),
            )
        )
        out.append(
            (
                f"idle connections: RSS KB each ({m['connections']} open)",
                _fmt(r["rss_per_connection_kb"]),
                _fmt(m["rss_per_connection_kb"]),
                _ratio(m["rss_per_connection_kb"], r["rss_per_connection_kb"]),
            )
        )
    for key, steps_key, what in (
        ("cluster", "mics_2_nodes", "cluster 2 nodes, cross-node"),
        ("workers", "mics_2_workers", "1 node, 2 router workers"),
    ):
        out.extend(_two_router_rows(res.get(key), steps_key, what, base))
    out.extend(_proxy_rows(res.get("proxy")))
    noisy = res.get("noisy")
    if noisy and "during_flood" in noisy:
        alone, during, flood = noisy["alone"], noisy["during_flood"], noisy["flood"]
        out.append((
            f"fairness: quiet tenant 1:1 p50 / p99 ms alone, then while another floods "
            f"({noisy['flood_offered_per_s']:,} msg/s offered; refused {flood['refused']:,} of {flood['sent']:,})",
            f"{_fmt(alone.get('p50_ms'))} / {_fmt(alone.get('p99_ms'))}",
            f"{_fmt(during.get('p50_ms'))} / {_fmt(during.get('p99_ms'))}",
            _fmt(noisy.get("quiet_p99_ratio")),
        ))  # fmt: skip
        window = noisy.get("window")
        if window:
            out.append((
                "fairness: flood accepted / refused per s; router µs per send answered (during the flood)",
                f"{_fmt(window.get('flood_accepted_per_s'))} / {_fmt(window.get('flood_refused_per_s'))}",
                _fmt(window.get("node_us_per_call")),
                "-",
            ))  # fmt: skip
    start = res.get("startup")
    if start:
        r, m = start.get("raw", {}), start.get("mics", {})
        out.append(("start: spawn to ready s", _fmt(r.get("ready_s")), _fmt(m.get("ready_s")), "-"))
        out.append(("start: spawn to first join s", _fmt(r.get("first_join_s")), _fmt(m.get("first_join_s")), "-"))
    return out


def table(report: dict[str, Any]) -> str:
    body = rows(report)
    head = ("what", "raw Crossbar", "MICS", "MICS/raw")
    widths = [max(len(r[i]) for r in [head, *body]) for i in range(4)]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"  # noqa: E731
    out = [line(head), "|" + "|".join("-" * (w + 2) for w in widths) + "|", *map(line, body)]
    m = report["machine"]
    out.append(
        f"\n{report['mode']} run, {m['cpus']} cores, load {m['load_avg_at_start']} -> {m.get('load_avg_at_end')}"
    )
    for name, err in report["results"].get("failures", {}).items():
        out.append(f"FAILED {name}: {err.splitlines()[-1] if err else ''}")
    return "\n".join(out)


def plot(report: dict[str, Any], path: Path) -> Path:
    """Delivered msg/s and p50/p99 latency against offered load, raw vs MICS, per 1:1 scenario."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    res = report["results"]
    series = []
    for ser in ("json", "msgpack"):
        for system in ("raw", "mics"):
            steps = res.get(f"p2p_{ser}", {}).get(system)
            if steps:
                series.append((f"{system} {ser}", steps, "-" if system == "mics" else ":"))
    for transport in ("wamp", "wamp_single", "http"):
        steps = res.get(f"hook_{transport}", {}).get("mics")
        if steps:
            series.append((f"mics msgpack + {transport.replace('_', ' ')} check hook", steps, "--"))
    for key, steps_key, label in (
        ("cluster", "mics_2_nodes", "mics msgpack, 2-node cluster, cross-node"),
        ("workers", "mics_2_workers", "mics msgpack, 1 node with 2 router workers"),
    ):
        steps = res.get(key, {}).get(steps_key)
        if steps:
            series.append((label, steps, "-."))
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    for label, steps, style in series:
        x = [s["offered_per_s"] for s in steps]
        ax1.plot(x, [s["delivered_per_s"] for s in steps], style, marker="o", label=label)
        line = ax2.plot(x, [s["p99_ms"] for s in steps], style, marker="o", label=f"{label} p99")[0]
        ax2.plot(x, [s["p50_ms"] for s in steps], style, marker=".", color=line.get_color(), alpha=0.5)
    top = max((s["offered_per_s"] for _, st, _ in series for s in st), default=1)
    ax1.plot([0, top], [0, top], color="grey", linewidth=0.5, label="offered")
    ax1.set(xlabel="offered msg/s", ylabel="delivered msg/s", title="1:1 throughput (one router worker)")
    ax2.set(
        xlabel="offered msg/s",
        ylabel="latency ms (log): p99 big marker, p50 small",
        yscale="log",
        title="1:1 send→deliver latency",
    )
    ax1.legend(fontsize=7)
    ax2.legend(fontsize=7)
    m = report["machine"]
    fig.suptitle(
        f"MICS vs raw Crossbar, {report['mode']} run {report['started']}, {m['cpus']} cores, "
        f"load at start {m['load_avg_at_start'][0]}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def profile_text(report: dict[str, Any], top: int = 15) -> str:
    """The profile summary as text: CPU share by package, then by function (self and MICS inclusive)."""
    p = report["results"].get("profile")
    if not p or "samples" not in p:
        return "no profile" + (f": {p.get('profile_error')}" if p else "")
    step = p["step"]
    out = [f"py-spy, {p['samples']} samples of the router worker at {step['delivered_per_s']:,.0f} msg/s delivered "
           f"(worker at {step['node_cores']:.2f} cores); % of busy samples"]  # fmt: skip
    out.append("by package (self): " + ", ".join(f"{pkg} {pct}%" for pkg, pct in p["self_by_package"]))
    if p.get("self_by_layer"):
        cpu = step.get("node_cpu_s") or 0
        kernel = step.get("node_system_cpu_s") or 0
        out.append("by layer (self): " + ", ".join(f"{name} {pct}%" for name, pct in p["self_by_layer"]))
        if cpu:
            out.append(f"router CPU in the kernel (system time, mostly socket and epoll calls): {kernel / cpu:.0%}")
    out.append("top functions (self):")
    out += [f"  {pct:5.1f}%  {fn}" for fn, pct in p["self_top"][:top]]
    out.append("mics functions (inclusive: with everything they call):")
    out += [f"  {pct:5.1f}%  {fn}" for fn, pct in p["mics_inclusive_top"][:top]]
    return "\n".join(out)
