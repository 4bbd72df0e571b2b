"""The benchmark suite: MICS against raw Crossbar pub/sub, same clients, payloads and serializer, one run.

`bench/run` (full, minutes; numbers for docs/performance.md) or `bench/run --short` (CI: seconds,
no speed assertions, just a complete report). Writes bench/results/<stamp>.json, latest.json and
latest.png, and prints a table. Scenarios, each raw then MICS with the node in the same state:
start-up, idle connections (+ joins/s), 1:1 json and msgpack, check-message hook (wamp, http),
group send, sync of held messages, live presence fan-out (section 11), AI agents streaming (section
12), two-node cluster,
two-worker node; then a py-spy profile of the MICS router worker (full mode). The cluster scenario
runs two more MICS nodes sharing a redis-server, with every send crossing nodes; the workers
scenario one node with two router workers.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from bench.common import RESULTS, ROOT, latency_summary, raise_fd_limit, rss_bytes
from bench.nodes import RAW_REALM, Router, start_mics, start_raw
from bench.procs import Child, Group

SECRET = "bench-secret-0123456789"
TENANT_DEFAULTS = {
    "secret": SECRET,
    "max_message_qps": 10_000_000,
    "max_connections": 1_000_000,
    "heartbeat_timeout_s": 3600,
    "max_payload_bytes": 65536,
    # section 11 limits, out of the way of load generators that share one address and few users
    "max_user_message_qps": 1_000_000,
    "max_joins_per_ip_per_s": 1_000_000,
}
BATCHED = {"hook_batch_max": 64, "hook_batch_wait_ms": 2}  # the check-message hook asked in batches
TENANTS = {
    "bench": {**TENANT_DEFAULTS, "hook_transport": "wamp", "check_message_hook": False},
    "bench_noisy": {**TENANT_DEFAULTS, "hook_transport": "wamp", "check_message_hook": False},
    "bench_hw": {**TENANT_DEFAULTS, "hook_transport": "wamp", "check_message_hook": True, **BATCHED},
    "bench_hw1": {**TENANT_DEFAULTS, "hook_transport": "wamp", "check_message_hook": True},  # one call per send
    # section 12: one agent, out of the way of its own limits (every stream at once, none refused)
    "bench_ai": {**TENANT_DEFAULTS, "hook_transport": "wamp", "check_message_hook": False,
                 "hook_max_concurrency": 1000, "agents": [{"agent_id": "bench_bot", "name": "Bench bot",
                                                           "transport": "wamp", "max_qps": 10_000}]},
}
AGENT_ID = "bench_bot"
HTTP_TENANT = {"tenant_id": "bench_hh", "config": {**TENANT_DEFAULTS, "check_message_hook": True, **BATCHED}}


@dataclass(frozen=True)
class Plan:
    """How much of everything: the full plan is for docs, the short one for CI."""

    short: bool
    steps: tuple[int, ...]  # offered 1:1 load, msg/s
    step_s: float
    drain_s: float
    p2p_users: int
    generators: int
    idle: int
    idle_generators: int
    groups: tuple[tuple[int, int, float], ...]  # (members, online, sends/s)
    sync_held: int
    sync_repeat: int
    profile_s: float
    hook_backends: int  # processes serving the WAMP hooks (round-robin), so the hook is not the bottleneck
    presence_watchers: int = 1000  # sessions watching one user's presence
    presence_changes: int = 200  # join/leave changes of that user, measured with and without the watchers
    # section 12: (answers streaming at once, chunks each, seconds between an answer's chunks (a model's
    # pace), seconds over which the questions are asked (0: all in one burst))
    agent_loads: tuple[tuple[int, int, float, float], ...] = ((10, 50, 0.04, 0.0), (100, 50, 0.04, 0.0),
                                                              (100, 25, 0.2, 2.0))  # fmt: skip

    @property
    def max_user(self) -> int:
        return max(self.idle, self.p2p_users, *(g[1] for g in self.groups), self.presence_watchers + 2)


FULL = Plan(
    False,
    (500, 1000, 1500, 2000, 3000, 4000, 6000, 8000, 10000),
    4.0,
    4.0,
    200,
    2,
    10000,
    4,
    ((100, 10, 100.0), (1000, 100, 20.0), (5000, 10, 50.0), (10000, 1000, 5.0)),
    1000,
    10,
    10.0,
    2,
)
SHORT = Plan(
    True,
    (300, 1000),
    0.8,
    1.0,
    20,
    2,
    100,
    2,
    ((100, 10, 20.0), (1000, 20, 10.0), (5000, 10, 10.0), (10000, 20, 5.0)),
    1000,
    2,
    0.0,
    2,
    100,
    20,
    ((10, 10, 0.02, 0.0),),
)


class Bench:
    def __init__(self, plan: Plan, workdir: Path) -> None:
        self.plan = plan
        self.workdir = workdir
        self.results: dict[str, Any] = {}
        self.routers: dict[str, Router] = {}
        self.hooks: list[Child] = []  # the tenants' hook backends (share the WAMP hooks round-robin)
        self.hook_base_url: str | None = None  # the first backend's signed HTTP hook server
        self._step = 0
        self.scenario = "start"

    # -- processes -----------------------------------------------------------------------------------
    def gens(
        self,
        router: Router,
        realm: str,
        serializer: str,
        users: list[str],
        n: int,
        subscribe: str | None,
        concurrency: int = 25,
        peers: list[str] | None = None,
    ) -> Group:
        chunks = [users[i::n] for i in range(n)]
        children = []
        for i, chunk in enumerate(chunks):
            spec = {
                "url": router.url,
                "realm": realm,
                "system": router.system,
                "serializer": serializer,
                "users": chunk,
                "subscribe": subscribe,
                "concurrency": concurrency,
                "peers": peers,
            }
            children.append(Child("gen", spec, self.workdir / f"{self.scenario}-{router.system}-{i}.log"))
        group = Group(children)
        try:
            group.replies(60)
            readies = group.run({"cmd": "open"}, 600)
        except Exception:
            group.stop()
            raise
        group.ready = readies  # type: ignore[attr-defined]
        return group

    def measured(
        self, router: Router, group: Group, fn: Any, extra: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, float]]:
        """Run `fn` and split the CPU it cost between router worker, generators and hook backend
        (and `extra` processes: the second node and Redis of the cluster run)."""
        procs = {"node": [router.worker], "hooks": [h.ps for h in self.hooks]}
        procs.update((k, [p]) for k, p in (extra or {}).items())

        def used(ps: list[Any]) -> float:
            return sum(t.user + t.system for t in (p.cpu_times() for p in ps))

        def kernel(ps: list[Any]) -> float:
            return sum(p.cpu_times().system for p in ps)

        before = {k: used(ps) for k, ps in procs.items()}
        sys0 = kernel(procs["node"])
        g0, t0 = group.cpu(), time.time()
        out = fn()
        dt = time.time() - t0
        cpu = {"wall_s": round(dt, 3), "generators_cores": round((group.cpu() - g0) / dt, 3),
               "node_system_cpu_s": round(kernel(procs["node"]) - sys0, 4)}  # fmt: skip
        for k, ps in procs.items():
            if ps:
                cpu[f"{k}_cpu_s"] = round(used(ps) - before[k], 4)
                cpu[f"{k}_cores"] = round(cpu[f"{k}_cpu_s"] / dt, 3)
        return out, cpu

    # -- scenarios -----------------------------------------------------------------------------------
    def startup(self) -> None:
        self.results["startup"] = {name: r.startup for name, r in self.routers.items()}

    def idle(self) -> None:
        """N idle sessions: RSS per connection and, while opening them, joins per second."""
        plan, out = self.plan, {}
        users = [f"u{i}" for i in range(plan.idle)]
        for name, router in self.routers.items():
            realm = RAW_REALM if name == "raw" else "bench"
            time.sleep(1.0)
            rss0 = rss_bytes(router.worker)
            cpu0 = router.worker.cpu_times()
            # at most 48 joins in flight: under the auth hook's default bulkhead (hook_max_concurrency 64)
            group = self.gens(router, realm, "msgpack", users, plan.idle_generators, None, concurrency=12)
            try:
                cpu1 = router.worker.cpu_times()
                time.sleep(2.0)
                rss1 = rss_bytes(router.worker)
                readies = group.ready  # type: ignore[attr-defined]
                joined = sum(r["joined"] for r in readies)
                span = max(r["t_end"] for r in readies) - min(r["t_start"] for r in readies)
                lat = sorted(x for r in readies for x in r["join_lat_ms"])
                node_cpu = cpu1.user + cpu1.system - cpu0.user - cpu0.system
                refused: dict[str, int] = {}
                for r in readies:
                    for reason, n in r["refused"].items():
                        refused[reason] = refused.get(reason, 0) + n
                out[name] = {
                    "connections": joined,
                    "refused": refused,
                    "rss_before_mb": round(rss0 / 2**20, 1),
                    "rss_after_mb": round(rss1 / 2**20, 1),
                    "rss_per_connection_kb": round((rss1 - rss0) / max(joined, 1) / 1024, 2),
                    "joins_per_s": round(joined / span, 1),
                    "join_p50_ms": round(lat[len(lat) // 2], 2),
                    "join_p99_ms": round(lat[int(len(lat) * 0.99)], 2),
                    "node_cpu_ms_per_join": round(node_cpu * 1000 / max(joined, 1), 3),
                }
                group.run({"cmd": "close"}, 120)
            finally:
                group.stop()
        self.results["idle"] = out

    def _p2p(self, router: Router, realm: str, serializer: str, count_hook: bool = False) -> list[dict[str, Any]]:
        plan = self.plan
        users = [f"u{i}" for i in range(plan.p2p_users)]
        group = self.gens(router, realm, serializer, users, plan.generators, "inbox")
        try:
            return self._ramp(router, group, count_hook)
        finally:
            group.stop()

    def proxy(self) -> None:
        """Raw Crossbar 1:1 msgpack with its router worker behind a proxy worker (the proxy terminates
        the WebSockets), next to the same router worker serving the clients itself: does a second
        process in front take enough off the router to pay for itself? (docs/performance.md)"""
        node = start_raw(self.workdir, [f"u{i}" for i in range(self.plan.max_user)], proxied=True)
        users = [f"u{i}" for i in range(self.plan.p2p_users)]
        out: dict[str, Any] = {}
        try:
            for name, router in (("direct", self.routers["raw"]), ("proxied", node)):
                group = self.gens(router, RAW_REALM, "msgpack", users, self.plan.generators, "inbox")
                try:
                    extra = {"proxy": router.proxy} if router.proxy is not None else None
                    out[name] = self._ramp(router, group, extra=extra)
                finally:
                    group.stop()
        finally:
            node.stop()
        for step in out["proxied"]:
            received, proxy_s = max(step["received"], 1), step.get("proxy_cpu_s", 0)
            step["proxy_us_per_msg"] = round(proxy_s * 1e6 / received, 1)
            step["both_us_per_msg"] = round((step.get("node_cpu_s", 0) + proxy_s) * 1e6 / received, 1)
        self.results["proxy"] = out

    def _ramp(
        self, router: Router, group: Group, count_hook: bool = False, extra: dict[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """Offer the plan's 1:1 rates one after the other, until the node saturates."""
        steps: list[dict[str, Any]] = []
        for rate in self.plan.steps:
            before = self._hook_stats() if count_hook else {}
            steps.append(self._p2p_step(router, group, rate, extra=extra))
            last = steps[-1]
            if count_hook:
                checked = self._hook_stats().get("check_message", 0) - before.get("check_message", 0)
                last["hook_checked_share"] = round(checked / max(last["sent"], 1), 3)
            if last["delivered_per_s"] < 0.85 * rate or (last["p99_ms"] or 0) > 2000:
                break  # saturated: a higher offer only grows the queue
        return steps

    def _p2p_step(
        self,
        router: Router,
        group: Group,
        rate: float,
        duration: float | None = None,
        extra: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        plan, n = self.plan, len(group.children)
        self._step += 1
        duration = duration or plan.step_s
        cmd = {
            "cmd": "step",
            "kind": "p2p",
            "step": self._step,
            "rate": rate / n,
            "duration": duration,
            "drain": plan.drain_s,
        }
        replies, cpu = self.measured(router, group, lambda: group.run(cmd, duration + plan.drain_s + 30), extra)
        return self._merge(rate, duration, replies, cpu)

    @staticmethod
    def _merge(rate: float, duration: float, replies: list[dict[str, Any]], cpu: dict[str, float]) -> dict[str, Any]:
        lat = [x for r in replies for x in r["lat_us"]]
        sent = sum(r["sent"] for r in replies)
        per_msg = {}  # CPU per delivered message: steadier than peak rates on a shared 2-core machine
        if lat:
            per_msg["node_us_per_msg"] = round(cpu.get("node_cpu_s", 0) * 1e6 / len(lat), 1)
            per_msg["generators_us_per_msg"] = round(cpu["generators_cores"] * cpu["wall_s"] * 1e6 / len(lat), 1)
        return {
            "offered_per_s": rate,
            "sent": sent,
            "errors": sum(r["errors"] for r in replies),
            "received": len(lat),
            "delivered_per_s": round(sum(r["received_in_window"] for r in replies) / duration, 1),
            **latency_summary(lat),
            **cpu,
            **per_msg,
        }

    def p2p(self, serializer: str) -> None:
        out = {}
        for name, router in self.routers.items():
            out[name] = self._p2p(router, RAW_REALM if name == "raw" else "bench", serializer)
        self.results[f"p2p_{serializer}"] = out

    def hooked(self, transport: str, tenant: str) -> None:
        """MICS with the check-message hook on; the baseline is raw msgpack pub/sub from this run."""
        before = self._hook_stats()
        steps = self._p2p(self.routers["mics"], tenant, "msgpack", count_hook=True)
        after = self._hook_stats()
        checked = after.get("check_message", 0) - before.get("check_message", 0)
        sent = sum(s["sent"] for s in steps)
        self.results[f"hook_{transport}"] = {
            "tenant": tenant,
            "mics": steps,
            "hook_checked_share": round(checked / max(sent, 1), 3),
            "hook_outcomes": self._hook_outcomes(tenant),
        }

    def _hook_stats(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for hooks in self.hooks:
            hooks.send({"cmd": "stats"})
            for name, n in hooks.reply(10).items():
                total[name] = total.get(name, 0) + n
        return total

    def _send_counts(self) -> dict[str, float]:
        """From the node's /metrics: sends accepted (every tenant; the flood tenant's apart) and the
        flood tenant's fair-share refusals, so far. (A saturated node answers late.)"""
        with urllib.request.urlopen(self.routers["mics"].http + "/metrics", timeout=60) as r:
            text = r.read().decode()
        out = {"accepted": 0.0, "flood_accepted": 0.0, "refused": 0.0}
        for line in text.splitlines():
            if line.startswith("mics_messages_total{"):
                value = float(line.rsplit(" ", 1)[1])
                out["accepted"] += value
                if 'tenant="bench_noisy"' in line:
                    out["flood_accepted"] += value
            elif line.startswith("mics_send_failures_total{") and 'reason="fair_share"' in line:
                out["refused"] += float(line.rsplit(" ", 1)[1])
        return out

    def _hook_outcomes(self, tenant: str) -> dict[str, float]:
        """check_message hook outcomes from the node's /metrics (ok, timeout, queue_full, ...), and
        the batched calls' mean size (`messages_per_batch`)."""
        with urllib.request.urlopen(self.routers["mics"].http + "/metrics", timeout=5) as r:
            text = r.read().decode()
        out, batches = {}, {}
        for line in text.splitlines():
            if f'tenant="{tenant}"' not in line:
                continue
            labels, value = line.rsplit(" ", 1)
            if line.startswith("mics_hook_calls_total{") and 'hook="check_message"' in line:  # not check_messages
                out[labels.split('outcome="', 1)[1].split('"', 1)[0]] = float(value)
            elif line.startswith(("mics_hook_batch_messages_sum{", "mics_hook_batch_messages_count{")):
                batches[labels.split("{", 1)[0].rsplit("_", 1)[-1]] = float(value)
        if batches.get("count"):
            out["messages_per_batch"] = round(batches["sum"] / batches["count"], 2)
        return out

    def group_send(self) -> None:
        plan, out = self.plan, {}
        for members, online, rate in plan.groups:
            gid = f"g{members}"
            row = {}
            for name, router in self.routers.items():
                realm = RAW_REALM if name == "raw" else "bench"
                users = [f"u{i}" for i in range(online)]  # u0 sends; the others receive
                group = self.gens(router, realm, "msgpack", users, min(plan.generators, online), f"mics.group.{gid}")
                try:
                    self._step += 1
                    member_ids = [f"u{i}" for i in range(members)] if name == "raw" else None
                    cmds = [
                        {
                            "cmd": "step",
                            "kind": "group",
                            "step": self._step,
                            "rate": rate if i == 0 else 0,
                            "duration": plan.step_s,
                            "drain": plan.drain_s,
                            "group": gid,
                            "senders": 1,
                            "members": member_ids,
                        }
                        for i in range(len(group.children))
                    ]
                    idle = self._idle_cores(router)
                    replies, cpu = self.measured(router, group, lambda c=cmds, g=group: g.run(c, 120))
                    step = self._merge(rate, plan.step_s, replies, cpu)
                    sent, events = max(step["sent"], 1), max(step["received"], 1)
                    # a few sends per second: the router's own timers would weigh in, so they are taken out
                    busy_s = cpu.get("node_cpu_s", 0) - idle * cpu["wall_s"]
                    step["node_idle_cores"] = idle
                    step["events_per_send"] = round(step["received"] / sent, 1)
                    step["node_cpu_ms_per_send_gross"] = round(cpu.get("node_cpu_s", 0) * 1000 / sent, 3)
                    step["node_cpu_ms_per_send"] = round(busy_s * 1000 / sent, 3)
                    step["node_cpu_us_per_event"] = round(busy_s * 1e6 / events, 1)
                    row[name] = step
                finally:
                    group.stop()
            out[f"{members}_members_{online}_online"] = row
        self.results["group"] = out

    @staticmethod
    def _idle_cores(router: Router, seconds: float = 2.0) -> float:
        """The router worker's CPU while nobody sends (its timers, metrics, event drain)."""
        before = router.worker.cpu_times()
        time.sleep(seconds)
        after = router.worker.cpu_times()
        return round((after.user + after.system - before.user - before.system) / seconds, 4)

    def sync(self) -> None:
        plan, out = self.plan, {}
        raw = self.routers["raw"]
        group = self.gens(raw, RAW_REALM, "msgpack", ["u0", "u1"], 1, None)
        try:
            group.run({"cmd": "serve_sync", "n": plan.sync_held, "index": 0}, 30)
            (res,), cpu = self.measured(
                raw, group, lambda: group.run({"cmd": "sync", "repeat": plan.sync_repeat, "index": 1}, 120)
            )
            out["raw"] = self._sync_row(res, cpu)
        finally:
            group.stop()
        mics = self.routers["mics"]
        filler = self.gens(mics, "bench", "msgpack", ["filler"], 1, None)
        try:
            filler.run({"cmd": "fill", "to": "syncer", "n": plan.sync_held}, 120)
        finally:
            filler.stop()
        group = self.gens(mics, "bench", "msgpack", ["syncer"], 1, None)
        try:
            (res,), cpu = self.measured(
                mics, group, lambda: group.run({"cmd": "sync", "repeat": plan.sync_repeat}, 120)
            )
            out["mics"] = self._sync_row(res, cpu)
        finally:
            group.stop()
        self.results["sync"] = out

    def noisy(self) -> None:
        """Fairness: a quiet tenant's 1:1 latency alone, then while another tenant floods the node
        (the router refuses the tenant over its fair share first; mics.limits.FairShare)."""
        plan = self.plan
        router = self.routers["mics"]
        quiet_rate, flood_rate = (100, 2500) if plan.short else (200, 3200)
        duration = plan.step_s * (1 if plan.short else 2)
        quiet = self.gens(router, "bench", "msgpack", [f"q{i}" for i in range(10)], 1, "inbox")
        flood = self.gens(router, "bench_noisy", "msgpack", [f"n{i}" for i in range(plan.p2p_users)],
                          plan.generators, "inbox")  # fmt: skip
        out: dict[str, Any] = {"quiet_offered_per_s": quiet_rate, "flood_offered_per_s": flood_rate}
        try:
            out["alone"] = self._p2p_step(router, quiet, quiet_rate, duration)
            self._step += 1
            n = len(flood.children)
            lead = 1.5  # the flood starts first: fairness acts on its next ticks
            flood_cmd = {"cmd": "step", "kind": "p2p", "step": self._step, "rate": flood_rate / n,
                         "duration": duration + 2 * lead, "drain": plan.drain_s}  # fmt: skip
            for child in flood.children:
                child.send(flood_cmd)
            time.sleep(lead)
            before = self._send_counts()
            out["during_flood"] = during = self._p2p_step(router, quiet, quiet_rate, duration)
            counts = {k: v - before.get(k, 0) for k, v in self._send_counts().items()}
            calls = counts.get("accepted", 0) + counts.get("refused", 0)
            # the router's CPU in the measured window, over every send it answered then (accepted or
            # refused): what a refusal costs shows as the gap to an accepted send's cost
            out["window"] = {**counts, "node_cpu_s": during.get("node_cpu_s"),
                             "node_us_per_call": round(during.get("node_cpu_s", 0) * 1e6 / max(calls, 1), 1),
                             "flood_accepted_per_s": round(counts.get("flood_accepted", 0) / during["wall_s"], 1),
                             "flood_refused_per_s": round(counts.get("refused", 0) / during["wall_s"], 1)}  # fmt: skip
            flood_replies = flood.replies(duration + 2 * lead + plan.drain_s + 60)
            sent = sum(r["sent"] for r in flood_replies)
            out["flood"] = {
                "sent": sent,
                "refused": sum(r["errors"] for r in flood_replies),
                "delivered_per_s": round(sum(len(r["lat_us"]) for r in flood_replies) / (duration + 2 * lead), 1),
            }
            alone, during = out["alone"].get("p99_ms"), out["during_flood"].get("p99_ms")
            out["quiet_p99_ratio"] = round(during / alone, 2) if alone and during else None
        finally:
            quiet.stop()
            flood.stop()
        self.results["noisy"] = out

    def _sync_row(self, res: dict[str, Any], cpu: dict[str, float]) -> dict[str, Any]:
        times = sorted(res["sync_ms"])
        return {
            "messages": res["messages"],
            "calls": len(times),
            "p50_ms": round(times[len(times) // 2], 2),
            "max_ms": round(times[-1], 2),
            "node_cpu_ms_per_sync": round(cpu.get("node_cpu_s", 0) * 1000 / len(times), 2),
        }

    def presence(self) -> None:
        """Section 11 live presence: what one change of a user's devices costs the router with N
        sessions watching `mics.presence.<user>`. The same changes are measured without watchers, so the
        difference is the fan-out alone; raw Crossbar publishes the same event to the same subscribers."""
        plan, out = self.plan, {}
        watchers = [f"u{i}" for i in range(plan.presence_watchers)]
        target, observer = f"u{plan.presence_watchers}", f"u{plan.presence_watchers + 1}"
        toggle = {"cmd": "toggle", "target": target, "n": plan.presence_changes}
        for name, router in self.routers.items():
            realm = RAW_REALM if name == "raw" else "bench"
            toggler = self.gens(router, realm, "msgpack", [observer], 1, None)
            watching: Group | None = None
            try:
                (alone,), cpu_alone = self.measured(router, toggler, lambda t=toggler: t.run(toggle, 300))
                watching = self.gens(router, realm, "msgpack", watchers, plan.generators, f"mics.presence.{target}")
                watching.run({"cmd": "count"}, 30)
                spy = None
                if os.environ.get("MICS_BENCH_PROFILE_PRESENCE") and name == "mics":  # a py-spy look, on request
                    from bench import profile

                    spy = profile.start(router.worker.pid, 8, RESULTS / "profile-presence.txt")
                (watched,), cpu_watched = self.measured(router, toggler, lambda t=toggler: t.run(toggle, 300))
                if spy is not None:
                    from bench import profile

                    out["profile"] = profile.finish(spy)
                time.sleep(1.0)
                received = sum(r["presence_events"] for r in watching.run({"cmd": "count"}, 30))
                changes = plan.presence_changes
                per_change_ms = (cpu_watched["node_cpu_s"] - cpu_alone["node_cpu_s"]) * 1000 / changes
                kernel_ms = (cpu_watched["node_system_cpu_s"] - cpu_alone["node_system_cpu_s"]) * 1000 / changes
                out[name] = {
                    "watchers": len(watchers),
                    "changes": changes,
                    "events_received": received,
                    "events_per_change": round(received / changes, 1),
                    "node_cpu_ms_per_change_alone": round(cpu_alone["node_cpu_s"] * 1000 / changes, 3),
                    "node_cpu_ms_per_change_watched": round(cpu_watched["node_cpu_s"] * 1000 / changes, 3),
                    "fanout_cpu_ms_per_change": round(per_change_ms, 3),
                    "fanout_cpu_us_per_watcher": round(per_change_ms * 1000 / len(watchers), 2),
                    "fanout_kernel_ms_per_change": round(kernel_ms, 3),  # of the fan-out: system CPU (sends)
                    "seconds": [round(alone["seconds"], 2), round(watched["seconds"], 2)],
                }
            finally:
                toggler.stop()
                if watching is not None:
                    watching.stop()
        self.results["presence"] = out

    def agents(self) -> None:
        """Section 12: N agent answers streaming together, M chunks each (asked in one burst, or spread over
        a few seconds while all N still stream: steadier per-chunk numbers). MICS: a send to the agent, the
        node calls the backend's `mics.agent.<id>`, progressive results become `agent_chunk` events. Raw
        Crossbar: the client calls the backend, which publishes the same chunks to the client's topic.
        Router CPU per chunk; each chunk's delay from the agent's send to the client; the time from the
        trigger to the first chunk."""
        out: dict[str, Any] = {}
        for streams, chunks, interval_s, spread_s in self.plan.agent_loads:
            users = [f"u{i}" for i in range(streams)]
            row = {}
            for name, router in self.routers.items():
                realm = RAW_REALM if name == "raw" else "bench_ai"
                spec = {"system": name, "url": router.url, "realm": RAW_REALM, "tenant": "bench_ai", "secret": SECRET,
                        "agent_id": AGENT_ID}  # fmt: skip
                agent = Child("agent_backend", spec, self.workdir / f"agents-{streams}-{name}.log")
                group: Group | None = None
                try:
                    agent.reply(60)
                    group = self.gens(router, realm, "msgpack", users, self.plan.generators, "inbox")
                    self._step += 1
                    cmd = {"cmd": "agents", "step": self._step, "agent": AGENT_ID, "chunks": chunks,
                           "interval": interval_s, "spread_s": spread_s}  # fmt: skip
                    run = lambda g=group, c=cmd: g.run(c, 300)  # noqa: E731
                    replies, cpu = self.measured(router, group, run, {"agent": agent.ps})
                    row[name] = {**_agent_row(streams, chunks, interval_s, replies, cpu), "spread_s": spread_s}
                finally:
                    if group is not None:
                        group.stop()
                    agent.stop()
            out[f"{streams}_streams_{chunks}_chunks" + (f"_over_{spread_s:g}s" if spread_s else "_at_once")] = row
        self.results["agents"] = out

    def cluster(self) -> None:
        """Two MICS nodes sharing one Redis; every 1:1 send crosses nodes (senders on A write to users
        on B and the other way round). Compared with this run's one-node MICS 1:1 msgpack peak."""
        from harness import start_redis

        half = max(self.plan.p2p_users // 2, 2)
        users = {"a": [f"a{i}" for i in range(half)], "b": [f"b{i}" for i in range(half)]}
        redis, url = start_redis(self.workdir)
        nodes: list[Router] = []
        backends: list[Child] = []
        groups: list[Group] = []
        try:
            for name in ("a", "b"):
                node = start_mics(self.workdir, {"bench": TENANTS["bench"]}, f"bench-{name}", {"MICS_REDIS_URL": url})
                nodes.append(node)
                spec = {"url": node.url, "groups": {}, "wamp_tenants": {"bench": SECRET}}
                backends.append(Child("hooks", spec, self.workdir / f"cluster-hooks-{name}.log"))
                backends[-1].reply(60)
            other = {"a": users["b"], "b": users["a"]}
            for node, name in zip(nodes, ("a", "b"), strict=True):
                groups.append(self.gens(node, "bench", "msgpack", users[name], 1, "inbox", peers=other[name]))
            both = Group([c for g in groups for c in g.children])
            extra = {"node_b": nodes[1].worker, "redis": psutil.Process(redis.proc.pid)}
            self.results["cluster"] = self._two_routers(nodes[0], both, extra, "mics_2_nodes")
        finally:
            for g in groups:
                g.stop()
            for b in backends:
                b.stop()
            for node in nodes:
                node.stop()
            redis.stop()

    def _two_routers(self, first: Router, group: Group, extra: dict[str, Any], key: str) -> dict[str, Any]:
        """Ramp 1:1 over two cluster members (nodes or workers); CPU per message over both routers."""
        steps = self._ramp(first, group, extra=extra)
        for step in steps:
            both_s = step.get("node_cpu_s", 0) + step.get("node_b_cpu_s", 0)
            step["cluster_us_per_msg"] = round(both_s * 1e6 / max(step["received"], 1), 1)
        one_node = max((s["delivered_per_s"] for s in self.results.get("p2p_msgpack", {}).get("mics", [])),
                       default=None)  # fmt: skip
        peak = max((s["delivered_per_s"] for s in steps), default=0)
        return {
            key: steps,
            "peak_per_s": peak,
            "one_node_peak_per_s": one_node,
            "ratio_to_one_node": round(peak / one_node, 2) if one_node else None,
        }

    def workers(self) -> None:
        """One node with two router workers (MICS_ROUTER_WORKERS=2: cluster members on one port,
        sharing a redis-server); the kernel spreads the users, so about half the sends cross workers.
        Its tenant uses the HTTP hooks: a WAMP backend session would reach one worker only."""
        from harness import start_redis

        redis, url = start_redis(self.workdir)
        tenant = {**TENANT_DEFAULTS, "hook_transport": "http", "hook_base_url": self.hook_base_url,
                  "check_message_hook": False}  # fmt: skip
        env = {"MICS_REDIS_URL": url, "MICS_ROUTER_WORKERS": "2"}
        node: Router | None = None
        group: Group | None = None
        try:
            node = start_mics(self.workdir, {"bench_mw": tenant}, "bench-mw", env)
            deadline = time.monotonic() + 60  # Crossbar starts the second worker after the first is up
            while len(_answering(node)) < 2 and time.monotonic() < deadline:
                time.sleep(0.2)
            controller = psutil.Process(node.process.proc.pid)
            workers = controller.children()  # the router workers (their process titles are changed)
            node._worker = workers[0]
            users = [f"u{i}" for i in range(self.plan.p2p_users)]
            group = self.gens(node, "bench_mw", "msgpack", users, self.plan.generators, "inbox")
            extra = {"node_b": workers[1], "redis": psutil.Process(redis.proc.pid)}
            self.results["workers"] = self._two_routers(node, group, extra, "mics_2_workers")
        finally:
            if group is not None:
                group.stop()
            if node is not None:
                node.stop()
            redis.stop()

    def profile(self) -> None:
        """py-spy on the MICS router worker during 1:1 msgpack sends at ~60% of its measured saturation."""
        from bench import profile

        if not self.plan.profile_s or not shutil.which("py-spy", path=str(Path(sys.executable).parent)):
            return
        mics_steps = self.results.get("p2p_msgpack", {}).get("mics", [])
        top = max((s["delivered_per_s"] for s in mics_steps), default=2000)
        rate = max(500, round(top * 0.6, -2))
        router = self.routers["mics"]
        users = [f"u{i}" for i in range(self.plan.p2p_users)]
        group = self.gens(router, "bench", "msgpack", users, self.plan.generators, "inbox")
        try:
            rec = profile.start(router.worker.pid, self.plan.profile_s, RESULTS / "profile-mics.txt")
            step = self._p2p_step(router, group, rate, self.plan.profile_s + 1)
            summary = profile.finish(rec)
        finally:
            group.stop()
        self.results["profile"] = {"offered_per_s": rate, "step": step, **summary}

    # -- the run -------------------------------------------------------------------------------------
    def run(self, only: set[str]) -> dict[str, Any]:
        plan = self.plan
        users = [f"u{i}" for i in range(plan.max_user)]
        self.routers["raw"] = start_raw(self.workdir, [*users, "streamer"])  # the raw baseline's agent session
        self.routers["mics"] = start_mics(self.workdir, TENANTS)
        try:
            groups = {f"g{m}": m for m, _, _ in plan.groups}
            spec = {
                "url": self.routers["mics"].url,
                "groups": groups,
                "wamp_tenants": {t: c["secret"] for t, c in TENANTS.items()},
                "http_tenant": HTTP_TENANT,
            }
            for i in range(plan.hook_backends):  # the first one also serves the http tenant
                backend_spec = {**spec, "invoke": "roundrobin", "http_tenant": HTTP_TENANT if i == 0 else None}
                self.hooks.append(Child("hooks", backend_spec, self.workdir / f"hooks-{i}.log"))
                self.hook_base_url = self.hooks[-1].reply(60).get("hook_base_url") or self.hook_base_url
            for name, fn in (
                ("startup", self.startup),
                ("idle", self.idle),
                ("p2p_json", lambda: self.p2p("json")),
                ("p2p_msgpack", lambda: self.p2p("msgpack")),
                ("hook_wamp", lambda: self.hooked("wamp", "bench_hw")),
                ("hook_wamp_single", lambda: self.hooked("wamp_single", "bench_hw1")),
                ("hook_http", lambda: self.hooked("http", HTTP_TENANT["tenant_id"])),
                ("group", self.group_send),
                ("sync", self.sync),
                ("presence", self.presence),
                ("agents", self.agents),
                ("noisy", self.noisy),
                ("cluster", self.cluster),
                ("workers", self.workers),
                ("proxy", self.proxy),
                ("profile", self.profile),
            ):
                if only and name not in only:
                    continue
                t, self.scenario = time.time(), name
                print(f"bench: {name} ...", flush=True)
                try:
                    fn()
                except Exception as e:  # one broken scenario must not hide the others' numbers
                    self.results.setdefault("failures", {})[name] = str(e)[:1500]
                    print(f"bench: {name} FAILED: {str(e)[:1500]}", flush=True)
                self.results.setdefault("scenario_seconds", {})[name] = round(time.time() - t, 1)
        finally:
            for hooks in self.hooks:
                hooks.stop()
            for r in self.routers.values():
                r.stop()
        return self.results


def _agent_row(streams: int, chunks: int, interval_s: float, replies: list[dict[str, Any]],
               cpu: dict[str, float]) -> dict[str, Any]:  # fmt: skip
    received = [x for r in replies for x in r["chunk_lat_us"]]
    return {
        "streams": streams,
        "chunks_per_stream": chunks,
        "interval_ms": interval_s * 1000,
        "chunks_expected": streams * chunks,
        "chunks_received": len(received),
        "finals": sum(r["finals"] for r in replies),
        "errors": sum(r["errors"] for r in replies),
        "chunks_per_s": round(len(received) / cpu["wall_s"], 1),
        "node_us_per_chunk": round(cpu.get("node_cpu_s", 0) * 1e6 / max(len(received), 1), 1),
        "agent_us_per_chunk": round(cpu.get("agent_cpu_s", 0) * 1e6 / max(len(received), 1), 1),
        "chunk_delivery": latency_summary(received),
        "first_chunk_delivery": latency_summary([x for r in replies for x in r["first_chunk_lat_us"]]),
        "trigger_to_first_chunk": latency_summary([x for r in replies for x in r["trigger_to_first_us"]]),
        **cpu,
    }


def _answering(node: Router) -> set[str]:
    """The node ids that answered /health (each request may land on another worker)."""
    seen = set()
    for _ in range(8):
        try:
            with urllib.request.urlopen(node.http + "/health", timeout=1) as r:
                seen.add(json.loads(r.read())["node_id"])
        except OSError:
            pass
    return seen


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


def machine() -> dict[str, Any]:
    """Where and what was measured: the commit, and uncommitted changes to the node's code if any."""
    dirty = [line[3:] for line in _git("status", "--porcelain", "components").splitlines()]
    return {
        "commit": _git("rev-parse", "--short", "HEAD").strip(),
        "uncommitted_node_changes": dirty,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
        "mem_total_gb": round(psutil.virtual_memory().total / 2**30, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(prog="bench/run", description=__doc__.splitlines()[0])
    parser.add_argument("--short", action="store_true", help="CI mode: seconds, small loads")
    parser.add_argument("--only", default="", help="comma-separated scenarios (default: all)")
    parser.add_argument("--profile", type=float, default=None, help="seconds of py-spy sampling (0: none)")
    parser.add_argument("--keep", action="store_true", help="keep the work dir (node and generator logs)")
    parser.add_argument("--idle", type=int, default=None, help="idle connections to open (full: 10,000)")
    args = parser.parse_args()
    raise_fd_limit()
    plan = SHORT if args.short else FULL
    if args.profile is not None:
        plan = dataclasses.replace(plan, profile_s=args.profile)
    if args.idle is not None:
        plan = dataclasses.replace(plan, idle=args.idle)
    RESULTS.mkdir(parents=True, exist_ok=True)
    workdir = Path(tempfile.mkdtemp(prefix="mics-bench-"))
    started = time.time()
    report: dict[str, Any] = {
        "mode": "short" if plan.short else "full",
        "started": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "machine": machine(),
        "plan": plan.__dict__,
    }
    report["results"] = Bench(plan, workdir).run(set(filter(None, args.only.split(","))))
    report["machine"]["load_avg_at_end"] = [round(x, 2) for x in os.getloadavg()]
    report["seconds"] = round(time.time() - started, 1)
    from bench import report as rep

    stamp = time.strftime("%Y%m%d-%H%M%S")
    text = json.dumps(report, indent=1)
    (RESULTS / f"{report['mode']}-{stamp}.json").write_text(text)
    (RESULTS / f"latest-{report['mode']}.json").write_text(text)
    print(rep.table(report))
    if report["results"].get("profile"):
        print(rep.profile_text(report))
    try:
        png = rep.plot(report, RESULTS / f"latest-{report['mode']}.png")
        print(f"bench: plot {png}")
    except ImportError as e:
        print(f"bench: no plot ({e})")
    print(f"bench: results in {RESULTS}/latest-{report['mode']}.json ({report['seconds']} s)")
    if args.keep:
        print(f"bench: logs in {workdir}")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if report["results"].get("failures") else 0


if __name__ == "__main__":
    raise SystemExit(main())
