"""A tenant runtime with no node, for unit tests: the memory engine, a realm port that records what it is
asked to deliver and answers hook calls in process, an event sink that records events."""

from __future__ import annotations

from typing import Any

from twisted.internet import defer

from mics import errors, uris
from mics.events import Event, EventSink
from mics.tenants import TenantRuntime
from mics.types import Sender


class FakePort:
    """A realm as the runtime sees it: records deliveries and closes, answers hook calls."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, tuple[str, ...], int | None, dict[str, Any]]] = []
        self.closed: list[tuple[int, str]] = []
        self.members: dict[str, list[str]] = {}
        self.refuse_word = "forbidden"
        self.hook_calls: list[str] = []
        self.check_gate: defer.Deferred[None] | None = None
        self.watches: dict[int, int] = {}  # session -> presence subscriptions it holds
        self.presence: list[tuple[str, dict[str, Any]]] = []

    def deliver(self, topic: str, authids: Any, exclude: int | None, kwargs: dict[str, Any]) -> None:
        self.delivered.append((topic, tuple(authids), exclude, dict(kwargs)))

    def deliver_all(self, topic: str, kwargs: dict[str, Any]) -> int:
        """Live presence: to every subscriber (here: recorded apart, one watcher assumed)."""
        self.presence.append((topic, dict(kwargs)))
        return 1

    def subscriptions_under(self, session_id: int, prefix: str) -> int:
        return self.watches.get(session_id, 0)

    def close_session(self, session_id: int, reason: errors.Reason, message: str) -> None:
        self.closed.append((session_id, reason.uri))

    def call(self, procedure: str, **kwargs: Any) -> defer.Deferred[Any]:
        self.hook_calls.append(procedure)
        if procedure == uris.HOOK_GROUP_MEMBERS:
            return defer.succeed({"members": self.members.get(kwargs["group_id"], [])})
        if procedure == uris.HOOK_CHECK_MESSAGE:
            verdict = {"allow": self.refuse_word not in str(kwargs.get("body"))}
            if self.check_gate is not None:
                return self.check_gate.addCallback(lambda _: verdict)
            return defer.succeed(verdict)
        raise AssertionError(procedure)

    def publish(self, topic: str, options: Any, kwargs: dict[str, Any]) -> None:
        raise AssertionError("no wamp sink in these tests")

    def to(self, user_id: str) -> list[dict[str, Any]]:
        """What was delivered on `user_id`'s inbox."""
        return self.on(uris.inbox_topic(user_id))

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [kw for t, _ids, _ex, kw in self.delivered if t == topic]


class RecordingSink(EventSink):
    name = "recording"

    def __init__(self) -> None:
        self.events: list[Event] = []

    def deliver(self, events: list[Event]) -> None:
        self.events.extend(events)


def online(runtime: TenantRuntime, user_id: str, device_id: str = "d1", session_id: int | None = None) -> Sender:
    """A joined device of `user_id`; returns it as a sender."""
    session_id = session_id or abs(hash((user_id, device_id))) % 10**9 + 1
    info = runtime.session_joined(session_id, user_id, device_id)
    assert info is not None
    return Sender(user_id, device_id, session_id, False)


def system(user_id: str = "backend") -> Sender:
    return Sender(user_id, None, 7, True)
