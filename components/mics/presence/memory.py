"""Presence read from this node's session table: exact, but blind to other nodes."""

from __future__ import annotations

from typing import Any

from mics.presence import Presence
from mics.sessions import SessionTable


class MemoryPresence(Presence):
    def __init__(self, sessions: SessionTable) -> None:
        self._sessions = sessions

    def get(self, user_ids: list[str]) -> dict[str, dict[str, Any]]:
        out = {}
        for user_id in user_ids:
            devices = sorted(self._sessions.devices(user_id))
            out[user_id] = {"online": bool(devices), "devices": devices}
        return out
