"""The Python SDK delivers inbox messages in seq order, each once: live messages that skip seqs wait
for a gap sync, live messages that arrive during a (re)join's sync wait for it, this device's own
sends fill their seqs. Driven through a fake session that answers mics.inbox.sync from a scripted
inbox (the network side is covered by tests/integration/test_sdk_python.py)."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor, task

from mics_client.core import CONNECTED
from mics_client.twisted import MicsClient
from mics_client.types import Welcome


def message(seq: int, body: str = "", sender: str = "alice") -> dict[str, Any]:
    return {"msg_id": f"m{seq}-{body}", "type": "chat", "from_user_id": sender, "from_device_id": "x",
            "to_user_id": "bob", "body": body or f"#{seq}", "ts": seq, "seq": seq}  # fmt: skip


class Session:
    """Answers mics.inbox.sync from `held` (what the router still holds)."""

    def __init__(self) -> None:
        self.held: list[dict[str, Any]] = []
        self.epoch = "e1"
        self.first_held = 1  # older seqs expired
        self.syncs: list[int] = []

    def is_attached(self) -> bool:
        return True

    def call(self, procedure: str, **kwargs: Any) -> defer.Deferred[Any]:
        assert procedure == "mics.inbox.sync"
        since = kwargs["since_seq"]
        self.syncs.append(since)
        complete = kwargs.get("epoch") in (None, self.epoch) and since + 1 >= self.first_held
        last = max((m["seq"] for m in self.held), default=0)
        got = [m for m in self.held if m["seq"] > since] if complete else list(self.held)
        return defer.succeed({"messages": got, "last_seq": last, "epoch": self.epoch, "complete": complete})


def client(session: Session) -> tuple[MicsClient, list[Any], list[Any]]:
    c = MicsClient("ws://127.0.0.1:1/ws", "t", "tok-bob", "phone", gap_wait_s=0.05)
    c.state = CONNECTED
    c._session = session
    c.welcome = Welcome("bob", "phone", "n1", 1, 30.0, 300, {})
    got: list[Any] = []
    gaps: list[Any] = []
    c.on_message(got.append)
    c.on_gap(gaps.append)
    return c, got, gaps


async def wait(seconds: float = 0.15) -> None:
    await task.deferLater(reactor, seconds, lambda: None)


def bodies(got: list[Any]) -> list[Any]:
    return [(m.body, m.replayed) for m in got]


@pytest_twisted.ensureDeferred
async def test_a_live_message_after_a_skipped_seq_waits_for_the_gap_sync():
    session = Session()
    c, got, gaps = client(session)
    session.held = [message(1), message(2), message(3)]
    c._on_inbox_event(**message(1))
    c._on_inbox_event(**message(3))  # 2 was lost on the way
    assert bodies(got) == [("#1", False)]
    await wait()
    assert bodies(got) == [("#1", False), ("#2", True), ("#3", False)]
    assert session.syncs == [1] and c.last_seq == 3 and not gaps


@pytest_twisted.ensureDeferred
async def test_live_messages_during_a_rejoins_sync_come_after_what_the_sync_brings():
    session = Session()
    c, got, _gaps = client(session)
    c._synced, c.last_seq = True, 1
    session.held = [message(1), message(2), message(3), message(4)]
    c._catching_up = True  # the (re)join subscribed its inbox and is syncing
    c._on_inbox_event(**message(4))
    c._on_inbox_event(**message(3))
    assert got == []
    await c.sync()
    c._catching_up = False
    c._release()
    assert bodies(got) == [("#2", True), ("#3", False), ("#4", False)]


@pytest_twisted.ensureDeferred
async def test_this_devices_own_sends_fill_their_seqs():
    session = Session()
    c, got, _gaps = client(session)
    c._own({"msg_id": "mine", "status": "SENT", "ts": 1, "delivered": "online", "seq": 1})
    c._on_inbox_event(**message(2))
    assert bodies(got) == [("#2", False)]
    await wait()
    assert session.syncs == [] and c.last_seq == 2


@pytest_twisted.ensureDeferred
async def test_a_gap_the_router_no_longer_holds_releases_what_waited_and_is_reported():
    session = Session()
    c, got, gaps = client(session)
    c._synced, c.last_seq = True, 1
    session.held, session.first_held = [message(5), message(6)], 5  # 2..4 expired
    c._on_inbox_event(**message(6))
    await wait()
    assert bodies(got) == [("#5", True), ("#6", False)] and c.last_seq == 6
    assert [(g.since_seq, g.last_seq) for g in gaps] == [(1, 6)]


@pytest_twisted.ensureDeferred
async def test_a_message_live_and_in_a_sync_is_delivered_once():
    session = Session()
    c, got, _gaps = client(session)
    session.held = [message(1), message(2)]
    c._on_inbox_event(**message(1))
    await c.sync(0)
    c._on_inbox_event(**message(2))
    assert bodies(got) == [("#1", False), ("#2", True)]


@pytest_twisted.ensureDeferred
async def test_a_new_stream_starts_over_from_the_routers_position():
    session = Session()
    c, got, gaps = client(session)
    c._synced, c.last_seq, c.epoch = True, 57, "e0"  # the router lost its store: its seqs start over
    session.held = [message(1, "fresh"), message(2, "fresher")]
    result = await c.sync()
    assert bodies(got) == [("fresh", True), ("fresher", True)] and not result.complete
    assert (c.last_seq, c.epoch, len(gaps)) == (2, "e1", 1)
    c._on_inbox_event(**message(3))
    assert got[-1].body == "#3"
