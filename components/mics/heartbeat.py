"""Liveness: one batched timer per node closes user sessions that went silent.

Activity is WAMP traffic from the session (any call); WebSocket pings do not count. The timer
ticks every half second, so a session silent for heartbeat_timeout_s is closed within one more
second — well inside the spec's two.
"""

from __future__ import annotations

from collections.abc import Iterable

from mics.tenants import TenantRuntime

TICK_S = 0.5


def sweep(tenants: Iterable[TenantRuntime], now: float) -> int:
    """Close every user session silent past its tenant's timeout; returns how many."""
    return sum(tenant.close_silent(now) for tenant in tenants)
