"""Every metric the alert rules and the Grafana dashboard (docker/monitoring/) name is exported by a
real node. A labelled metric shows samples only once a child exists, so the test makes the traffic
that creates them (joins, a refused join, sends, a refused send, a kick, hook calls) and then asks
for samples of every name, except the few that only cluster mode or the Kafka sink create; of those
it asks for the `# HELP` line, which the node exports from its start."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterable
from typing import Any

import pytest
import pytest_twisted
import yaml
from autobahn.wamp.exception import ApplicationError

from harness import ROOT, http_get
from wamp_clients import JoinRefused, sleep

MONITORING = ROOT / "docker" / "monitoring"
METRIC_NAME = re.compile(r"\b((?:mics|process)_[a-z0-9_]+)\b")
SUFFIXES = ("_bucket", "_count", "_sum", "_created")

# Exported (HELP and TYPE lines) from the start, but with samples only under conditions this node
# does not have.
NO_SAMPLES_HERE = {
    "mics_redis_failures_total": "cluster mode, when a Redis command fails",
    "mics_cluster_sent_total": "cluster mode",
    "mics_cluster_received_total": "cluster mode",
    "mics_event_dlq_size": "tenants with the Kafka sink",
}


def referenced_names() -> set[str]:
    rules = yaml.safe_load((MONITORING / "alerts.yml").read_text())
    exprs = [rule["expr"] for group in rules["groups"] for rule in group["rules"]]
    dashboard = json.loads((MONITORING / "grafana-dashboard.json").read_text())
    exprs += [t["expr"] for panel in dashboard["panels"] for t in panel.get("targets", [])]
    exprs += [v["definition"] for v in dashboard["templating"]["list"] if "definition" in v]
    return {m for expr in exprs for m in METRIC_NAME.findall(expr)}


def family(name: str, known: Iterable[str]) -> str | None:
    """The exported family a series name belongs to (histogram series carry suffixes)."""
    known = set(known)
    for candidate in [name, *(name[: -len(s)] for s in SUFFIXES if name.endswith(s))]:
        if candidate in known:
            return candidate
    return None


def scrape(url: str) -> tuple[set[str], set[str]]:
    """(names with a HELP line, names of every sample) of one /metrics answer."""
    status, body = http_get(f"{url}/metrics")
    assert status == 200
    helped, sampled = set(), set()
    for line in body.decode().splitlines():
        if line.startswith("# HELP "):
            helped.add(line.split()[2])
        elif line and not line.startswith("#"):
            sampled.add(re.split(r"[{ ]", line, maxsplit=1)[0])
    return helped, sampled


def test_the_rules_and_the_dashboard_name_metrics_at_all():
    names = referenced_names()
    assert {"mics_hook_breaker_open", "mics_node_ready", "mics_joins_total", "process_cpu_seconds_total"} <= names
    assert len(names) >= 20, sorted(names)


@pytest_twisted.ensureDeferred
async def test_every_metric_the_rules_and_dashboard_name_is_exported_by_a_node(make_tenant):
    tenant = await make_tenant(hooks="http", max_connections_per_user=1, max_payload_bytes=16)
    alice = await tenant.user("alice", "phone")
    await tenant.user("bob", "laptop")
    with pytest.raises(JoinRefused):  # a second device over the per-user limit
        await tenant.user("alice", "tablet")
    await alice.call("mics.message.send", to_user_id="bob", body="hi")
    with pytest.raises(ApplicationError):
        await alice.call("mics.message.send", to_user_id="bob", body="x" * 100)
    await tenant.admin.call("mics.admin.session.kick", tenant_id=tenant.tenant_id, user_id="bob")

    names = referenced_names()
    missing: Any = None
    deadline = time.monotonic() + 15  # held-message gauges are refreshed every 5 s
    while time.monotonic() < deadline:
        helped, sampled = scrape(tenant.node.http)
        sampled_families = {family(s, helped) for s in sampled}
        not_exported = sorted(n for n in names if family(n, helped) is None)
        assert not not_exported, f"named by the rules or the dashboard, not exported: {not_exported}"
        missing = sorted(n for n in names if family(n, helped) not in {*sampled_families, *NO_SAMPLES_HERE})
        if not missing:
            break
        await sleep(0.5)
    assert not missing, f"exported but no samples after the traffic: {missing}"
    named_families = {family(n, helped) for n in names}
    assert set(NO_SAMPLES_HERE) <= named_families, "the exceptions are names the rules or the dashboard use"
