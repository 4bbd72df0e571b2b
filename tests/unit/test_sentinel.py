"""Following a Sentinel-managed primary (mics.cluster.sentinel): Sentinel's failover events fence the
old primary at once, connections there are closed, discovery refuses it until the fence ends, an
aborted failover lifts it. Real failovers are in tests/integration/test_redis_failover.py."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
import txredisapi
from twisted.internet import defer, task

from mics.cluster.sentinel import FENCE_S, SentinelLink, _refused_as_not_primary
from mics.config import parse_url

OLD, NEW = ("10.0.0.1", 6379), ("10.0.0.2", 6379)


class Connection:
    def __init__(self, peer: tuple[str, int]) -> None:
        self.transport = self
        self.peer = peer
        self.closed = False

    def getPeer(self) -> Any:
        return type("Peer", (), {"host": self.peer[0], "port": self.peer[1]})()

    def loseConnection(self) -> None:
        self.closed = True


class Factory:
    def __init__(self, *peers: tuple[str, int]) -> None:
        self.pool = [Connection(p) for p in peers]


class Manager:
    """The sentinels' answer to "who is the primary"."""

    def __init__(self) -> None:
        self.answer = OLD

    def discover_master(self, name: str) -> defer.Deferred[tuple[str, int]]:
        return defer.succeed(self.answer)


def link() -> tuple[SentinelLink, task.Clock, Manager]:
    clock = task.Clock()
    found = SentinelLink(parse_url("redis+sentinel://s1,s2,s3/mics"), clock)
    found.manager.disconnect()
    manager = Manager()
    found.manager = manager  # type: ignore[assignment]
    return found, clock, manager


@pytest_twisted.ensureDeferred
async def test_a_chosen_replica_fences_the_old_primary_until_the_new_one_is_named():
    sentinel, clock, manager = link()
    pool, pubsub = Factory(OLD, OLD, NEW), Factory(OLD)
    sentinel.follow(pool)
    sentinel.follow(pubsub)
    assert await sentinel.primary() == OLD
    sentinel._on_event(b"+selected-slave", b"slave 10.0.0.2:6379 10.0.0.2 6379 @ mics 10.0.0.1 6379")
    assert [c.closed for c in pool.pool + pubsub.pool] == [True, True, False, True]
    with pytest.raises(txredisapi.MasterNotFoundError):  # a sentinel that has not switched yet
        await sentinel.primary()
    sentinel._on_event(b"+switch-master", b"mics 10.0.0.1 6379 10.0.0.2 6379")
    manager.answer = NEW
    assert await sentinel.primary() == NEW
    manager.answer = OLD  # still a primary until Sentinel reconfigures it: fenced for FENCE_S
    with pytest.raises(txredisapi.MasterNotFoundError):
        await sentinel.primary()
    clock.advance(FENCE_S + 1)
    assert await sentinel.primary() == OLD


@pytest_twisted.ensureDeferred
async def test_events_of_another_master_are_ignored_and_an_aborted_failover_lifts_the_fence():
    sentinel, _clock, _manager = link()
    sentinel._on_event(b"+selected-slave", b"slave 10.0.0.2:6379 10.0.0.2 6379 @ other 10.0.0.1 6379")
    sentinel._on_event(b"+switch-master", b"other 10.0.0.1 6379 10.0.0.2 6379")
    assert await sentinel.primary() == OLD
    sentinel._on_event(b"+selected-slave", b"slave 10.0.0.2:6379 10.0.0.2 6379 @ mics 10.0.0.1 6379")
    sentinel._on_event(b"-failover-abort-slave-timeout", b"master mics 10.0.0.1 6379")
    assert await sentinel.primary() == OLD


@pytest_twisted.ensureDeferred
async def test_every_heartbeat_closes_connections_not_to_the_named_primary():
    sentinel, _clock, manager = link()
    pool = Factory(OLD, NEW)
    sentinel.follow(pool)
    manager.answer = NEW
    await sentinel.follow_primary()
    assert [c.closed for c in pool.pool] == [True, False]


def test_writes_refused_as_readonly_or_noreplicas_mean_not_the_primary():
    assert _refused_as_not_primary(txredisapi.ResponseError(b"READONLY You can't write against a read only replica."))
    assert _refused_as_not_primary(txredisapi.ResponseError("NOREPLICAS Not enough good replicas to write."))
    assert not _refused_as_not_primary(txredisapi.ResponseError(b"NOSCRIPT No matching script."))
