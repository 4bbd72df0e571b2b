"""Redis for cluster mode: connections, Lua scripts, key names.

Every key of a tenant carries the hash tag `{tenant_id}`, so one tenant's keys live in one slot
and the multi-key scripts below run unchanged on a single Redis or on a Redis Cluster. Node-wide
keys (`mics:...`) hold the node registry and the tenant configs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from typing import Any

import txredisapi
from twisted.internet.defer import Deferred, fail
from twisted.internet.endpoints import HostnameEndpoint
from txaio import make_logger

from mics.config import RedisAddress

log = make_logger()

NODES = "mics:nodes"  # set of node ids that joined the cluster
TENANTS = "mics:tenants"  # hash tenant_id -> JSON config (admin upserts)
BROADCAST = "mics:all"  # channel every node listens on


def node_alive(node_id: str) -> str:
    """A key with a short TTL, refreshed while the node lives."""
    return f"mics:node:{node_id}"


def node_reaper(node_id: str) -> str:
    """Lock held by the one node that cleans up after a dead node."""
    return f"mics:reap:{node_id}"


def node_channel(node_id: str) -> str:
    """Where other nodes send what must happen on this node (deliveries, kicks)."""
    return f"mics:fwd:{node_id}"


class TenantKeys:
    """Key names of one tenant (all in the tenant's hash slot)."""

    __slots__ = ("bytes", "epoch", "held", "prefix", "routes")

    def __init__(self, tenant_id: str) -> None:
        self.prefix = "{" + tenant_id + "}:"
        self.epoch = self.prefix + "epoch"
        self.routes = self.prefix + "routes"  # hash node -> what its backends serve (mics.cluster.relay)
        self.held = self.prefix + "held"  # zset "user\0seq\0size" by expiry time, tenant-wide
        self.bytes = self.prefix + "bytes"

    def presence(self, user_id: str) -> str:
        return self.prefix + "presence:" + user_id

    def node_sessions(self, node_id: str) -> str:
        return self.prefix + "sessions:" + node_id

    def watchers(self, user_id: str) -> str:
        """The nodes with subscribers of `mics.presence.<user_id>` (section 11, live presence)."""
        return self.prefix + "watchers:" + user_id

    def watching(self, node_id: str) -> str:
        """The users a node's subscribers watch, for cleaning up after that node."""
        return self.prefix + "watching:" + node_id

    def seq(self, user_id: str) -> str:
        return self.prefix + "seq:" + user_id

    def inbox(self, user_id: str) -> str:
        return self.prefix + "inbox:" + user_id

    def dedup(self, user_id: str, client_msg_id: str) -> str:
        return self.prefix + "dedup:" + user_id + ":" + client_msg_id

    def sent(self, msg_id: str) -> str:
        """The sender index record of a message (section 11: recall and edit)."""
        return self.prefix + "sent:" + msg_id

    def once(self, key: str) -> str:
        """A claim that may be made once (a signed request's nonce, an offline push per conversation)."""
        return self.prefix + "once:" + key


class FailFastHandler(txredisapi.ConnectionHandler):
    """Commands wait for the first connection, then fail at once while Redis is unreachable.

    txredisapi's own handler queues every command until a connection is back, which would hang
    sends for as long as Redis is down; we would rather answer `mics.error.unavailable`.
    """

    def __getattr__(self, method: str) -> Any:
        factory = self._factory
        if factory.deferred is None and factory.size == 0:  # was connected, now none is alive

            def unreachable(*args: Any, **kwargs: Any) -> Deferred[Any]:
                return fail(txredisapi.ConnectionError("Redis is unreachable"))

            return unreachable
        return super().__getattr__(method)


RECONNECT_MAX_S = 1.0  # a lost connection is tried again at least this often (Redis back, or a failover)
OPTIONS = {"handler": FailFastHandler, "charset": None, "replyTimeout": 5, "convertNumbers": False}


def connect_pool(address: RedisAddress, size: int = 4, reactor: Any = None, sentinel: Any = None) -> Any:
    """A reconnecting pool; replies are bytes (payloads are msgpack), numbers are not converted.
    With Sentinel the pool follows the primary (mics.cluster.sentinel; `sentinel` is the node's
    SentinelLink, else the pool makes its own)."""
    from twisted.internet import reactor as default_reactor

    reactor = reactor or default_reactor
    if address.is_sentinel:
        from mics.cluster.sentinel import SentinelLink

        return (sentinel or SentinelLink(address, reactor)).connect_pool(size)
    factory = txredisapi.RedisFactory(f"{address.host}:{address.port}", address.db, size, isLazy=True,
                                      password=address.password, username=address.username, **OPTIONS)  # fmt: skip
    factory.maxDelay = RECONNECT_MAX_S
    factory.startConnecting(HostnameEndpoint(reactor, address.host, address.port, timeout=5))
    return factory.handler


class Script:
    """A Lua script run by EVALSHA, loaded again by EVAL when Redis forgot it (restart)."""

    def __init__(self, source: str) -> None:
        self.source = source.encode()
        self.sha = hashlib.sha1(self.source).hexdigest()

    def __call__(self, redis: Any, keys: Sequence[str], args: Sequence[Any]) -> Deferred[Any]:
        d: Deferred[Any] = redis.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

        def reload(failure: Any) -> Any:
            failure.trap(txredisapi.ResponseError)
            if not str(failure.value).startswith("NOSCRIPT"):
                return failure
            return redis.execute_command("EVAL", self.source, len(keys), *keys, *args)

        d.addErrback(reload)
        return d


class Subscriber(txredisapi.SubscriberProtocol):
    """The node's pub/sub connection: calls `on_message(channel, payload)`."""

    on_message: Callable[[bytes, bytes], None]
    channels: list[str]

    def connectionMade(self) -> Any:
        d = super().connectionMade()
        self.whenConnected().addCallback(lambda _p: self.subscribe(self.channels))
        return d

    def messageReceived(self, pattern: Any, channel: bytes, message: bytes) -> None:
        try:
            self.on_message(channel, message)
        except Exception:
            log.failure("forwarded message failed: channel={channel}", channel=channel)


class SubscriberFactory(txredisapi.SubscriberFactory):
    """Reconnects with backoff and subscribes again after each connect: the first retry at once
    (Redis restarted, or a failover moved the primary), then at most RECONNECT_MAX_S apart."""

    protocol = Subscriber
    initialDelay = 0.1

    def retryDelay(self, attempt: int) -> float:
        return 0.0 if attempt <= 1 else float(super().retryDelay(attempt))

    def __init__(self, address: RedisAddress, channels: list[str], on_message: Callable[[bytes, bytes], None]) -> None:
        super().__init__()
        self.charset = None
        self.convertNumbers = False
        self.password = address.password
        self.username = address.username
        self.dbid = address.db
        self._address = address
        self._channels = channels
        self._on_message = on_message
        self.maxDelay = RECONNECT_MAX_S

    def start(self, reactor: Any, sentinel: Any = None) -> None:
        """Connect, and keep reconnecting (with backoff) until `disconnect()`; with Sentinel to the
        primary `sentinel` (the node's SentinelLink) names at each attempt."""
        address = self._address
        if address.is_sentinel:
            assert sentinel is not None
            sentinel.follow(self)
            self.startConnecting(sentinel.endpoint())
        else:
            self.startConnecting(HostnameEndpoint(reactor, address.host, address.port, timeout=5))

    def buildProtocol(self, addr: Any) -> Subscriber:
        p: Subscriber = super().buildProtocol(addr)
        p.channels = self._channels
        p.on_message = self._on_message
        return p
