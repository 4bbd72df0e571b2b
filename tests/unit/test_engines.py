"""One behaviour suite for every engine and presence implementation (memory and Redis), written
once and run on each, like Centrifuge's shared broker tests; then what only a cluster does
(forwarding between nodes), on two in-process cluster members sharing a real redis-server.

"Two nodes" in the shared suite means: where a device is tracked (`here`) and who asks (`there`).
On one node (memory) they are the same node; in Redis they are two members of one cluster.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest_twisted
from twisted.internet import defer, reactor, task

from mics import uris
from mics.buffer import SYNC_PAGE_BYTES, SYNC_PAGE_MESSAGES, Sent
from mics.buffer.redis import RECENT_PAGE
from mics.cluster import PRESENCE, TENANT, Cluster
from mics.config import TenantConfig
from mics.engine import Conversation, Engine, Holds
from mics.engine.memory import MemoryEngines
from mics.engine.redis import RedisEngines
from mics.sessions import SessionInfo, SessionTable

_ids = itertools.count(1)
HOLDS = Holds(online_s=60, offline_s=300, copy_s=60)


class Port:
    """Records what an engine delivers on its node."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, tuple[str, ...], int | None, dict[str, Any]]] = []
        self.arrived: defer.Deferred[None] | None = None

    def deliver(self, topic: str, authids: Any, exclude: int | None, kwargs: dict[str, Any]) -> None:
        self.delivered.append((topic, tuple(authids), exclude, dict(kwargs)))
        if self.arrived is not None and not self.arrived.called:
            self.arrived.callback(None)

    def on(self, topic: str) -> list[dict[str, Any]]:
        return [kw for t, _ids, _ex, kw in self.delivered if t == topic]

    async def next_delivery(self, timeout: float = 3.0) -> None:
        self.arrived = defer.Deferred()
        self.arrived.addTimeout(timeout, reactor)
        await self.arrived


@dataclass
class Member:
    """One node's view of the tenant: its session table, realm port and engine; `changes` are the
    presence changes this node heard of (its own, and in a cluster those forwarded for its watches)."""

    engine: Engine
    sessions: SessionTable
    port: Port
    clock: task.Clock
    kicks: list[Any] = field(default_factory=list)
    changes: list[tuple[str, list[str]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.engine.presence.on_change = lambda user, devices: self.changes.append((user, devices))

    def join(self, user_id: str, device_id: str = "d1") -> SessionInfo:
        info = SessionInfo(next(_ids), "t", user_id, device_id, 1, 0.0)
        older = self.sessions.add(info)
        self.engine.presence.joined(info, device_added=older is None)
        return info

    def leave(self, info: SessionInfo) -> None:
        self.sessions.remove(info.session_id)
        removed = info.device_id not in self.sessions.devices(info.user_id)
        self.engine.presence.left(info, device_removed=removed)

    async def port_wait(self) -> None:
        """Let forwarded operations arrive."""
        await task.deferLater(reactor, 0.02, lambda: None)

    async def elapse(self, seconds: float) -> None:
        """Time passes for the memory engine (its clock) and for Redis (real key TTLs)."""
        self.clock.advance(seconds)
        await task.deferLater(reactor, seconds, lambda: None)

    async def settled(self) -> None:
        """Presence writes are fire-and-forget: wait for the ones in flight."""
        await self.engine.presence.settled()


def _config() -> TenantConfig:
    return TenantConfig.parse("tunit", {"secret": "unit-secret-123"})


@pytest_twisted.async_yield_fixture(params=["memory", "redis"])
async def pair(request) -> AsyncIterator[tuple[Member, Member]]:
    """(here, there): the same node in memory, two cluster members in Redis."""
    clock = task.Clock()
    if request.param == "memory":
        sessions, port = SessionTable(), Port()
        engine = MemoryEngines("n1").make("tunit", _config(), sessions, port, clock.seconds)
        member = Member(engine, sessions, port, clock)
        yield member, member
        return
    members, clusters = await _cluster(request.getfixturevalue("redis_url"), 2, clock)
    yield members[0], members[1]
    for c in clusters:
        await c.stop()


async def _cluster(url: str, size: int, clock: task.Clock) -> tuple[list[Member], list[Cluster]]:
    tenant_id = f"eng{next(_ids)}x"
    members: list[Member] = []
    clusters: list[Cluster] = []
    probes: list[defer.Deferred[None]] = []
    for n in range(size):
        node_id = f"{tenant_id}-n{n}"
        sessions, port = SessionTable(), Port()
        member_box: list[Member] = []
        probe: defer.Deferred[None] = defer.Deferred()
        probes.append(probe)

        def on_operation(op: list[Any], origin: str, box: list[Member] = member_box, probe=probe) -> None:
            kind, _tenant, *args = op
            if kind == TENANT:
                if not probe.called:
                    probe.callback(None)
            elif kind == "deliver":
                box[0].engine.deliver_local(args[0], args[1], None, args[2])
            elif kind == PRESENCE:
                box[0].changes.append((args[0], args[1]))
            else:
                box[0].kicks.append(op)

        async def no_reap(node_id: str) -> None:
            return None

        cluster = Cluster(node_id, url, reactor, on_operation, no_reap, lambda: None)
        await cluster.start()
        engine = RedisEngines(cluster).make(tenant_id, _config(), sessions, port, clock.seconds)
        member_box.append(Member(engine, sessions, port, clock))
        members.append(member_box[0])
        clusters.append(cluster)
    for n, probe in enumerate(probes):  # each member's subscription is live once a probe reaches it
        sender = clusters[(n + 1) % size]
        while not probe.called:
            sender.send_to(clusters[n].node_id, [TENANT, "probe"])
            await task.deferLater(reactor, 0.02, lambda: None)
    return members, clusters


# -- presence: the same answers on every implementation ----------------------------------------------
@pytest_twisted.ensureDeferred
async def test_presence_shows_each_online_device_to_every_node(pair):
    here, there = pair
    here.join("bob", "phone")
    here.join("bob", "pc")
    await here.settled()
    where = await there.engine.presence.where(["bob", "carol"])
    assert sorted(where["bob"]) == ["pc", "phone"] and where["carol"] == {}
    assert await there.engine.online_among(["bob", "carol"]) == {"bob"}
    assert await there.engine.any_online(["carol", "bob"]) and not await there.engine.any_online(["carol"])
    got = await there.engine.presence.get(["bob", "carol"])
    assert got == {"bob": {"online": True, "devices": ["pc", "phone"]}, "carol": {"online": False, "devices": []}}


@pytest_twisted.ensureDeferred
async def test_presence_forgets_a_device_that_left_and_lists_sessions_with_their_node(pair):
    here, there = pair
    phone = here.join("bob", "phone")
    here.join("alice")
    await here.settled()
    listed = await there.engine.presence.sessions(None)
    assert sorted(s["user_id"] for s in listed) == ["alice", "bob"]
    assert {s["node_id"] for s in listed} == {here.engine.node_id}
    here.leave(phone)
    await here.settled()
    assert (await there.engine.presence.where(["bob"]))["bob"] == {}
    assert [s["user_id"] for s in await there.engine.presence.sessions("bob")] == []


# -- engines: the same behaviour on every implementation --------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_an_inbox_message_is_held_with_the_next_seq_and_delivered_to_online_devices(pair):
    here, _ = pair
    phone = here.join("bob", "phone")
    here.join("bob", "pc")
    await here.settled()
    message = {"msg_id": "m1", "body": "hi"}
    held = await here.engine.inbox("bob", None, phone.session_id, message, 10, HOLDS)
    assert held.seq == 1 and held.copy_seq is None and held.online
    [(topic, authids, exclude, kwargs)] = here.port.delivered
    assert (topic, authids, exclude) == (uris.inbox_topic("bob"), ("bob",), phone.session_id)
    assert kwargs == {**message, "seq": 1} and "seq" not in message
    synced = await here.engine.sync("bob", 0, None)
    assert [m["msg_id"] for m in synced.messages] == ["m1"] and synced.last_seq == 1


@pytest_twisted.ensureDeferred
async def test_a_message_for_an_offline_user_is_held_and_the_senders_copy_takes_the_senders_next_seq(pair):
    here, _ = pair
    here.join("alice", "phone")
    here.join("alice", "pc")
    await here.settled()
    held = await here.engine.inbox("bob", "alice", None, {"msg_id": "m2"}, 10, HOLDS)
    assert (held.seq, held.copy_seq, held.online) == (1, 1, False)
    assert here.port.on(uris.inbox_topic("bob")) == []
    assert [m["seq"] for m in here.port.on(uris.inbox_topic("alice"))] == [1]
    assert [m["msg_id"] for m in (await here.engine.sync("bob", 0, None)).messages] == ["m2"]


@pytest_twisted.ensureDeferred
async def test_live_messages_reach_online_devices_only_and_are_never_held(pair):
    here, _ = pair
    assert not await here.engine.live("bob", None, {"msg_id": "s1"})
    here.join("bob")
    await here.settled()
    assert await here.engine.live("bob", None, {"msg_id": "s2"})
    assert [m["msg_id"] for m in here.port.on(uris.inbox_topic("bob"))] == ["s2"]
    assert (await here.engine.sync("bob", 0, None)).last_seq == 0


@pytest_twisted.ensureDeferred
async def test_holding_for_many_users_gives_each_their_own_next_seq(pair):
    here, _ = pair
    await here.engine.inbox("carol", None, None, {"msg_id": "first"}, 10, HOLDS)
    await here.engine.hold(["carol", "dave"], {"msg_id": "g1"}, 10, 300)
    carol, dave = await here.engine.sync("carol", 0, None), await here.engine.sync("dave", 0, None)
    assert [(m["msg_id"], m["seq"]) for m in carol.messages] == [("first", 1), ("g1", 2)]
    assert [(m["msg_id"], m["seq"]) for m in dave.messages] == [("g1", 1)]


@pytest_twisted.ensureDeferred
async def test_a_client_msg_id_is_remembered_for_dedup(pair):
    here, _ = pair
    assert await here.engine.seen("alice", "c1") is None
    await here.engine.remember("alice", "c1", {"msg_id": "m1"})
    assert await here.engine.seen("alice", "c1") == {"msg_id": "m1"}
    assert await here.engine.seen("bob", "c1") is None


@pytest_twisted.ensureDeferred
async def test_a_key_is_claimed_once_on_every_node_until_it_expires(pair):
    here, there = pair
    assert await here.engine.claim_once("nonce-1", 60)
    assert not await there.engine.claim_once("nonce-1", 60)
    assert await there.engine.claim_once("nonce-2", 60)


# -- section 11: the sender index, held copies changed in place, claims, presence changes ------------------
@pytest_twisted.ensureDeferred
async def test_the_sender_index_remembers_who_sent_what_to_whom_and_where_the_copies_are_held(pair):
    here, there = pair
    message = {"msg_id": "m1", "from_user_id": "alice", "to_user_id": "bob", "ts": 5, "body": "hi"}
    held = await here.engine.inbox("bob", "alice", None, message, 10, HOLDS, remember_s=60)
    sent = await there.engine.sent("m1")
    assert sent == Sent("m1", "alice", "bob", None, 5, (("bob", held.seq), ("alice", held.copy_seq)))
    assert await there.engine.sent("m2") is None
    await here.engine.inbox("bob", None, None, {**message, "msg_id": "m3"}, 10, HOLDS)
    assert await there.engine.sent("m3") is None, "remember_s 0: not indexed"


@pytest_twisted.ensureDeferred
async def test_a_recall_leaves_tombstones_in_every_held_copy_and_no_edit_can_undo_it(pair):
    here, there = pair
    message = {"msg_id": "m1", "from_user_id": "alice", "to_user_id": "bob", "ts": 5, "body": "secret"}
    held = await here.engine.inbox("bob", "alice", None, message, 10, HOLDS, remember_s=60)
    sent = await there.engine.sent("m1")
    assert sent is not None
    assert await there.engine.amend(sent, {"body": None, "recalled": True}, 4, recall=True)
    for user_id, seq in (("bob", held.seq), ("alice", held.copy_seq)):
        [copy] = (await here.engine.sync(user_id, 0, None)).messages
        assert copy == {**message, "body": None, "recalled": True, "seq": seq}
    assert (await here.engine.sent("m1")).recalled  # type: ignore[union-attr]
    assert not await here.engine.amend(sent, {"body": "back", "edited_at": 9}, 8, recall=False)
    assert not await here.engine.amend(sent, {"body": None, "recalled": True}, 4, recall=True)
    [copy] = (await there.engine.sync("bob", 0, None)).messages
    assert copy["body"] is None and "edited_at" not in copy


@pytest_twisted.ensureDeferred
async def test_an_edit_replaces_the_body_of_each_held_copy_and_keeps_its_seq(pair):
    here, there = pair
    await here.engine.inbox("carol", None, None, {"msg_id": "first"}, 10, HOLDS)
    message = {"msg_id": "g1", "from_user_id": "alice", "group_id": "g", "ts": 5, "body": "draft"}
    held = await here.engine.hold(["carol", "dave"], message, 10, 300)
    assert held == (("carol", 2), ("dave", 1))
    await here.engine.remember_sent(message, held, 60)
    sent = await there.engine.sent("g1")
    assert sent is not None and sent.group_id == "g" and sent.held == held
    assert await there.engine.amend(sent, {"body": "final text", "edited_at": 9}, 20, recall=False)
    carol = (await here.engine.sync("carol", 0, None)).messages
    assert [(m["msg_id"], m["seq"], m.get("body")) for m in carol] == [("first", 1, None), ("g1", 2, "final text")]
    assert carol[1]["edited_at"] == 9 and carol[0].get("edited_at") is None
    assert (await there.engine.sync("dave", 0, None)).messages[0]["body"] == "final text"


@pytest_twisted.ensureDeferred
async def test_a_held_copy_of_another_message_at_the_same_seq_is_never_touched(pair):
    here, _ = pair
    await here.engine.inbox("bob", None, None, {"msg_id": "mine", "body": "keep"}, 10, HOLDS)
    forged = Sent("other", "alice", "bob", None, 5, (("bob", 1),))
    await here.engine.remember_sent({"msg_id": "other", "from_user_id": "alice", "ts": 5}, (("bob", 1),), 60)
    assert await here.engine.amend(forged, {"body": None, "recalled": True}, 4, recall=True)
    assert (await here.engine.sync("bob", 0, None)).messages[0]["body"] == "keep"


@pytest_twisted.ensureDeferred
async def test_the_sender_index_forgets_after_its_window(pair):
    here, there = pair
    message = {"msg_id": "m1", "from_user_id": "alice", "to_user_id": "bob", "ts": 5}
    await here.engine.inbox("bob", None, None, message, 10, HOLDS, remember_s=0.2)
    assert await there.engine.sent("m1") is not None
    await here.elapse(0.3)
    assert await there.engine.sent("m1") is None


@pytest_twisted.ensureDeferred
async def test_a_claim_can_be_made_again_once_its_time_is_up(pair):
    """Offline push triggers collapse per (user, conversation) for push_collapse_s with claim_once."""
    here, there = pair
    assert await here.engine.claim_once("push:bob:u:alice", 0.2)
    assert not await there.engine.claim_once("push:bob:u:alice", 0.2)
    await here.elapse(0.3)
    assert await there.engine.claim_once("push:bob:u:alice", 0.2)


@pytest_twisted.ensureDeferred
async def test_a_change_of_a_users_devices_reaches_the_node_that_watches_them(pair):
    here, there = pair
    there.engine.presence.watch("bob")
    await there.settled()
    phone = here.join("bob", "phone")
    await here.settled()
    again = here.join("bob", "phone")  # the same device again: no change
    here.join("carol")  # nobody watches carol
    await here.settled()
    here.leave(phone)  # replaced already: no change
    here.leave(again)
    await here.settled()
    expected = [("bob", ["phone"]), ("bob", [])]
    for _ in range(100):  # forwarded in a cluster
        if [c for c in there.changes if c[0] == "bob"] == expected:
            break
        await there.port_wait()
    assert [c for c in there.changes if c[0] == "bob"] == expected
    assert [c for c in here.changes if c[0] == "bob"] == expected, "the node that made the change heard it"
    if there is not here:
        assert [c for c in there.changes if c[0] == "carol"] == [], "nobody watches carol there: no frame"
        assert ("carol", ["d1"]) in here.changes


# -- sync pages: a full inbox of large messages still syncs, a page at a time ---------------------------------
async def _hold_sized(member: Member, sizes: list[int], holds: Holds = HOLDS) -> None:
    """Offline messages for bob with these held sizes (what the page budget counts)."""
    for size in sizes:
        await member.engine.inbox("bob", None, None, {"msg_id": f"m{size}-{next(_ids)}"}, size, holds)


async def _seqs(member: Member, since_seq: int, epoch: str | None = None) -> tuple[list[int], int, bool, bool]:
    synced = await member.engine.sync("bob", since_seq, epoch)
    return [m["seq"] for m in synced.messages], synced.last_seq, synced.more, synced.complete


@pytest_twisted.ensureDeferred
async def test_a_sync_page_holds_messages_up_to_exactly_the_budget_and_resuming_gets_the_rest(pair):
    here, there = pair
    await _hold_sized(here, [SYNC_PAGE_BYTES // 4] * 4)
    assert await _seqs(there, 0) == ([1, 2, 3, 4], 4, False, True)  # exactly the budget: one page
    await _hold_sized(here, [1])
    assert await _seqs(there, 0) == ([1, 2, 3, 4], 4, True, True)  # one byte over: cut before it
    assert await _seqs(there, 4) == ([5], 5, False, True)
    synced = await there.engine.sync("bob", 0, None)
    assert synced.to_kwargs()["more"] is True and synced.to_kwargs()["last_seq"] == 4


@pytest_twisted.ensureDeferred
async def test_a_message_larger_than_the_budget_is_a_page_of_its_own(pair):
    here, there = pair
    await _hold_sized(here, [SYNC_PAGE_BYTES + 1, 10, SYNC_PAGE_BYTES * 2])
    assert await _seqs(there, 0) == ([1], 1, True, True)
    assert await _seqs(there, 1) == ([2], 2, True, True)
    assert await _seqs(there, 2) == ([3], 3, False, True)


@pytest_twisted.ensureDeferred
async def test_a_sync_page_holds_at_most_a_page_of_messages_however_small(pair):
    here, there = pair
    await _hold_sized(here, [1] * (SYNC_PAGE_MESSAGES * 2 + 1))
    first = await _seqs(there, 0)
    assert first == (list(range(1, SYNC_PAGE_MESSAGES + 1)), SYNC_PAGE_MESSAGES, True, True)
    second = await _seqs(there, SYNC_PAGE_MESSAGES)
    assert second[1:] == (SYNC_PAGE_MESSAGES * 2, True, True)
    assert await _seqs(there, SYNC_PAGE_MESSAGES * 2) == ([SYNC_PAGE_MESSAGES * 2 + 1], SYNC_PAGE_MESSAGES * 2 + 1,
                                                           False, True)  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_a_page_is_incomplete_only_when_a_message_of_its_own_range_is_gone(pair):
    here, there = pair
    await _hold_sized(here, [10], Holds(1, 1, 1))  # seq 1 expires
    await _hold_sized(here, [SYNC_PAGE_BYTES // 2] * 3)  # seqs 2..4: two a page
    await _hold_sized(here, [10], Holds(1, 1, 1))  # seq 5 expires
    await _hold_sized(here, [10])  # seq 6
    await here.elapse(1.1)
    assert await _seqs(there, 0) == ([2, 3], 3, True, False)  # seq 1 is gone
    assert await _seqs(there, 3) == ([4, 6], 6, False, False)  # seq 5 is gone
    assert await _seqs(there, 1) == ([2, 3], 3, True, True)  # a client that had seq 1 misses nothing
    synced = await there.engine.sync("bob", 3, None)
    old = await _seqs(there, 3, "another-epoch")  # another stream: from the start, incomplete
    assert old == ([2, 3], 3, True, False) and synced.epoch != "another-epoch"
    assert await _seqs(there, 6) == ([], 6, False, True)


# -- section 12: an agent's context, from the held messages of one conversation -----------------------------
def _chat(msg_id: str, sender: str, to: str, **extra: Any) -> dict[str, Any]:
    return {"msg_id": msg_id, "type": "chat", "from_user_id": sender, "to_user_id": to, "ts": 5, "body": msg_id,
            **extra}  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_the_recent_messages_of_a_conversation_are_the_newest_held_ones_oldest_first(pair):
    here, there = pair
    for n in range(4):  # alice <-> helper, each held in alice's inbox (her copies and the replies)
        await here.engine.inbox("helper", "alice", None, _chat(f"q{n}", "alice", "helper"), 10, HOLDS)
        await here.engine.inbox("alice", None, None, _chat(f"a{n}", "helper", "alice"), 10, HOLDS)
    await here.engine.inbox("alice", "bob", None, _chat("other", "bob", "alice"), 10, HOLDS)  # another chat
    await here.engine.inbox("alice", None, None, {**_chat("r1", "helper", "alice"), "type": "receipt"}, 10, HOLDS)
    await here.engine.hold(["alice"], {**_chat("g1", "helper", "", type="group_chat"), "group_id": "team"}, 10, 300)
    chat = Conversation("alice", peer="helper", skip="a3")
    recent = await there.engine.recent(chat, 3)
    assert [(m["msg_id"], m["seq"]) for m in recent] == [("q2", 5), ("a2", 6), ("q3", 7)]
    assert [m["msg_id"] for m in await there.engine.recent(chat, 100)] == ["q0", "a0", "q1", "a1", "q2", "a2", "q3"]
    assert [m["msg_id"] for m in await there.engine.recent(Conversation("alice", group_id="team"), 5)] == ["g1"]
    assert await there.engine.recent(chat, 0) == []
    assert await there.engine.recent(Conversation("nobody", peer="helper"), 5) == []


@pytest_twisted.ensureDeferred
async def test_a_stream_reaches_every_node_in_the_order_it_was_sent(pair):
    """An agent's chunks (section 12): each `stream` returns once every node will see it first."""
    here, there = pair
    topic = uris.inbox_topic("alice")
    for n in range(40):
        await here.engine.stream(topic, ["alice"], {"chunk_seq": n})
    for _ in range(100):
        if len(there.port.on(topic)) == 40:
            break
        await there.port_wait()
    assert [m["chunk_seq"] for m in there.port.on(topic)] == list(range(40))
    assert [m["chunk_seq"] for m in here.port.on(topic)] == list(range(40))


@pytest_twisted.ensureDeferred
async def test_the_recent_messages_leave_out_recalled_and_expired_ones(pair):
    here, there = pair
    message = _chat("m1", "alice", "helper")
    await here.engine.inbox("helper", "alice", None, message, 10, HOLDS, remember_s=60)
    await here.engine.inbox("helper", "alice", None, _chat("m2", "alice", "helper"), 10, Holds(1, 1, 0.2))
    sent = await there.engine.sent("m1")
    assert sent is not None and await there.engine.amend(sent, {"body": None, "recalled": True}, 4, recall=True)
    assert [m["msg_id"] for m in await there.engine.recent(Conversation("alice", peer="helper"), 5)] == ["m2"]
    await here.elapse(0.3)
    assert await there.engine.recent(Conversation("alice", peer="helper"), 5) == []


@pytest_twisted.ensureDeferred
async def test_the_recent_messages_are_found_behind_pages_of_other_ones_in_redis(redis_url):
    """More held entries than one page of the Redis read: the search goes on to older pages."""
    (member, _other), clusters = await _cluster(redis_url, 2, task.Clock())
    try:
        engine = member.engine
        await engine.inbox("alice", None, None, _chat("old", "helper", "alice"), 10, HOLDS)
        others = [f"o{n}" for n in range(2 * RECENT_PAGE + 5)]
        for msg_id in others:
            await engine.inbox("alice", None, None, _chat(msg_id, "bob", "alice"), 10, HOLDS)
        await engine.inbox("alice", None, None, _chat("new", "helper", "alice"), 10, HOLDS)
        chat = Conversation("alice", peer="helper")
        assert [m["msg_id"] for m in await engine.recent(chat, 5)] == ["old", "new"]
        assert [m["msg_id"] for m in await engine.recent(Conversation("alice", peer="bob"), 2)] == others[-2:]
    finally:
        for c in clusters:
            await c.stop()


# -- what only a cluster does --------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_a_cluster_forwards_inbox_messages_group_deliveries_and_signals_to_the_node_of_each_device(redis_url):
    (a, b), clusters = await _cluster(redis_url, 2, task.Clock())
    try:
        a.join("alice", "phone")
        b.join("alice", "pc")
        b.join("bob")
        await a.settled()
        await b.settled()
        arrived = defer.ensureDeferred(b.port.next_delivery())
        held = await a.engine.inbox("bob", "alice", None, {"msg_id": "m1"}, 10, HOLDS)
        await arrived
        assert held.online and b.port.on(uris.inbox_topic("bob")) == [{"msg_id": "m1", "seq": held.seq}]
        while not b.port.on(uris.inbox_topic("alice")):  # the sender's copy to the pc, forwarded too
            await b.port.next_delivery()
        assert b.port.on(uris.inbox_topic("alice")) == [{"msg_id": "m1", "seq": held.copy_seq}]
        arrived = defer.ensureDeferred(b.port.next_delivery())
        await a.engine.group(uris.group_topic("g"), ["alice", "bob"], None, {"msg_id": "g1"})
        await arrived
        assert b.port.on(uris.group_topic("g")) == [{"msg_id": "g1"}]
        assert a.port.on(uris.group_topic("g")) == [{"msg_id": "g1"}], "and this node's own subscribers"
        arrived = defer.ensureDeferred(b.port.next_delivery())
        assert await a.engine.live("bob", None, {"msg_id": "s1"})
        await arrived
        assert b.port.on(uris.inbox_topic("bob"))[-1] == {"msg_id": "s1"}
        assert await a.engine.kick_elsewhere("alice", "pc") == 1
        while not b.kicks:
            await task.deferLater(reactor, 0.02, lambda: None)
        assert b.kicks == [["kick", a.engine.tenant_id, "alice", "pc"]]
    finally:
        for c in clusters:
            await c.stop()


@pytest_twisted.ensureDeferred
async def test_a_cluster_send_writes_its_dedup_record_with_the_message(redis_url):
    """A send whose reply was lost (a Redis failover closed the connection mid-script) is retried
    with its client_msg_id: the record written in the same script run answers with the first Ack."""
    (a, b), clusters = await _cluster(redis_url, 2, task.Clock())
    try:
        b.join("bob")
        await b.settled()
        message = {"msg_id": "m1", "ts": 1234, "from_user_id": "alice", "client_msg_id": "c1", "body": "x"}
        held = await a.engine.inbox("bob", "alice", None, message, 10, HOLDS)
        ack = await b.engine.seen("alice", "c1")
        assert ack == {"msg_id": "m1", "status": "SENT", "ts": 1234, "delivered": "online", "seq": held.copy_seq,
                       "client_msg_id": "c1"}  # fmt: skip
        assert await a.engine.seen("alice", "c2") is None
    finally:
        for c in clusters:
            await c.stop()


@pytest_twisted.ensureDeferred
async def test_one_node_has_no_elsewhere_to_kick():
    sessions, port = SessionTable(), Port()
    engine = MemoryEngines("n1").make("tunit", _config(), sessions, port, task.Clock().seconds)
    assert await engine.kick_elsewhere("alice", None) == 0
    assert type(engine).transient_errors == ()
    assert isinstance(RedisEngines.transient_errors, tuple) and RedisEngines.transient_errors


@pytest_twisted.ensureDeferred
async def test_reaping_a_lost_node_tells_the_watchers_of_its_users_and_ends_its_own_watches(redis_url):
    (a, b), clusters = await _cluster(redis_url, 2, task.Clock())
    try:
        b.engine.presence.watch("bob")
        a.engine.presence.watch("carol")
        await a.settled()
        await b.settled()
        a.join("bob")
        await a.settled()
        for _ in range(100):
            if ("bob", ["d1"]) in b.changes:
                break
            await b.port_wait()
        lost = await b.engine.presence.reap(a.engine.node_id)  # a died: b reaps it
        assert [entry["user_id"] for entry in lost] == ["bob"]
        for _ in range(100):
            if ("bob", []) in b.changes:
                break
            await b.port_wait()
        assert b.changes == [("bob", ["d1"]), ("bob", [])]
        b.join("carol")
        await b.settled()
        await task.deferLater(reactor, 0.2, lambda: None)
        assert [c for c in a.changes if c[0] == "carol"] == [], "the lost node's watches went with it"
    finally:
        for c in clusters:
            await c.stop()
