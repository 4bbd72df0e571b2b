"""Presence: which devices of a user are online, and on which node.

On one node the session table is the truth (`MemoryPresence`); in cluster mode presence lives in
Redis (`{tenant_id}:presence:{user_id}`, `RedisPresence`), written by the node that holds the
session and read by every node that must deliver to the user.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from typing import Any

from txaio import make_logger

from mics.sessions import SessionInfo

log = make_logger()

# (user_id, online devices): a user's set of online devices changed (section 11, live presence)
OnChange = Callable[[str, list[str]], None]


class Presence(ABC):
    """Online state of a tenant's users, across the nodes that serve the tenant.

    `on_change` (set by the tenant runtime) hears when a user's set of online devices changes, as
    this node learns it: from its own sessions, and in a cluster from the shared store's answer to
    this node's writes. Changes made on other nodes reach this node only for users it `watch`es.
    """

    on_change: OnChange | None = None

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
    def joined(self, info: SessionInfo, device_added: bool = True) -> None:
        """A session of this node joined; `device_added`: the device was not online here before
        (False when the session replaces the same device's older one on this node)."""

    @abstractmethod
    def left(self, info: SessionInfo, device_removed: bool = True) -> None:
        """A session of this node left; `device_removed`: the device is not online here any more
        (False when a newer session of the same device replaced it)."""

    def watch(self, user_id: str) -> None:  # noqa: B027 - optional
        """This node has subscribers of `mics.presence.<user_id>` now: changes elsewhere must reach it."""

    def unwatch(self, user_id: str) -> None:  # noqa: B027 - optional
        """This node's last subscriber of `mics.presence.<user_id>` left."""

    @property
    def needs_watch(self) -> bool:
        """Whether `watch`/`unwatch` matter (other nodes must learn where the watchers are)."""
        return False

    def _changed(self, user_id: str, devices: list[str]) -> None:
        """Tell `on_change`; its trouble must never break the session bookkeeping that called it."""
        if self.on_change is None:
            return
        try:
            self.on_change(user_id, devices)
        except Exception:
            log.failure("presence change of {user_id} not published", user_id=user_id)

    async def settled(self) -> None:  # noqa: B027 - optional
        """Wait until this node's presence writes in flight have landed (or failed)."""

    def retry(self) -> None:  # noqa: B027 - optional
        """Write again what failed to reach the shared store (called from the node's tick)."""

    async def reap(self, node_id: str) -> list[dict[str, Any]]:
        """Remove what a lost node left behind; returns the removed session entries."""
        return []

    async def get(self, user_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
        """The `mics.presence.get` answer."""
        found = await self.where(user_ids)
        return {u: {"online": bool(found[u]), "devices": sorted(found[u])} for u in user_ids}
