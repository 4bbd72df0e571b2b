"""Presence read from this node's session table: exact, but blind to other nodes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mics.presence import Presence
from mics.sessions import SessionInfo, SessionTable


class MemoryPresence(Presence):
    def __init__(self, sessions: SessionTable, node_id: str) -> None:
        self._sessions = sessions
        self._node_id = node_id

    async def where(self, user_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        devices = self._sessions.devices
        node_id = self._node_id
        return {u: dict.fromkeys(devices(u), node_id) for u in user_ids}

    async def online_among(self, user_ids: Sequence[str]) -> set[str]:
        # dict-view set operations loop in C: no Python code per member of a large group
        return self._sessions.by_user.keys() & user_ids

    async def any_online(self, user_ids: Sequence[str]) -> bool:
        return not self._sessions.by_user.keys().isdisjoint(user_ids)

    async def sessions(self, user_id: str | None) -> list[dict[str, Any]]:
        found = self._sessions.by_id.values()
        return [s.to_kwargs(self._node_id) for s in found if user_id is None or s.user_id == user_id]

    def joined(self, info: SessionInfo, device_added: bool = True) -> None:
        """The session table is the presence; a new device is a change."""
        if device_added:
            self._changed(info.user_id, sorted(self._sessions.devices(info.user_id)))

    def left(self, info: SessionInfo, device_removed: bool = True) -> None:
        if device_removed:
            self._changed(info.user_id, sorted(self._sessions.devices(info.user_id)))
