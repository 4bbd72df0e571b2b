"""The Crossbar internals MICS uses (mics.router), checked on a real Crossbar router run in process:
the trusted fan-out delivers exactly what a publish() with eligible_authid/exclude delivers, to the
same sessions; without the internals the realm port falls back to publish()."""

from __future__ import annotations

from collections import deque
from typing import Any

import pytest
import pytest_twisted
from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.types import ComponentConfig, SubscribeOptions
from crossbar.router.role import RouterRoleStaticAuth
from crossbar.router.router import RouterFactory
from crossbar.router.session import RouterSessionFactory
from crossbar.worker.types import RouterRealm
from twisted.internet import defer, reactor, task

from mics import errors
from mics.router import Fanout, RealmPort, make_fanout

REALM = "tunit"


class Client(ApplicationSession):
    """An embedded session that records every event it gets (kwargs and the concrete topic)."""

    def __init__(self, name: str) -> None:
        super().__init__(ComponentConfig(REALM))
        self.name = name
        self.got: list[tuple[str, str | None, dict[str, Any]]] = []
        self.ready: defer.Deferred[None] = defer.Deferred()
        self.left: list[str] = []

    async def onJoin(self, details: Any) -> None:
        def record(topic: str) -> Any:
            def on_event(*args: Any, details: Any = None, **kwargs: Any) -> None:
                self.got.append((topic, details.topic if details else None, kwargs))

            return on_event

        await self.subscribe(record("inbox"), "mics.inbox." + self.name)
        await self.subscribe(
            record("groups"), "mics.group.", options=SubscribeOptions(match="prefix", details_arg="details")
        )
        self.ready.callback(None)

    def onLeave(self, details: Any) -> None:
        self.left.append(details.reason)
        super().onLeave(details)


async def _router() -> tuple[Any, RouterSessionFactory]:
    factory = RouterFactory("node1", "router1", None)
    factory.start_realm(RouterRealm(None, None, {"name": REALM}))
    router = factory.get(REALM)
    everything = {
        "uri": "",
        "match": "prefix",
        "allow": {"call": True, "register": True, "publish": True, "subscribe": True},
        "disclose": {"caller": True},
    }
    router.add_role(RouterRoleStaticAuth(router, "user", default_permissions=everything))
    router.add_role(RouterRoleStaticAuth(router, "mics", default_permissions=everything))
    return router, RouterSessionFactory(factory)


async def _join(sessions: RouterSessionFactory, router: Any, authid: str, name: str | None = None) -> Client:
    client = Client(name or authid)
    sessions.add(client, router, authid=authid, authrole="user")
    await client.ready
    # a network session is indexed by authid when it joins (publish's eligible_authid reads that
    # index); an embedded one is not, so do what RouterSession does for it
    router._session_joined(client, client._session_details)
    return client


async def _scenario(port: RealmPort, router: Any, sessions: RouterSessionFactory) -> list[list[Any]]:
    """Bob on two devices, alice, and mallory subscribed to bob's inbox; what each receives."""
    bob1 = await _join(sessions, router, "bob")
    bob2 = await _join(sessions, router, "bob")
    alice = await _join(sessions, router, "alice")
    mallory = await _join(sessions, router, "mallory", name="bob")  # subscribes to mics.inbox.bob
    port.deliver("mics.inbox.bob", ("bob",), bob1._session_id, {"msg_id": "m1", "seq": 3})
    port.deliver("mics.group.g1", ["alice", "bob"], alice._session_id, {"msg_id": "g1", "body": {"x": [1]}})
    port.deliver("mics.group.g2", ["carol"], None, {"msg_id": "nobody here"})
    await task.deferLater(reactor, 0.1, lambda: None)  # publish() authorizes and dispatches asynchronously
    return [c.got for c in (bob1, bob2, alice, mallory)]


@pytest_twisted.ensureDeferred
async def test_the_fast_path_and_publish_deliver_identical_events_to_the_same_sessions():
    router, sessions = await _router()
    fast = RealmPort(REALM)
    fast.bind_router(router)
    assert fast.fast_path
    with_fast = await _scenario(fast, router, sessions)

    router2, sessions2 = await _router()
    publisher = ApplicationSession(ComponentConfig(REALM))
    joined: defer.Deferred[None] = defer.Deferred()
    publisher.on("join", lambda *_: joined.callback(None))
    sessions2.add(publisher, router2, authid="mics", authrole="mics")
    await joined
    slow = RealmPort(REALM)
    slow.bind_session(publisher)
    assert not slow.fast_path
    with_publish = await _scenario(slow, router2, sessions2)

    assert with_fast == with_publish
    bob1, bob2, alice, mallory = with_fast
    assert bob1 == [("groups", "mics.group.g1", {"msg_id": "g1", "body": {"x": [1]}})], "excluded from m1"
    assert bob2 == [("inbox", None, {"msg_id": "m1", "seq": 3}),
                    ("groups", "mics.group.g1", {"msg_id": "g1", "body": {"x": [1]}})]  # fmt: skip
    assert alice == [] and mallory == [], "the sender is excluded; an eavesdropper gets nothing"


@pytest_twisted.ensureDeferred
async def test_closing_a_session_in_process_sends_the_mics_goodbye_reason():
    router, sessions = await _router()
    port = RealmPort(REALM)
    port.bind_router(router)
    bob = await _join(sessions, router, "bob")
    port.close_session(bob._session_id, errors.CLOSE_KICKED, "kicked")
    assert bob.left == [errors.CLOSE_KICKED.uri]


def test_without_the_router_internals_the_port_falls_back_to_publish():
    class OldRouter:
        """A router lacking `_broker._subscription_map` (another Crossbar version)."""

        _session_id_to_session: dict[int, Any] = {}

    assert make_fanout(OldRouter()) is None
    published: list[tuple[str, Any, dict[str, Any]]] = []

    class Session:
        def publish(self, topic: str, options: Any = None, **kwargs: Any) -> None:
            published.append((topic, options, kwargs))

    port = RealmPort(REALM)
    port.bind_router(OldRouter())
    port.bind_session(Session())
    assert not port.fast_path
    port.deliver("mics.inbox.bob", ("bob",), 42, {"x": 1})
    [(topic, options, kwargs)] = published
    assert (topic, options.eligible_authid, options.exclude, kwargs) == ("mics.inbox.bob", ["bob"], [42], {"x": 1})
    assert isinstance(make_fanout(type("R", (), {"_broker": type("B", (), {"_subscription_map": 1}),
                                                 "_session_id_to_session": {}})()), Fanout)  # fmt: skip


@pytest.mark.parametrize("size", [0, 125, 126, 65535, 65536])
@pytest.mark.parametrize("binary", [False, True])
def test_a_shared_frame_is_the_frame_autobahn_sends(size, binary):
    """SharedFrames writes one frame to many connections: it must be byte for byte Autobahn's own."""
    from autobahn.twisted.websocket import WebSocketServerFactory, WebSocketServerProtocol
    from autobahn.websocket.protocol import TrafficStats, WebSocketProtocol
    from twisted.internet.testing import StringTransport

    from mics.router import _WS_OPEN, _WS_SEND_GROUND, _ws_frame

    assert (_WS_OPEN, _WS_SEND_GROUND) == (WebSocketProtocol.STATE_OPEN, WebSocketProtocol.SEND_STATE_GROUND)
    proto = WebSocketServerProtocol()
    proto.factory = WebSocketServerFactory()
    proto.transport = StringTransport()
    proto.state, proto.send_queue, proto.trafficStats = WebSocketProtocol.STATE_OPEN, deque(), TrafficStats()
    proto.maskServerFrames = proto.logFrames = proto.logOctets = proto.trackedTimings = False
    proto._perMessageCompress, proto.autoFragmentSize, proto.maxMessagePayloadSize = None, 0, 0
    payload = bytes(range(256)) * (size // 256) + bytes(size % 256)
    proto.sendMessage(payload, isBinary=binary)
    assert proto.transport.value() == _ws_frame(payload, binary)


@pytest_twisted.ensureDeferred
async def test_deliver_all_reaches_every_subscriber_whatever_their_authid():
    router, sessions = await _router()
    port = RealmPort(REALM)
    port.bind_router(router)
    watchers = [await _join(sessions, router, name) for name in ("alice", "bob")]
    for watcher in watchers:
        await watcher.subscribe(lambda w=watcher, **kw: w.got.append(("presence", None, kw)), "mics.presence.carol")
    assert port.deliver_all("mics.presence.carol", {"user_id": "carol", "online": True}) == 2
    assert port.deliver_all("mics.presence.nobody", {"user_id": "nobody", "online": True}) == 0
    assert [w.got[-1][2] for w in watchers] == [{"user_id": "carol", "online": True}] * 2
    assert port.subscriptions_under(watchers[0]._session_id, "mics.presence.") == 1
    assert port.subscriptions_under(watchers[0]._session_id, "mics.inbox.") == 1


@pytest_twisted.ensureDeferred
async def test_send_now_writes_at_once_keeps_the_order_behind_queued_data_and_queues_what_the_kernel_leaves():
    """`_send_now` bypasses Twisted's write queue only when it is empty; a real TCP pair shows the bytes
    arrive whole and in order either way."""
    from twisted.internet import protocol

    from mics.router import _send_now

    received = bytearray()
    server_side: defer.Deferred[Any] = defer.Deferred()

    class Server(protocol.Protocol):
        def connectionMade(self) -> None:
            server_side.callback(self.transport)

    class Client(protocol.Protocol):
        def dataReceived(self, data: bytes) -> None:
            received.extend(data)

    listening = reactor.listenTCP(0, protocol.Factory.forProtocol(Server), interface="127.0.0.1")
    client = await protocol.ClientCreator(reactor, Client).connectTCP("127.0.0.1", listening.getHost().port)
    try:
        transport = await server_side
        _send_now(transport, b"a")
        assert not transport._tempDataBuffer and not transport.dataBuffer, "sent at once"
        transport.write(b"b")  # queued for the next reactor turn
        _send_now(transport, b"c")  # must wait behind it
        assert transport._tempDataBuffer == [b"b", b"c"]
        big = bytes(range(256)) * 40_000  # 10 MB: more than the kernel takes at once
        _send_now(transport, big)
        for _ in range(500):
            if len(received) >= 3 + len(big):
                break
            await task.deferLater(reactor, 0.01, lambda: None)
        assert bytes(received[:3]) == b"abc" and bytes(received[3:]) == big
    finally:
        client.transport.loseConnection()
        await listening.stopListening()
