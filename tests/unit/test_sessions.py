"""The session table: replacement, connection counting and limits."""

from mics.sessions import SessionInfo, SessionTable


def info(sid, user="alice", device="d1"):
    return SessionInfo(sid, "t", user, device, 0, 0.0)


def test_same_user_and_device_replaces_and_keeps_one_slot():
    table = SessionTable()
    assert table.add(info(1)) is None
    older = table.add(info(2))
    assert older is not None and older.session_id == 1 and table.connections == 1
    table.remove(1)  # the replaced session leaves later: the new one stays
    assert table.devices("alice")["d1"].session_id == 2 and table.connections == 1


def test_limits_count_devices_and_pending_joins():
    table = SessionTable()
    table.add(info(1, device="d1"))
    table.reserve("alice", "d2", until=10)
    assert table.would_exceed("alice", "d3", max_total=100, max_per_user=2) == "user"
    assert table.would_exceed("alice", "d1", max_total=100, max_per_user=2) is None, "replacing takes no slot"
    assert table.would_exceed("bob", "d1", max_total=2, max_per_user=5) == "tenant"
    table.sweep_pending(now=11)
    assert table.would_exceed("alice", "d3", max_total=100, max_per_user=2) is None


def test_remove_forgets_the_user_when_the_last_device_leaves():
    table = SessionTable()
    table.add(info(1))
    table.remove(1)
    assert "alice" not in table.by_user and table.connections == 0 and table.remove(1) is None
