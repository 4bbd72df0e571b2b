"""RedisPresence bookkeeping that needs no server: failed writes are retried, newest write per session wins."""

from typing import Any

import txredisapi
from twisted.internet.defer import fail, succeed

from mics.presence.redis import _JOIN, RedisPresence
from mics.sessions import SessionInfo, SessionTable


class FlakyRedis:
    """Answers EVALSHA with a connection error while `down`, else as the join script would (the
    device's previous entry `reply`, unchanged devices) or the leave script (nothing removed);
    records each script's args."""

    def __init__(self) -> None:
        self.down = True
        self.reply: Any = None
        self.calls: list[tuple[Any, ...]] = []

    def execute_command(self, *args: Any) -> Any:
        self.calls.append(args)
        if self.down:
            return fail(txredisapi.ConnectionError("Redis is unreachable"))
        return succeed([self.reply, 0, []] if args[1] == _JOIN.sha else [0, []])


def session(sid: int = 7) -> SessionInfo:
    return SessionInfo(sid, "t", "bob", "phone", 1, 0.0)


def test_a_failed_write_is_retried_on_the_next_tick() -> None:
    redis = FlakyRedis()
    presence = RedisPresence("t", "n1", redis, SessionTable())
    presence.joined(session())
    redis.down = False
    presence.retry()
    assert len(redis.calls) == 2 and redis.calls[0] == redis.calls[1]
    presence.retry()
    assert len(redis.calls) == 2  # nothing left to retry


def test_only_the_newest_failed_write_of_a_session_is_retried() -> None:
    redis = FlakyRedis()
    presence = RedisPresence("t", "n1", redis, SessionTable())
    presence.joined(session())
    presence.left(session())  # a retried join after the leave would show bob online for good
    redis.down = False
    presence.retry()
    retried = redis.calls[2]
    assert len(redis.calls) == 3 and retried == redis.calls[1] and "7" in retried


def test_a_device_that_was_on_another_node_gets_its_old_session_replaced() -> None:
    redis, replaced = FlakyRedis(), []
    presence = RedisPresence("t", "n1", redis, SessionTable(), lambda node, sid: replaced.append((node, sid)))
    redis.down = False
    redis.reply = b'{"node": "n2", "session": "5", "online_at": 1, "user": "bob", "device": "phone"}'
    presence.joined(session(7))
    redis.reply = b'{"node": "n1", "session": "6", "online_at": 1, "user": "bob", "device": "phone"}'
    presence.joined(session(8))  # the old session is on this node: the session table replaces it
    assert replaced == [("n2", 5)]
