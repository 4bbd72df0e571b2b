"""The in-memory catch-up buffer: seq, epoch, complete, TTLs, caps and dedup (fake clock)."""

from mics.buffer.memory import DEDUP_WINDOW_S, MemoryBuffer


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def make(per_user=100, max_bytes=10_000):
    clock = Clock()
    return MemoryBuffer("t", per_user, max_bytes, clock), clock


def put(buffer, user, body, hold=60.0, size=10):
    entry = {"body": body}
    buffer.append(user, entry, size, hold)
    return entry


def test_seqs_start_at_one_and_are_consecutive_per_user():
    buffer, _ = make()
    assert [put(buffer, "bob", i)["seq"] for i in range(3)] == [1, 2, 3]
    assert put(buffer, "carol", "x")["seq"] == 1
    assert buffer.last_seq("bob") == 3 and buffer.last_seq("nobody") == 0


def test_since_returns_newer_messages_oldest_first_and_complete():
    buffer, _ = make()
    for i in range(5):
        put(buffer, "bob", i)
    result = buffer.since("bob", 2, buffer.epoch)
    assert [m["body"] for m in result.messages] == [2, 3, 4]
    assert result.complete and result.last_seq == 5


def test_unheld_messages_take_a_seq_but_are_not_returned():
    buffer, _ = make()
    put(buffer, "bob", "held")
    put(buffer, "bob", "live only", hold=0)
    result = buffer.since("bob", 0, None)
    assert [m["body"] for m in result.messages] == ["held"] and result.last_seq == 2 and not result.complete


def test_expired_messages_are_skipped_and_make_sync_incomplete():
    buffer, clock = make()
    put(buffer, "bob", "short", hold=10)
    put(buffer, "bob", "long", hold=100)
    clock.now = 50
    result = buffer.since("bob", 0, None)
    assert [m["body"] for m in result.messages] == ["long"] and not result.complete
    assert buffer.since("bob", 1, None).complete


def test_an_expired_message_behind_a_live_one_is_skipped_too():
    buffer, clock = make()
    put(buffer, "bob", "offline", hold=300)
    put(buffer, "bob", "replay", hold=60)
    put(buffer, "bob", "offline2", hold=300)
    clock.now = 100
    result = buffer.since("bob", 0, None)
    assert [m["body"] for m in result.messages] == ["offline", "offline2"] and not result.complete


def test_per_user_cap_evicts_the_oldest():
    buffer, _ = make(per_user=2)
    for i in range(4):
        put(buffer, "bob", i)
    result = buffer.since("bob", 0, None)
    assert [m["body"] for m in result.messages] == [2, 3] and not result.complete
    assert buffer.stats()["evicted"] == 2


def test_tenant_byte_cap_evicts_the_oldest_across_users():
    buffer, _ = make(max_bytes=30)
    put(buffer, "bob", "b1")
    put(buffer, "carol", "c1")
    put(buffer, "bob", "b2")
    put(buffer, "carol", "c2")
    assert buffer.stats()["held_bytes"] == 30
    assert [m["body"] for m in buffer.since("bob", 0, None).messages] == ["b2"]
    assert [m["body"] for m in buffer.since("carol", 0, None).messages] == ["c1", "c2"]


def test_another_epoch_gets_everything_held_as_incomplete():
    buffer, _ = make()
    put(buffer, "bob", 1)
    result = buffer.since("bob", 1, "old-epoch")
    assert [m["body"] for m in result.messages] == [1] and not result.complete


def test_flush_starts_a_new_epoch_and_old_clients_learn_it():
    buffer, _ = make()
    put(buffer, "bob", 1)
    old = buffer.epoch
    buffer.flush()
    assert buffer.epoch != old
    result = buffer.since("bob", 1, old)
    assert result.messages == [] and not result.complete and result.epoch == buffer.epoch


def test_expire_frees_memory_without_restarting_seqs():
    buffer, clock = make()
    put(buffer, "bob", 1, hold=10)
    clock.now = 20
    buffer.expire()
    assert buffer.stats()["held_messages"] == 0 and buffer.stats()["held_bytes"] == 0
    assert put(buffer, "bob", 2)["seq"] == 2


def test_dedup_remembers_acks_for_the_window():
    buffer, clock = make()
    buffer.remember("alice", "c1", {"msg_id": "m1"})
    assert buffer.seen("alice", "c1") == {"msg_id": "m1"}
    assert buffer.seen("bob", "c1") is None
    clock.now = DEDUP_WINDOW_S + 1
    assert buffer.seen("alice", "c1") is None
    buffer.expire()
    assert buffer.seen("alice", "c1") is None
