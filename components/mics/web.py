"""HTTP resources on the node's web transport: /health, /ready, /metrics.

Crossbar builds each from the router config (`"type": "resource"`), calling the class with the
path's `extra`.
"""

from __future__ import annotations

import json
from typing import Any

from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.web.resource import Resource
from twisted.web.server import Request

from mics.metrics import REGISTRY
from mics.node import NODE


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
    """Readiness: tenants loaded and their realms up; 503 until then."""

    def render_GET(self, request: Request) -> bytes:
        if not NODE.is_ready:
            return self._json(request, 503, {"status": "starting"})
        return self._json(request, 200, {"status": "ready", "tenants": len(NODE.tenants or ())})


class MetricsResource(Resource):
    """Prometheus exposition of every MICS collector."""

    isLeaf = True

    def __init__(self, extra: dict[str, Any] | None = None) -> None:
        super().__init__()

    def render_GET(self, request: Request) -> bytes:
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode())
        return generate_latest(REGISTRY)
