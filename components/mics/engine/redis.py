"""The engine of a cluster: presence and buffers in Redis, deliveries forwarded between nodes.

A 1:1 inbox message is one Redis script (RedisBuffer.append_routed): it reads both users'
presence, holds the message (and the sender's copy), and publishes it, with its seq, to every
other node where either user has a device. This node delivers to its own devices from its
session table, which is exact even while a join's presence write is still on its way to Redis.
A group delivery is local plus one broadcast: each node's router picks its own subscribers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, ClassVar

import txredisapi

from mics import uris
from mics.buffer.redis import RedisBuffer
from mics.cluster import DELIVER, KICK, REPLACE, Cluster, frame_header
from mics.cluster.redis import TenantKeys, node_channel
from mics.cluster.relay import WampRelay
from mics.config import TenantConfig
from mics.engine import Engine, EngineFactory, Held, Holds, sent_of
from mics.presence.redis import RedisPresence
from mics.router import RealmPort
from mics.sessions import SessionTable

_CHANNEL_PREFIX = node_channel("")


class RedisEngine(Engine):
    transient_errors: ClassVar[tuple[type[BaseException], ...]] = (txredisapi.RedisError,)

    buffer: RedisBuffer

    def __init__(
        self, tenant_id: str, node_id: str, sessions: SessionTable, port: RealmPort, buffer: RedisBuffer,
        presence: RedisPresence, cluster: Cluster,
    ) -> None:  # fmt: skip
        super().__init__(tenant_id, node_id, sessions, port, buffer, presence)
        self._cluster = cluster
        self._keys = TenantKeys(tenant_id)

    async def inbox(
        self, to_user_id: str, copy_for: str | None, exclude: int | None, message: dict[str, Any], size: int,
        holds: Holds, remember_s: float = 0,
    ) -> Held:  # fmt: skip
        node_id, tenant_id = self.node_id, self.tenant_id
        frames = (frame_header(node_id, tenant_id, to_user_id), frame_header(node_id, tenant_id, copy_for or ""))
        local = self.sessions.devices
        to_here = bool(local(to_user_id))
        routed = await self.buffer.append_routed(
            to_user_id, copy_for, message, size, (holds.online_s, holds.offline_s, holds.copy_s), node_id, frames,
            _CHANNEL_PREFIX, sent_of(message) if remember_s else None, remember_s, to_here,
        )  # fmt: skip
        if to_here:
            self.port.deliver(uris.inbox_topic(to_user_id), (to_user_id,), exclude, {**message, "seq": routed.seq_to})
        if copy_for is not None and local(copy_for):
            copy = {**message, "seq": routed.seq_from}
            self.port.deliver(uris.inbox_topic(copy_for), (copy_for,), exclude, copy)
        return Held(routed.seq_to, routed.seq_from, routed.to_online or to_here)

    async def group(self, topic: str, members: Sequence[str], exclude: int | None, message: dict[str, Any]) -> None:
        self.port.deliver(topic, members, exclude, message)
        self._cluster.broadcast([DELIVER, self.tenant_id, topic, list(members), message])

    async def stream(self, topic: str, members: Sequence[str], message: dict[str, Any]) -> None:
        """The pool's publishes may overtake each other: returns once Redis took this one."""
        self.port.deliver(topic, members, None, message)
        await self._cluster.broadcast([DELIVER, self.tenant_id, topic, list(members), message])

    async def live(self, to_user_id: str, exclude: int | None, message: dict[str, Any]) -> bool:
        devices = (await self.presence.where((to_user_id,)))[to_user_id]
        topic = uris.inbox_topic(to_user_id)
        for node_id in set(devices.values()):
            if node_id == self.node_id:
                self.port.deliver(topic, (to_user_id,), exclude, message)
            else:
                self._cluster.send_to(node_id, [DELIVER, self.tenant_id, topic, [to_user_id], message])
        return bool(devices)

    async def kick_elsewhere(self, user_id: str, device_id: str | None) -> int:
        remote = [
            s for s in await self.presence.sessions(user_id)
            if s["node_id"] != self.node_id and (device_id is None or s["device_id"] == device_id)
        ]  # fmt: skip
        for node_id in {s["node_id"] for s in remote}:
            self._cluster.send_to(node_id, [KICK, self.tenant_id, user_id, device_id])
        return len(remote)

    async def devices_elsewhere(self, user_id: str, device_id: str) -> int:
        try:
            devices = (await self.presence.where((user_id,)))[user_id]
        except txredisapi.RedisError:
            return 0  # Redis unreachable: the per-user limit holds per node, as on one node
        return sum(1 for device, node in devices.items() if node != self.node_id and device != device_id)

    async def claim_once(self, key: str, ttl_s: float) -> bool:
        claimed = await self._cluster.redis.execute_command(
            "SET", self._keys.once(key), b"1", "NX", "PX", max(1, int(ttl_s * 1000))
        )
        return claimed is not None


class RedisEngines(EngineFactory):
    """Every tenant's engine shares the node's Redis connections and cluster membership."""

    transient_errors = RedisEngine.transient_errors

    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster

    def make(
        self, tenant_id: str, config: TenantConfig, sessions: SessionTable, port: RealmPort,
        clock: Callable[[], float],
    ) -> Engine:  # fmt: skip
        cluster = self._cluster
        redis = cluster.redis

        def replaced(node_id: str, session_id: int) -> None:
            """This device connected here while its older session lives on another node: end that one."""
            cluster.send_to(node_id, [REPLACE, tenant_id, session_id])

        buffer = RedisBuffer(tenant_id, config.offline_max_per_user, config.offline_max_bytes, clock, redis)
        presence = RedisPresence(tenant_id, cluster.node_id, redis, sessions, replaced)
        return RedisEngine(tenant_id, cluster.node_id, sessions, port, buffer, presence, cluster)

    def relay(self, tenant_id: str, port: RealmPort, reactor: Any) -> WampRelay:
        return WampRelay(tenant_id, self._cluster, port, reactor)
