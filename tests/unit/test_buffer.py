"""The catch-up buffer, in memory and in Redis: seq, epoch, complete, TTLs, caps and dedup (fake clock).

Both implementations pass the same tests; the Redis one runs against a real redis-server.
"""

import itertools

import pytest
import pytest_twisted

from mics.buffer import CatchupBuffer
from mics.buffer.memory import DEDUP_WINDOW_S, MemoryBuffer
from mics.buffer.redis import RedisBuffer
from mics.cluster.redis import connect_pool
from mics.config import parse_url

_tenants = itertools.count()


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "redis"])
def make(request):
    """make(per_user, max_bytes) -> (buffer, clock); Redis buffers get a fresh tenant each."""
    pools = []

    def factory(per_user=100, max_bytes=10_000):
        clock = Clock()
        if request.param == "memory":
            return MemoryBuffer("t", per_user, max_bytes, clock), clock
        pool = connect_pool(parse_url(request.getfixturevalue("redis_url")), size=1)
        pools.append(pool)
        return RedisBuffer(f"unit{next(_tenants)}", per_user, max_bytes, clock, pool), clock

    yield factory
    for pool in pools:
        pool.disconnect()


async def put(buffer: CatchupBuffer, user, body, hold=60.0, size=10):
    entry = {"body": body}
    await buffer.append(user, entry, size, hold)
    return entry


async def expire(buffer: CatchupBuffer) -> None:
    done = buffer.expire()
    if done is not None:
        await done


@pytest_twisted.ensureDeferred
async def test_seqs_start_at_one_and_are_consecutive_per_user(make):
    buffer, _ = make()
    assert [(await put(buffer, "bob", i))["seq"] for i in range(3)] == [1, 2, 3]
    assert (await put(buffer, "carol", "x"))["seq"] == 1
    assert (await buffer.last_seq("bob")) == 3 and (await buffer.last_seq("nobody")) == 0


@pytest_twisted.ensureDeferred
async def test_since_returns_newer_messages_oldest_first_and_complete(make):
    buffer, _ = make()
    for i in range(5):
        await put(buffer, "bob", i)
    result = await buffer.since("bob", 2, buffer.epoch)
    assert [m["body"] for m in result.messages] == [2, 3, 4]
    assert result.complete and result.last_seq == 5


@pytest_twisted.ensureDeferred
async def test_unheld_messages_take_a_seq_but_are_not_returned(make):
    buffer, _ = make()
    await put(buffer, "bob", "held")
    await put(buffer, "bob", "live only", hold=0)
    result = await buffer.since("bob", 0, None)
    assert [m["body"] for m in result.messages] == ["held"] and result.last_seq == 2 and not result.complete


@pytest_twisted.ensureDeferred
async def test_expired_messages_are_skipped_and_make_sync_incomplete(make):
    buffer, clock = make()
    await put(buffer, "bob", "short", hold=10)
    await put(buffer, "bob", "long", hold=100)
    clock.now = 50
    result = await buffer.since("bob", 0, None)
    assert [m["body"] for m in result.messages] == ["long"] and not result.complete
    assert (await buffer.since("bob", 1, None)).complete


@pytest_twisted.ensureDeferred
async def test_an_expired_message_behind_a_live_one_is_skipped_too(make):
    buffer, clock = make()
    await put(buffer, "bob", "offline", hold=300)
    await put(buffer, "bob", "replay", hold=60)
    await put(buffer, "bob", "offline2", hold=300)
    clock.now = 100
    result = await buffer.since("bob", 0, None)
    assert [m["body"] for m in result.messages] == ["offline", "offline2"] and not result.complete


@pytest_twisted.ensureDeferred
async def test_per_user_cap_evicts_the_oldest(make):
    buffer, _ = make(per_user=2)
    for i in range(4):
        await put(buffer, "bob", i)
    result = await buffer.since("bob", 0, None)
    assert [m["body"] for m in result.messages] == [2, 3] and not result.complete
    assert buffer.stats()["evicted"] == 2


@pytest_twisted.ensureDeferred
async def test_tenant_byte_cap_evicts_the_oldest_across_users(make):
    buffer, _ = make(max_bytes=30)
    await put(buffer, "bob", "b1")
    await put(buffer, "carol", "c1")
    await put(buffer, "bob", "b2")
    await put(buffer, "carol", "c2")
    assert buffer.stats()["held_bytes"] == 30
    assert [m["body"] for m in (await buffer.since("bob", 0, None)).messages] == ["b2"]
    assert [m["body"] for m in (await buffer.since("carol", 0, None)).messages] == ["c1", "c2"]


@pytest_twisted.ensureDeferred
async def test_another_epoch_gets_everything_held_as_incomplete(make):
    buffer, _ = make()
    await put(buffer, "bob", 1)
    result = await buffer.since("bob", 1, "old-epoch")
    assert [m["body"] for m in result.messages] == [1] and not result.complete


@pytest_twisted.ensureDeferred
async def test_flush_starts_a_new_epoch_and_old_clients_learn_it(make):
    buffer, _ = make()
    await put(buffer, "bob", 1)
    old = buffer.epoch
    await buffer.flush()
    assert buffer.epoch != old
    result = await buffer.since("bob", 1, old)
    assert result.messages == [] and not result.complete and result.epoch == buffer.epoch


@pytest_twisted.ensureDeferred
async def test_expire_frees_memory_without_restarting_seqs(make):
    buffer, clock = make()
    await put(buffer, "bob", 1, hold=10)
    clock.now = 20
    await expire(buffer)
    assert buffer.stats()["held_messages"] == 0 and buffer.stats()["held_bytes"] == 0
    assert (await put(buffer, "bob", 2))["seq"] == 2


@pytest_twisted.ensureDeferred
async def test_dedup_remembers_acks_for_the_window(make):
    buffer, clock = make()
    await buffer.remember("alice", "c1", {"msg_id": "m1"})
    assert (await buffer.seen("alice", "c1")) == {"msg_id": "m1"}
    assert (await buffer.seen("bob", "c1")) is None
    clock.now = DEDUP_WINDOW_S + 1
    assert (await buffer.seen("alice", "c1")) is None
    await expire(buffer)
    assert (await buffer.seen("alice", "c1")) is None


@pytest_twisted.ensureDeferred
async def test_append_many_gives_each_user_a_held_copy_with_their_own_seq(make):
    buffer, _ = make()
    await put(buffer, "bob", "earlier")
    await buffer.append_many(["bob", "carol", "dave"], {"body": "group"}, 10, 60.0)
    got = {u: (await buffer.since(u, 0, None)).messages for u in ("bob", "carol", "dave")}
    assert [(m["body"], m["seq"]) for m in got["bob"]] == [("earlier", 1), ("group", 2)]
    assert (
        [(m["body"], m["seq"]) for m in got["carol"]] == [("group", 1)] == [(m["body"], m["seq"]) for m in got["dave"]]
    )
    assert buffer.stats()["held_messages"] == 4
