"""Presence: which devices of a user are online, and on which node.

On one node the session table is the truth (`MemoryPresence`); in cluster mode presence lives in
Redis (`{tenant_id}:presence:{user_id}`), which is not built yet (docs/architecture.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any


class Presence(ABC):
    """Online state of a tenant's users."""

    @abstractmethod
    def get(self, user_ids: list[str]) -> dict[str, dict[str, Any]]:
        """{user_id: {"online": bool, "devices": [device_id, ...]}} for each asked user."""
