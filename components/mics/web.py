"""HTTP resources on the node's web transport: /health, /ready, /metrics.

Crossbar builds each from the router config (`"type": "resource"`), calling the class with the
path's `extra`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.internet.threads import deferToThread
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request
from txaio import make_logger

from mics.admin import hook_guards
from mics.metrics import NODE_READY, REGISTRY
from mics.node import NODE, Node

log = make_logger()


class _JsonResource(Resource):
    isLeaf = True

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        super().__init__()

    def _json(self, request: Request, status: int, value: dict[str, Any]) -> bytes:
        request.setResponseCode(status)
        request.setHeader(b"content-type", b"application/json")
        request.setHeader(b"cache-control", b"no-store")
        return json.dumps(value).encode()


class HealthResource(_JsonResource):
    """Liveness: the worker answers HTTP."""

    def render_GET(self, request: Request) -> bytes:
        node_id = NODE.settings.node_id if NODE.settings else None
        return self._json(request, 200, {"status": "ok", "node_id": node_id})


class ReadyResource(_JsonResource):
    """Readiness and what it depends on: 503 until the tenants are loaded and their realms up, and
    503 while Redis is unreachable in cluster mode (the node could accept connections but no
    message). Kafka and open hook breakers are reported, never fatal: events are spooled, and a
    tenant's hook outage is that tenant's, not the node's."""

    def render_GET(self, request: Request) -> bytes:
        if not NODE.is_ready:
            return self._json(request, 503, {"status": "starting"})
        report = readiness(NODE)
        return self._json(request, 200 if report["status"] == "ready" else 503, report)


def readiness(node: Node) -> dict[str, Any]:
    """The /ready body of a started node."""
    cluster = node.cluster
    redis = "off" if cluster is None else "up" if cluster.redis_reachable else "down"
    kafka = "off"
    if node.settings is not None and node.settings.kafka_bootstrap:
        module = sys.modules.get("mics.events.kafka")  # loaded once a tenant uses the Kafka sink
        brokers = module.brokers_reachable() if module is not None else {}
        kafka = "idle" if not brokers else "up" if all(brokers.values()) else "down"
    breakers: dict[str, dict[str, str]] = {}
    for tenant in node.tenants or ():
        states = {name: g.breaker.state for name, g in hook_guards(tenant).items() if g.breaker.state != "closed"}
        if states:
            breakers[tenant.tenant_id] = states
    return {
        "status": "unavailable" if redis == "down" else "ready",
        "node_id": node.settings.node_id if node.settings else None,
        "tenants": len(node.tenants or ()),
        "redis": redis,
        "kafka": kafka,
        "hook_breakers": breakers,
    }


def is_ready(node: Node) -> bool:
    return node.is_ready and readiness(node)["status"] == "ready"


NODE_READY.set_function(lambda: float(is_ready(NODE)))


class MetricsResource(Resource):
    """Prometheus exposition of every MICS collector."""

    isLeaf = True

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        super().__init__()

    def render_GET(self, request: Request) -> int:
        """Rendered in a thread: with hundreds of tenants the page is megabytes (about 2 ms of text per
        tenant), which must not stall the reactor. The collectors copy their children under a lock."""
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        finished = request.notifyFinish()
        finished.addErrback(lambda _f: None)  # the scraper went away: nothing to write to

        def write(page: bytes) -> None:
            if not finished.called:
                request.write(page)
                request.finish()

        def failed(f: Failure) -> None:
            log.failure("metrics page failed", failure=f)
            if not finished.called:
                request.setResponseCode(500)
                request.finish()

        deferToThread(generate_latest, REGISTRY).addCallbacks(write, failed)
        return NOT_DONE_YET
