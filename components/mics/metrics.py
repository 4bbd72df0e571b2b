"""Every Prometheus collector MICS exports, defined once. Children are bound per tenant at setup."""

from __future__ import annotations

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    disable_created_metrics,
)

# no `*_created` series: a node exports every series per tenant, and those double a counter's lines
# (Prometheus itself does not need them to compute rates)
disable_created_metrics()
REGISTRY = CollectorRegistry(auto_describe=True)
# CPU seconds, resident memory, open fds (process_*) and the Python version (python_info) of the
# router worker that serves /metrics
PROCESS = ProcessCollector(registry=REGISTRY)
PLATFORM = PlatformCollector(registry=REGISTRY)

MESSAGES = Counter(
    "mics_messages_total", "Messages accepted, by type and delivery", ["tenant", "type", "delivered"], registry=REGISTRY
)
SEND_FAILURES = Counter(
    "mics_send_failures_total", "Sends refused, by error reason", ["tenant", "reason"], registry=REGISTRY
)
LIMIT_HITS = Counter(
    "mics_limit_hits_total",
    "Requests refused by a limit (max_message_qps, max_user_message_qps, max_joins_per_ip_per_s, max_connections,"
    " max_connections_per_user, max_payload_bytes)",
    ["tenant", "limit"],
    registry=REGISTRY,
)
PUSH = Counter(
    "mics_offline_push_total",
    "Offline push triggers: emitted, collapsed (another one for the same user and conversation was recent),"
    " online (the user came back within push_delay_s)",
    ["tenant", "outcome"],
    registry=REGISTRY,
)
PRESENCE_EVENTS = Counter(
    "mics_presence_events_total",
    "Live presence changes published to this node's watchers (mics.presence.<user_id>)",
    ["tenant"],
    registry=REGISTRY,
)
AGENT_OUTCOMES = ("ok", "timeout", "error", "rate_limited", "unavailable")  # AGENT_CALLS "outcome"
AGENT_CALLS = Counter(
    "mics_agent_calls_total",
    "AI agent calls by agent and outcome: ok, timeout, error, rate_limited (nothing called), unavailable",
    ["tenant", "agent", "outcome"],
    registry=REGISTRY,
)
AGENT_FIRST_CHUNK_SECONDS = Histogram(
    "mics_agent_first_chunk_seconds",
    "Time from an agent's trigger to its first streamed chunk",
    ["tenant", "agent"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
    registry=REGISTRY,
)
AGENT_SECONDS = Histogram(
    "mics_agent_duration_seconds",
    "Time from an agent's trigger to its final message (any outcome but rate_limited)",
    ["tenant", "agent"],
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0),
    registry=REGISTRY,
)
AGENT_CHUNKS = Counter(
    "mics_agent_chunks_total", "agent_chunk messages streamed, by agent", ["tenant", "agent"], registry=REGISTRY
)
NODE_READY = Gauge(  # computed at scrape time by mics.web
    "mics_node_ready", "1 while /ready answers 200 (tenants loaded; in cluster mode Redis reachable)", registry=REGISTRY
)
CONNECTIONS = Gauge("mics_connections", "User sessions online on this node", ["tenant"], registry=REGISTRY)
JOINS = Counter("mics_joins_total", "Join attempts by outcome", ["tenant", "outcome"], registry=REGISTRY)
CLOSES = Counter("mics_closes_total", "Sessions the node closed, by reason", ["tenant", "reason"], registry=REGISTRY)
PROCEDURE_SECONDS = Histogram(
    "mics_procedure_duration_seconds",
    "Time a MICS procedure took in the router worker, from arguments to answer (errors included)",
    ["tenant", "procedure"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0),
    registry=REGISTRY,
)
HTTP_API = Counter(
    "mics_http_api_requests_total",
    "Backend HTTP API requests by action and HTTP status (unknown tenants and actions as '-')",
    ["tenant", "action", "status"],
    registry=REGISTRY,
)
HOOK_OUTCOMES = ("ok", "rejected", "timeout", "failure", "queue_full", "breaker_open")  # HOOK_CALLS "outcome"
HOOK_CALLS = Counter(
    "mics_hook_calls_total", "Hook calls by hook and outcome", ["tenant", "hook", "outcome"], registry=REGISTRY
)
HOOK_BATCH_SIZE = Histogram(
    "mics_hook_batch_messages",
    "Messages per batched check-message call (hook_batch_max > 1)",
    ["tenant"],
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1000),
    registry=REGISTRY,
)
HOOK_SECONDS = Histogram(
    "mics_hook_duration_seconds",
    "Hook call latency",
    ["tenant", "hook"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.5),
    registry=REGISTRY,
)
BREAKER_OPEN = Gauge(
    "mics_hook_breaker_open", "1 while a hook's breaker is open", ["tenant", "hook"], registry=REGISTRY
)
BUFFER_HELD = Gauge("mics_buffer_held_messages", "Messages held for catch-up", ["tenant"], registry=REGISTRY)
BUFFER_BYTES = Gauge("mics_buffer_held_bytes", "Bytes held for catch-up", ["tenant"], registry=REGISTRY)
EVENTS = Counter("mics_events_total", "Events by sink and outcome", ["tenant", "sink", "outcome"], registry=REGISTRY)
EVENTS_DROPPED = Counter(
    "mics_events_dropped_total",
    "Events that will never reach a sink, by sink and reason: unencodable, write_failed, sink_failed, queue_full, "
    "dlq_full",
    ["tenant", "sink", "reason"],
    registry=REGISTRY,
)
EVENT_QUEUE = Gauge("mics_event_queue_length", "Events waiting for a sink", ["tenant"], registry=REGISTRY)
EVENT_DLQ = Gauge("mics_event_dlq_size", "Dead letters held for re-push", ["tenant"], registry=REGISTRY)
CLUSTER_SENT = Counter(
    "mics_cluster_sent_total",
    "Operations this node asked of other nodes (1:1 deliveries are published by the Redis send script instead)",
    ["op"],
    registry=REGISTRY,
)
CLUSTER_RECEIVED = Counter(
    "mics_cluster_received_total", "Operations other nodes asked of this node", ["op"], registry=REGISTRY
)
CLUSTER_MEMBERS = Gauge(
    "mics_cluster_members", "Cluster members alive, this one included, as of the last check", registry=REGISTRY
)
CLUSTER_REAPED = Counter("mics_cluster_reaped_total", "Dead members this node cleaned up after", registry=REGISTRY)
RATE_SHARE = Gauge(
    "mics_message_rate_share",
    "Cluster mode: this node's share of the tenant's max_message_qps, from the nodes' load reports",
    ["tenant"],
    registry=REGISTRY,
)
RELAYED_CALLS = Counter(
    "mics_relayed_calls_total",
    "Calls this node's router had no callee for, served by another node, by outcome (ok, error, unavailable)",
    ["tenant", "outcome"],
    registry=REGISTRY,
)
REDIS_FAILURES = Counter(
    "mics_redis_failures_total", "Redis commands that failed, by what they were for", ["what"], registry=REGISTRY
)
ROUTER_BUSY = Gauge(
    "mics_router_busy_ratio", "CPU time of the router worker over wall time, as of the last tick", registry=REGISTRY
)
HELD_BACK = Counter(
    "mics_fair_share_held_back_total",
    "Times a connection of a tenant over its fair share was not read for a moment (node saturated)",
    ["tenant"],
    registry=REGISTRY,
)
FAIR_SHARE_CAP = Gauge(
    "mics_fair_share_cap", "Sends/s a tenant may make while the node is saturated (absent: not capped)", ["tenant"],
    registry=REGISTRY,
)  # fmt: skip
GUARD_CLOSES = Counter(
    "mics_guard_closes_total",
    "Connections the node closed for holding resources: handshake_timeout, hello_timeout, slow_consumer",
    ["reason"],
    registry=REGISTRY,
)
LOGIN_THROTTLE = Counter(
    "mics_login_throttle_total",
    "wampcra logins: failed (bad signature) and refused (too many recent failures from the address)",
    ["outcome"],
    registry=REGISTRY,
)
GC_PAUSE = Histogram(
    "mics_gc_pause_seconds",
    "Garbage-collector pauses of the router worker (they stall every session)",
    ["generation"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25),
    registry=REGISTRY,
)


def hook_calls(tenant_id: str) -> dict[str, dict[str, int]]:
    """{hook: {outcome: count}} of one tenant's hook calls so far (for mics.admin.stats; the
    counters outlive the hook objects, which are rebuilt on every config change)."""
    calls: dict[str, dict[str, int]] = {}
    for family in HOOK_CALLS.collect():
        for sample in family.samples:
            if sample.name.endswith("_total") and sample.labels["tenant"] == tenant_id:
                calls.setdefault(sample.labels["hook"], {})[sample.labels["outcome"]] = int(sample.value)
    return calls
