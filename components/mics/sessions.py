"""Who is connected to this node: (tenant, user, device) -> session, connection counts, replacement."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(slots=True)
class SessionInfo:
    """One joined user session. `last_active` is reactor time of its last call (heartbeat)."""

    session_id: int
    tenant_id: str
    user_id: str
    device_id: str
    online_at: int  # ms since the epoch
    last_active: float

    def to_kwargs(self, node_id: str) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "user_id": self.user_id,
            "device_id": self.device_id,
            "node_id": node_id,
            "online_at": self.online_at,
        }


class SessionTable:
    """User sessions of one tenant on this node, plus reservations for joins still in flight."""

    __slots__ = ("_pending", "by_id", "by_user", "connections")

    def __init__(self) -> None:
        self.by_id: dict[int, SessionInfo] = {}
        self.by_user: dict[str, dict[str, SessionInfo]] = {}
        self.connections = 0  # distinct user+device slots in use (a replaced session holds none)
        # (user_id, device_id) -> expiry: joins that passed auth but are not yet WELCOMEd
        self._pending: dict[tuple[str, str], float] = {}

    def __len__(self) -> int:
        return len(self.by_id)

    def add(self, info: SessionInfo) -> SessionInfo | None:
        """Register a joined session; returns an older session of the same user+device to replace."""
        self._pending.pop((info.user_id, info.device_id), None)
        self.by_id[info.session_id] = info
        devices = self.by_user.setdefault(info.user_id, {})
        older = devices.get(info.device_id)
        if older is None:
            self.connections += 1
        devices[info.device_id] = info
        return older if older is not None and older.session_id != info.session_id else None

    def remove(self, session_id: int) -> SessionInfo | None:
        info = self.by_id.pop(session_id, None)
        if info is None:
            return None
        devices = self.by_user.get(info.user_id)
        if devices is not None and devices.get(info.device_id) is info:
            del devices[info.device_id]
            self.connections -= 1
            if not devices:
                del self.by_user[info.user_id]
        return info

    def get(self, session_id: int) -> SessionInfo | None:
        return self.by_id.get(session_id)

    def devices(self, user_id: str) -> dict[str, SessionInfo]:
        return self.by_user.get(user_id) or {}

    def sessions_of(self, user_id: str, device_id: str | None = None) -> list[SessionInfo]:
        """Every session of the user (or of one device), including ones being replaced."""
        return [
            s for s in self.by_id.values() if s.user_id == user_id and (device_id is None or s.device_id == device_id)
        ]

    # -- limits ---------------------------------------------------------------------------------
    def reserve(self, user_id: str, device_id: str, until: float) -> None:
        self._pending[(user_id, device_id)] = until

    def would_exceed(self, user_id: str, device_id: str, max_total: int, max_per_user: int) -> str | None:
        """Which limit a new join of user+device would break ('tenant'/'user'), or None.

        A join that replaces the same user+device takes no new slot.
        """
        key = (user_id, device_id)
        devices = self.by_user.get(user_id) or {}
        if device_id in devices or key in self._pending:
            return None
        if self.connections + len(self._pending) >= max_total:
            return "tenant"
        user_pending = sum(1 for (u, _d) in self._pending if u == user_id)
        if len(devices) + user_pending >= max_per_user:
            return "user"
        return None

    def sweep_pending(self, now: float) -> None:
        for key in [k for k, until in self._pending.items() if until <= now]:
            del self._pending[key]
