"""Following a Redis Sentinel-managed primary (MICS_REDIS_URL=redis+sentinel://...).

Replication is asynchronous, so a write the old primary acknowledges after a replica was chosen to
replace it is thrown away when that primary is demoted. A forced failover (`SENTINEL FAILOVER`, or
a network split) leaves the old primary running, still a primary and still fed by the replicas
not yet reconfigured, for up to Sentinel's failover-timeout. So a node:

- asks the sentinels for the primary before every connection and checks the server's `ROLE`
  (txredisapi's Sentinel support, with byte replies and a 1 s discovery wait);
- listens to every sentinel's `+selected-slave` and `+switch-master` events and, the moment a
  replica is chosen, **fences** the old primary: its connections are closed and no new one is made
  to it (sends fail with `mics.error.unavailable` until the new primary is named) — so nothing is
  acknowledged there that the failover would discard; an aborted failover lifts the fence;
- closes connections refused with READONLY or NOREPLICAS (a demoted primary, or one cut off from
  its replicas under `min-replicas-to-write`), and every heartbeat closes connections not to the
  primary the sentinels name (the pub/sub connection too: it must hear the new primary's publishes).
"""

from __future__ import annotations

from typing import Any

import txredisapi
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import HostnameEndpoint
from twisted.internet.interfaces import IStreamClientEndpoint
from txaio import make_logger
from zope.interface import implementer

from mics.cluster.redis import OPTIONS, RECONNECT_MAX_S, SubscriberFactory
from mics.config import RedisAddress

log = make_logger()

ASK_S = 1.0  # how long a discovery waits for a sentinel that knows a healthy primary
FENCE_S = 60.0  # an old primary stays fenced this long (it may run on as a primary until demoted)
EVENTS = ["+selected-slave", "+switch-master", "-failover-abort-not-elected", "-failover-abort-no-good-slave",
          "-failover-abort-slave-timeout"]  # fmt: skip

Address = tuple[str, int]


class SentinelLink:
    """One node's view of the Sentinel-managed primary: discovery, fencing, and the connections
    (pool, pub/sub) that must follow it."""

    def __init__(self, address: RedisAddress, reactor: Any) -> None:
        self.address = address
        self.master = address.master or ""
        self._reactor = reactor
        self.manager = txredisapi.Sentinel(list(address.sentinels), password=address.sentinel_password)
        self.manager.discovery_timeout = ASK_S  # txredisapi waits 10 s before asking again
        self._fenced: dict[Address, float] = {}  # old primary -> fenced until (reactor time)
        self._followers: list[Any] = []  # factories whose connections must be to the primary
        self._watches: list[SubscriberFactory] = []

    # -- connections ---------------------------------------------------------------------------------
    def connect_pool(self, size: int) -> Any:
        address = self.address
        factory = _PrimaryFactory(self.manager, self.master, True, None, address.db, size, isLazy=True,
                                  password=address.password, username=address.username, **OPTIONS)  # fmt: skip
        self.follow(factory)
        factory.startConnecting(self.endpoint())
        return factory.handler

    def endpoint(self) -> PrimaryEndpoint:
        return PrimaryEndpoint(self, self._reactor)

    def follow(self, factory: Any) -> None:
        self._followers.append(factory)

    async def primary(self) -> Address:
        """The primary the sentinels name, unless it is fenced (MasterNotFoundError: try later)."""
        host, port = await self.manager.discover_master(self.master)
        if self._is_fenced((host, port)):
            raise txredisapi.MasterNotFoundError(f"{host}:{port} is being replaced")
        return host, port

    async def follow_primary(self) -> None:
        """Close connections not to the primary the sentinels name now (every heartbeat)."""
        try:
            primary = await self.primary()
        except txredisapi.MasterNotFoundError:
            return  # a failover in progress: the fence and the events do the work
        self._close_all(lambda peer: peer != primary)

    # -- Sentinel's events --------------------------------------------------------------------------
    def watch(self) -> None:
        """Subscribe to every sentinel's failover events (a connection to each)."""
        for host, port in self.address.sentinels:
            sentinel = RedisAddress(host, port, None, self.address.sentinel_password, None)
            watch = SubscriberFactory(sentinel, list(EVENTS), self._on_event)
            watch.start(self._reactor)
            self._watches.append(watch)

    def _on_event(self, channel: bytes, data: bytes) -> None:
        event, words = channel.decode(), data.decode(errors="replace").split()
        if event == "+selected-slave" and "@" in words:  # slave <name> <ip> <port> @ <master> <ip> <port>
            at = words.index("@")
            if words[at + 1] == self.master:
                self.fence((words[at + 2], int(words[at + 3])))
        elif event == "+switch-master" and words[:1] == [self.master]:  # <master> <old ip> <old port> <new ...>
            self.fence((words[1], int(words[2])))
            self._fenced.pop((words[3], int(words[4])), None)
        elif event.startswith("-failover-abort") and self.master in words:
            self._fenced.clear()
            log.warn("sentinel failover aborted ({event}): the primary is not fenced any more", event=event)

    def fence(self, old: Address) -> None:
        """A replica was chosen to replace `old`: write nothing more there."""
        if not self._is_fenced(old):
            log.warn("sentinel failover of {master}: {host}:{port} fenced until a new primary is named",
                     master=self.master, host=old[0], port=old[1])  # fmt: skip
        self._fenced[old] = self._reactor.seconds() + FENCE_S
        self._close_all(lambda peer: peer == old)

    def _is_fenced(self, address: Address) -> bool:
        until = self._fenced.get(address)
        if until is not None and until < self._reactor.seconds():
            del self._fenced[address]
            return False
        return until is not None

    def _close_all(self, wrong: Any) -> None:
        for factory in self._followers:
            for connection in list(factory.pool):
                peer = connection.transport.getPeer()
                if wrong((getattr(peer, "host", None), getattr(peer, "port", None))):
                    connection.transport.loseConnection()

    def stop(self) -> None:
        """Stop watching (the pool's disconnect closes the discovery connections)."""
        for watch in self._watches:
            watch.disconnect()


@implementer(IStreamClientEndpoint)
class PrimaryEndpoint:
    """Connects to the server the sentinels call the primary now (unless it is fenced)."""

    def __init__(self, link: SentinelLink, reactor: Any) -> None:
        self._link = link
        self._reactor = reactor

    def connect(self, protocol_factory: Any) -> Deferred[Any]:
        def connect(address: Address) -> Any:
            host, port = address
            return HostnameEndpoint(self._reactor, host, port, timeout=5).connect(protocol_factory)

        return Deferred.fromCoroutine(self._link.primary()).addCallback(connect)


class _PrimaryProtocol(txredisapi.RedisProtocol):
    """A pool connection that checks the server is the primary (ROLE) before use, and goes when a
    write is refused as READONLY (a demoted primary) or NOREPLICAS (a primary cut off from its
    replicas, whose writes a failover would discard)."""

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

    def replyReceived(self, reply: Any) -> None:
        super().replyReceived(reply)
        if isinstance(reply, txredisapi.ResponseError) and _refused_as_not_primary(reply):
            self.transport.loseConnection()


def _refused_as_not_primary(error: txredisapi.ResponseError) -> bool:
    text = error.args[0] if error.args else b""
    if isinstance(text, bytes):
        text = text.decode(errors="replace")
    return str(text).startswith(("READONLY", "NOREPLICAS"))


class _PrimaryFactory(txredisapi.SentinelConnectionFactory):
    """txredisapi's factory for a Sentinel-managed pool (retries at once after a lost connection)."""

    maxDelay = RECONNECT_MAX_S
    protocol = _PrimaryProtocol

    def disconnect(self) -> Any:
        """The pool, and the connections to the sentinels it asked."""
        d = super().disconnect()
        self.sentinel_manager.disconnect()
        return d
