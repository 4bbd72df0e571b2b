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
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from txaio import make_logger
from zope.interface import implementer

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

    def seq(self, user_id: str) -> str:
        return self.prefix + "seq:" + user_id

    def inbox(self, user_id: str) -> str:
        return self.prefix + "inbox:" + user_id

    def dedup(self, user_id: str, client_msg_id: str) -> str:
        return self.prefix + "dedup:" + user_id + ":" + client_msg_id

    def once(self, key: str) -> str:
        """A claim that may be made once (a signed request's nonce)."""
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
SENTINEL_ASK_S = 1.0  # how long a discovery waits for a sentinel that knows a healthy primary


def connect_pool(address: RedisAddress, size: int = 4, reactor: Any = None) -> Any:
    """A reconnecting pool; replies are bytes (payloads are msgpack), numbers are not converted.
    With Sentinel, every connection attempt asks the sentinels for the current primary and checks
    the server's ROLE (txredisapi's Sentinel support): after a failover the pool follows the new
    primary; sentinels close the clients of a demoted one."""
    from twisted.internet import reactor as default_reactor

    options = {"handler": FailFastHandler, "charset": None, "password": address.password, "replyTimeout": 5,
               "convertNumbers": False, "username": address.username}  # fmt: skip
    if address.is_sentinel:
        return sentinel_of(address).master_for(
            address.master, factory_class=_PrimaryFactory, dbid=address.db, poolsize=size, isLazy=True, **options
        )
    factory = txredisapi.RedisFactory(f"{address.host}:{address.port}", address.db, size, isLazy=True, **options)
    factory.maxDelay = RECONNECT_MAX_S
    factory.startConnecting(HostnameEndpoint(reactor or default_reactor, address.host, address.port, timeout=5))
    return factory.handler


def sentinel_of(address: RedisAddress) -> txredisapi.Sentinel:
    """The sentinels of `address`, answering quickly: a discovery during a failover must not wait
    txredisapi's 10 s default before asking again."""
    sentinel = txredisapi.Sentinel(list(address.sentinels), password=address.sentinel_password)
    sentinel.discovery_timeout = SENTINEL_ASK_S
    return sentinel


class _PrimaryProtocol(txredisapi.SentinelRedisProtocol):
    """txredisapi's check that the server is the primary, with byte replies (charset=None): its own
    compares ROLE's b"master" to "master" and drops every connection."""

    def connectionMade(self) -> Any:
        def check_role(role: list[Any]) -> Any:
            kind = role[0].decode() if isinstance(role[0], bytes) else role[0]
            if kind != "master":
                self.transport.loseConnection()  # a replica (a demoted primary): ask the sentinels again
                return succeed(None)
            return txredisapi.RedisProtocol.connectionMade(self)

        if self.password is not None:
            self.auth(self.password, self.username)
        return self.role().addCallback(check_role)


class _PrimaryFactory(txredisapi.SentinelConnectionFactory):
    maxDelay = RECONNECT_MAX_S
    protocol = _PrimaryProtocol

    def disconnect(self) -> Any:
        """The pool, and the connections to the sentinels it asked."""
        d = super().disconnect()
        self.sentinel_manager.disconnect()
        return d


@implementer(IStreamClientEndpoint)
class PrimaryEndpoint:
    """Connects to whatever server the sentinels call the primary now (for the pub/sub connection)."""

    def __init__(self, sentinel: txredisapi.Sentinel, master: str, reactor: Any) -> None:
        self._sentinel = sentinel
        self._master = master
        self._reactor = reactor

    def connect(self, protocol_factory: Any) -> Deferred[Any]:
        d: Deferred[tuple[str, int]] = self._sentinel.discover_master(self._master)

        def connect(address: tuple[str, int]) -> Any:
            host, port = address
            return HostnameEndpoint(self._reactor, host, port, timeout=5).connect(protocol_factory)

        return d.addCallback(connect)


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
        self._sentinel: txredisapi.Sentinel | None = None
        self.maxDelay = RECONNECT_MAX_S

    def start(self, reactor: Any) -> None:
        """Connect, and keep reconnecting (with backoff) until `disconnect()`."""
        address = self._address
        if address.is_sentinel:
            self._sentinel = sentinel_of(address)
            self.startConnecting(PrimaryEndpoint(self._sentinel, address.master or "", reactor))
        else:
            self.startConnecting(HostnameEndpoint(reactor, address.host, address.port, timeout=5))

    def disconnect(self) -> Any:
        d = super().disconnect()
        if self._sentinel is not None:
            self._sentinel.disconnect()
        return d

    def buildProtocol(self, addr: Any) -> Subscriber:
        p: Subscriber = super().buildProtocol(addr)
        p.channels = self._channels
        p.on_message = self._on_message
        return p
