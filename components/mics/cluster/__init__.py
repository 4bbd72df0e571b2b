"""Cluster mode: nodes that share Redis and forward to each other what happens elsewhere.

Nodes are alike. Each keeps a heartbeat key with a short TTL and listens on its own channel
(`mics:fwd:<node_id>`) and on the broadcast channel. A delivery for a user whose device sits on
another node is published to that node's channel and delivered there through its router; a group
delivery is broadcast, and each node's router fan-out picks its own subscribers. When a node's
heartbeat key expires, one live node (holding a lock) removes the dead node's presence entries.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import msgpack
from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from txaio import make_logger

from mics import metrics, uris
from mics.cluster import redis as keys
from mics.cluster.redis import SubscriberFactory, connect_pool
from mics.cluster.sentinel import SentinelLink
from mics.config import RedisAddress, parse_url

log = make_logger()

HEARTBEAT_S = 1.0
ALIVE_TTL_MS = 5000  # a node is dead when it missed this long of heartbeats
REAP_EVERY_S = 2.0
REAP_LOCK_MS = 30_000

# operations one node asks of another
DELIVER = "deliver"  # [tenant_id, topic, authids | None, kwargs]: local fan-out
KICK = "kick"  # [tenant_id, user_id, device_id | None]
TENANT = "tenant"  # [tenant_id]: its config changed in Redis
REPLACE = "replace"  # [tenant_id, session_id]: that device connected again on another node
PRESENCE = "presence"  # [tenant_id, user_id, devices, ts]: a watched user's devices changed
# cross-node WAMP (mics.cluster.relay): a backend on any node serves the whole cluster
CALL = "call"  # [tenant_id, request_id, procedure, args, kwargs, caller | None, timeout_ms | None, progress?]
# [tenant_id, request_id, True, args, kwargs, progressed?] or [..., False, error, args, kwargs, progressed?]
# (`progressed`: how many `progress` operations went before it, when any did)
RESULT = "result"
PROGRESS = "progress"  # [tenant_id, request_id, n, args, kwargs]: the n-th progressive result (from 0)
CANCEL = "cancel"  # [tenant_id, request_id]: the caller canceled (or gave up on) the forwarded call
PUBLISH = "publish"  # [tenant_id, topic, args, kwargs, options]: a backend's tenant.* publish
EVENTS = "events"  # [tenant_id, [(topic, kwargs), ...]]: the wamp sink's events for backends there
ROUTES = "routes"  # [tenant_id, packed routes]: what the sending node's backends serve now
RELAYED = (CALL, RESULT, PROGRESS, CANCEL, PUBLISH, EVENTS, ROUTES)

Operation = list[Any]

SEQ_FRAME = b"S"  # an inbox delivery built by a Redis script: header, seq, packed message
PRESENCE_FRAME = b"P"  # a presence change built by a Redis script (mics.presence.redis): JSON


def frame_header(origin: str, tenant_id: str, user_id: str) -> bytes:
    """The fixed part of an "S" frame (a delivery to `user_id`'s inbox); the script adds seq and message."""
    return msgpack.packb([origin, tenant_id, user_id], use_bin_type=True)  # type: ignore[no-any-return]


def unpack_seq_frame(data: bytes) -> tuple[str, Operation]:
    """`S` + header length (8 digits) + header + seq (12 digits) + msgpack message -> (origin, DELIVER op)."""
    size = int(data[1:9])
    origin, tenant_id, user_id = msgpack.unpackb(data[9 : 9 + size], raw=False)
    seq = int(data[9 + size : 21 + size])
    message = msgpack.unpackb(data[21 + size :], raw=False)
    message["seq"] = seq
    return origin, [DELIVER, tenant_id, uris.inbox_topic(user_id), [user_id], message]


def unpack_presence_frame(data: bytes) -> tuple[str, Operation]:
    """`P` + JSON [origin, tenant_id, user_id, devices, ts] -> (origin, PRESENCE op)."""
    origin, tenant_id, user_id, devices, ts = json.loads(data[1:])
    # Lua's cjson writes an empty list as {}
    return origin, [PRESENCE, tenant_id, user_id, sorted(devices) if devices else [], int(ts)]


class Cluster:
    """This node's membership: Redis connections, heartbeat, reaping and forwarding."""

    def __init__(
        self,
        node_id: str,
        redis_url: str,
        reactor: Any,
        on_operation: Callable[[Operation, str], None],
        on_node_lost: Callable[[str], Awaitable[None]],
        on_rejoin: Callable[[], None],
    ) -> None:
        self.node_id = node_id
        self.address: RedisAddress = parse_url(redis_url)
        self.reactor = reactor
        self.sentinel: SentinelLink | None = SentinelLink(self.address, reactor) if self.address.is_sentinel else None
        self.redis: Any = connect_pool(self.address, reactor=reactor, sentinel=self.sentinel)
        self._on_operation = on_operation
        self._on_node_lost = on_node_lost
        self._on_rejoin = on_rejoin
        self._registered = False
        self._subscriber = SubscriberFactory(
            self.address, [keys.node_channel(node_id), keys.BROADCAST], self._on_message
        )
        self._timers: list[LoopingCall] = []
        self.peers: list[str] = []  # the members that joined (mics:nodes), this one included

    @property
    def redis_reachable(self) -> bool:
        """Whether the command pool holds a live Redis connection now (while it holds none,
        FailFastHandler fails every command at once)."""
        return bool(self.redis._factory.size > 0)

    async def start(self) -> None:
        """Wait for Redis (the node is not ready before), register, start listening and beating."""
        await self.redis.ping()
        self.peers = [raw.decode() for raw in await self.redis.smembers(keys.NODES)]
        await self.reap(self.node_id)  # sessions a crashed earlier run of this node left behind
        self._subscriber.start(self.reactor, self.sentinel)
        if self.sentinel is not None:
            self.sentinel.watch()
        await self._beat()
        for fn, interval in ((self._beat, HEARTBEAT_S), (self._reap, REAP_EVERY_S)):
            timer = LoopingCall(lambda fn=fn: _logged(fn(), fn.__name__))
            timer.clock = self.reactor
            timer.start(interval, now=False)
            self._timers.append(timer)
        log.info("cluster mode: node_id={node_id} redis={redis}", node_id=self.node_id,
                 redis=self.address.describe())  # fmt: skip

    async def stop(self) -> None:
        """Leave the cluster cleanly: other nodes stop counting on us at once."""
        for timer in self._timers:
            if timer.running:
                timer.stop()
        try:
            await self.redis.delete(keys.node_alive(self.node_id))
            await self.redis.srem(keys.NODES, self.node_id)
        except Exception as e:  # Redis down at shutdown: the TTL and reaping clean up instead
            log.warn("could not leave the cluster: {error}", error=str(e))
        self._subscriber.disconnect()
        if self.sentinel is not None:
            self.sentinel.stop()
        await self.redis.disconnect()

    # -- forwarding ---------------------------------------------------------------------------
    def send_to(
        self, node_id: str, operation: Operation, on_failure: Callable[[], None] | None = None
    ) -> Deferred[Any]:
        """Ask another node to do something (fire and forget: Redis pub/sub is at-most-once).
        Raises TypeError/ValueError when msgpack cannot carry a value; `on_failure` runs when Redis
        refused the publish. The Deferred fires once Redis took (or refused) it: what is sent to
        that node after that reaches it after this one."""
        return self._publish(keys.node_channel(node_id), operation, on_failure)

    def broadcast(self, operation: Operation) -> Deferred[Any]:
        """Tell every node; the Deferred fires once Redis took the publish (anything published after
        that reaches each node after it: publishes go out on any of the pool's connections)."""
        return self._publish(keys.BROADCAST, operation)

    def _publish(
        self, channel: str, operation: Operation, on_failure: Callable[[], None] | None = None
    ) -> Deferred[Any]:
        data = msgpack.packb([self.node_id, *operation], use_bin_type=True)
        metrics.CLUSTER_SENT.labels(operation[0]).inc()

        def failed(f: Any) -> None:
            metrics.REDIS_FAILURES.labels("forward").inc()
            log.warn("forward to {channel} failed: {error}", channel=channel, error=f.getErrorMessage())
            if on_failure is not None:
                on_failure()

        return self.redis.publish(channel, data).addErrback(failed)  # type: ignore[no-any-return]

    def _on_message(self, channel: bytes, data: bytes) -> None:
        kind = data[:1]
        if kind == SEQ_FRAME:
            origin, operation = unpack_seq_frame(data)
        elif kind == PRESENCE_FRAME:
            origin, operation = unpack_presence_frame(data)
        else:
            # forwarded WAMP payloads may have non-string keys in nested maps (msgpack, CBOR clients)
            origin, *operation = msgpack.unpackb(data, raw=False, strict_map_key=False)
        if origin == self.node_id:
            return  # our own broadcast
        metrics.CLUSTER_RECEIVED.labels(operation[0]).inc()
        self._on_operation(operation, origin)

    # -- membership -----------------------------------------------------------------------------
    async def _beat(self) -> None:
        """Refresh our heartbeat key. If it was gone while we ran (Redis restarted and lost its data,
        or a long stall let another node reap us), write our sessions' presence again."""
        if self.sentinel is not None:  # connections still on a primary that a failover replaced
            _logged(self.sentinel.follow_primary(), "follow_primary")
        was = await self.redis.execute_command("SET", keys.node_alive(self.node_id), b"1", "PX", ALIVE_TTL_MS, "GET")
        await self.redis.sadd(keys.NODES, self.node_id)
        if was is None and self._registered:
            log.warn("cluster state of this node was lost (Redis restart or reaped): restoring presence")
            self._on_rejoin()
        self._registered = True

    async def _reap(self) -> None:
        """Clean up after nodes whose heartbeat expired (one reaper per dead node)."""
        members = await self.redis.smembers(keys.NODES)
        self.peers = [raw.decode() for raw in members]
        alive = 1
        for raw in members:
            node_id = raw.decode()
            if node_id == self.node_id:
                continue
            if await self.redis.exists(keys.node_alive(node_id)):
                alive += 1
                continue
            got = await self.redis.execute_command(
                "SET", keys.node_reaper(node_id), self.node_id, "NX", "PX", REAP_LOCK_MS
            )
            if got is None:
                continue  # another node is on it
            log.warn("node lost: node_id={lost}, removing its sessions from presence", lost=node_id)
            await self.reap(node_id)
            metrics.CLUSTER_REAPED.inc()
        metrics.CLUSTER_MEMBERS.set(alive)

    async def reap(self, node_id: str) -> None:
        """Remove a node's presence (a dead node, or this node's own leftovers after a crash)."""
        await self._on_node_lost(node_id)
        await self.redis.srem(keys.NODES, node_id)


def _logged(d: Any, what: str) -> Any:
    """Timer work must never stop its LoopingCall: Redis trouble is logged and retried next tick."""
    from twisted.internet.defer import Deferred

    def failed(f: Any) -> None:
        metrics.REDIS_FAILURES.labels("membership").inc()
        log.warn("cluster {what} failed: {error}", what=what, error=f.getErrorMessage())

    return Deferred.fromCoroutine(d).addErrback(failed)
