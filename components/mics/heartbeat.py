"""Liveness: one batched timer per node closes user sessions that went silent.

Activity is WAMP traffic from the session (any call); WebSocket pings do not count. The timer
ticks every half second, so a session silent for heartbeat_timeout_s is closed within one more
second — well inside the spec's two.
"""

from __future__ import annotations

from collections.abc import Iterable

from mics import errors
from mics.tenants import TenantRuntime

TICK_S = 0.5


def sweep(tenants: Iterable[TenantRuntime], now: float) -> int:
    """Close every user session silent past its tenant's timeout; returns how many."""
    closed = 0
    for tenant in tenants:
        component = tenant.component
        if component is None or not tenant.sessions.by_id:
            continue
        deadline = now - tenant.config.heartbeat_timeout_s
        for info in [s for s in tenant.sessions.by_id.values() if s.last_active < deadline]:
            info.last_active = float("inf")  # closing: don't ask again while the kill is in flight
            component.close_session(
                info.session_id, errors.CLOSE_HEARTBEAT_TIMEOUT, "no activity for heartbeat_timeout_s"
            )
            closed += 1
    return closed
