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
from mics.cluster import TENANT, Cluster
from mics.config import TenantConfig
from mics.engine import Engine, Holds
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
    """One node's view of the tenant: its session table, realm port and engine."""

    engine: Engine
    sessions: SessionTable
    port: Port
    kicks: list[Any] = field(default_factory=list)

    def join(self, user_id: str, device_id: str = "d1") -> SessionInfo:
        info = SessionInfo(next(_ids), "t", user_id, device_id, 1, 0.0)
        self.sessions.add(info)
        self.engine.presence.joined(info)
        return info

    async def settled(self) -> None:
        """Presence writes are fire-and-forget: one round trip on the same connection orders them."""
        await self.engine.sync("nobody", 0, None)


def _config() -> TenantConfig:
    return TenantConfig.parse("tunit", {"secret": "unit-secret-123"})


@pytest_twisted.async_yield_fixture(params=["memory", "redis"])
async def pair(request) -> AsyncIterator[tuple[Member, Member]]:
    """(here, there): the same node in memory, two cluster members in Redis."""
    clock = task.Clock()
    if request.param == "memory":
        sessions, port = SessionTable(), Port()
        member = Member(MemoryEngines("n1").make("tunit", _config(), sessions, port, clock.seconds), sessions, port)
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
            else:
                box[0].kicks.append(op)

        async def no_reap(node_id: str) -> None:
            return None

        cluster = Cluster(node_id, url, reactor, on_operation, no_reap, lambda: None)
        await cluster.start()
        engine = RedisEngines(cluster).make(tenant_id, _config(), sessions, port, clock.seconds)
        member_box.append(Member(engine, sessions, port))
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
    here.sessions.remove(phone.session_id)
    here.engine.presence.left(phone)
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
