"""Presence: which devices of a user are online, and on which node.

On one node the session table is the truth (`MemoryPresence`); in cluster mode presence lives in
Redis (`{tenant_id}:presence:{user_id}`, `RedisPresence`), written by the node that holds the
session and read by every node that must deliver to the user.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

from mics.sessions import SessionInfo


class Presence(ABC):
    """Online state of a tenant's users, across the nodes that serve the tenant."""

    @abstractmethod
    async def where(self, user_ids: Sequence[str]) -> dict[str, dict[str, str]]:
        """{user_id: {device_id: node_id}} for each asked user (empty when offline)."""

    @abstractmethod
    async def online_among(self, user_ids: Sequence[str]) -> set[str]:
        """Those of `user_ids` with at least one device online (a group's members, say)."""

    async def any_online(self, user_ids: Sequence[str]) -> bool:
        """Whether any of `user_ids` has a device online (a group send's delivered status)."""
        return bool(await self.online_among(user_ids))

    @abstractmethod
    async def sessions(self, user_id: str | None) -> list[dict[str, Any]]:
        """Session-list entries (session_id, user_id, device_id, node_id, online_at), all nodes."""

    @abstractmethod
    def joined(self, info: SessionInfo) -> None:
        """A session of this node joined."""

    @abstractmethod
    def left(self, info: SessionInfo) -> None:
        """A session of this node left."""

    def retry(self) -> None:  # noqa: B027 - optional
        """Write again what failed to reach the shared store (called from the node's tick)."""

    async def reap(self, node_id: str) -> list[dict[str, Any]]:
        """Remove what a lost node left behind; returns the removed session entries."""
        return []

    async def get(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The `mics.presence.get` answer."""
        found = await self.where(user_ids)
        return {u: {"online": bool(found[u]), "devices": sorted(found[u])} for u in user_ids}
