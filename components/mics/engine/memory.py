"""The engine of a single node: session-table presence, in-memory buffer, local deliveries only.

What it can't do: serve a user whose devices sit on several nodes, or survive a restart (the
buffer's epoch changes, clients see complete=false). A cluster needs `RedisEngine`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from mics import uris
from mics.buffer.memory import MemoryBuffer
from mics.config import TenantConfig
from mics.engine import Engine, EngineFactory, Held, Holds
from mics.presence.memory import MemoryPresence
from mics.router import RealmPort
from mics.sessions import SessionTable

MAX_CLAIMS = 200_000


class MemoryEngine(Engine):
    def __init__(self, *args: Any, clock: Callable[[], float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clock = clock
        self._claims: OrderedDict[str, float] = OrderedDict()  # key -> expiry, oldest first

    async def inbox(
        self, to_user_id: str, copy_for: str | None, exclude: int | None, message: dict[str, Any], size: int,
        holds: Holds,
    ) -> Held:  # fmt: skip
        devices = self.sessions.devices
        online = bool(devices(to_user_id))
        entry = dict(message)
        seq = await self.buffer.append(to_user_id, entry, size, holds.online_s if online else holds.offline_s)
        if online:
            self.port.deliver(uris.inbox_topic(to_user_id), (to_user_id,), exclude, entry)
        copy_seq = None
        if copy_for is not None:
            copy = dict(message)
            copy_seq = await self.buffer.append(copy_for, copy, size, holds.copy_s)
            if devices(copy_for):
                self.port.deliver(uris.inbox_topic(copy_for), (copy_for,), exclude, copy)
        return Held(seq, copy_seq, online)

    async def group(self, topic: str, members: Sequence[str], exclude: int | None, message: dict[str, Any]) -> None:
        self.port.deliver(topic, members, exclude, message)

    async def live(self, to_user_id: str, exclude: int | None, message: dict[str, Any]) -> bool:
        if not self.sessions.devices(to_user_id):
            return False
        self.port.deliver(uris.inbox_topic(to_user_id), (to_user_id,), exclude, message)
        return True

    async def kick_elsewhere(self, user_id: str, device_id: str | None) -> int:
        return 0  # there is no elsewhere

    async def claim_once(self, key: str, ttl_s: float) -> bool:
        now, claims = self._clock(), self._claims
        while claims and next(iter(claims.values())) <= now:
            claims.popitem(last=False)
        if key in claims:
            return False
        claims[key] = now + ttl_s
        if len(claims) > MAX_CLAIMS:
            claims.popitem(last=False)
        return True


class MemoryEngines(EngineFactory):
    def __init__(self, node_id: str) -> None:
        self._node_id = node_id

    def make(
        self, tenant_id: str, config: TenantConfig, sessions: SessionTable, port: RealmPort,
        clock: Callable[[], float],
    ) -> Engine:  # fmt: skip
        buffer = MemoryBuffer(tenant_id, config.offline_max_per_user, config.offline_max_bytes, clock)
        presence = MemoryPresence(sessions, self._node_id)
        return MemoryEngine(tenant_id, self._node_id, sessions, port, buffer, presence, clock=clock)
