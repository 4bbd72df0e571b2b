"""The Crossbar internals MICS uses (mics.router), checked on a real Crossbar router run in process:
the trusted fan-out delivers exactly what a publish() with eligible_authid/exclude delivers, to the
same sessions, both to embedded sessions and over real WebSocket connections with every serializer
(pre-built frames written straight to the sockets); without the internals the realm port falls back
to publish()."""

from __future__ import annotations

from typing import Any

import pytest_twisted
from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp import message
from autobahn.wamp.types import ComponentConfig, SubscribeOptions
from crossbar.router.protocol import WampWebSocketServerFactory
from crossbar.router.role import RouterRoleStaticAuth
from crossbar.router.router import RouterFactory
from crossbar.router.session import RouterSessionFactory
from crossbar.worker.types import RouterRealm
from twisted.internet import defer, reactor, task

from mics import errors
from mics.router import Fanout, RealmPort, make_fanout
from wamp_clients import TestSession, connect, sleep

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


class Realms:
    """What Crossbar's authentication asks the worker (its realm container): the realm and roles here."""

    class personality:  # Crossbar reads worker.personality.EXTRA_AUTH_METHODS
        EXTRA_AUTH_METHODS: dict[str, Any] = {}

    @staticmethod
    def has_realm(realm: str) -> bool:
        return realm == REALM

    @staticmethod
    def has_role(realm: str, authrole: str) -> bool:
        return realm == REALM and authrole in ("user", "mics")


async def _router() -> tuple[Any, RouterSessionFactory]:
    factory = RouterFactory("node1", "router1", None)
    factory._worker = Realms()  # for the WebSocket clients' ticket authentication
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


# -- over real WebSocket connections ------------------------------------------------------------------

SERIALIZERS = ("json", "msgpack", "cbor")
USERS = ("bob", "alice", "carol", "mallory")
MAX_MESSAGE = 200_000


class Recorder(TestSession):
    """A network client that records every event it gets (kwargs and the concrete topic), in order."""

    __test__ = False

    def __init__(self, config: ComponentConfig) -> None:
        super().__init__(config)
        self.got: list[tuple[str, str | None, dict[str, Any]]] = []

    async def record(self, label: str, topic: str, match: str = "exact") -> None:
        def on_event(*args: Any, details: Any = None, **kwargs: Any) -> None:
            self.got.append((label, details.topic if match != "exact" else None, kwargs))

        await self.subscribe(on_event, topic, options=SubscribeOptions(match=match, details_arg="details"))


def _listen(sessions: RouterSessionFactory, compression: bool = False) -> tuple[str, Any]:
    """Crossbar's own WebSocket transport on a free port, ticket auth for USERS (role user)."""
    config: dict[str, Any] = {
        "serializers": list(SERIALIZERS),
        "options": {"max_message_size": MAX_MESSAGE},
        "auth": {"ticket": {"type": "static", "principals": {u: {"ticket": "t", "role": "user"} for u in USERS}}},
    }
    if compression:
        config["options"]["compression"] = {"deflate": {}}
    port = reactor.listenTCP(0, WampWebSocketServerFactory(sessions, None, config, None), interface="127.0.0.1")
    return f"ws://127.0.0.1:{port.getHost().port}/ws", port


async def _client(url: str, authid: str, serializer: str, compression: bool = False) -> Recorder:
    session = await connect(url, REALM, authmethod="ticket", ticket="t", authid=authid, serializer=serializer,
                            session_class=Recorder, compression=compression)  # fmt: skip
    assert isinstance(session, Recorder)
    return session


async def _settle(clients: list[Recorder], expected: int) -> None:
    """Wait until the clients together hold `expected` events (the network is asynchronous)."""
    for _ in range(200):
        if sum(len(c.got) for c in clients) >= expected:
            break
        await sleep(0.02)
    await sleep(0.1)  # and nothing more arrives


class Port:
    """A realm port on a fresh router with a WebSocket transport, either path."""

    def __init__(self, fast: bool, compression: bool = False) -> None:
        self.fast = fast
        self.compression = compression
        self.events_via_router_send = 0
        self.compressed = 0

    async def start(self) -> str:
        self.router, sessions = await _router()
        self.url, self.listening = _listen(sessions, self.compression)
        self.port = RealmPort(REALM)
        if self.fast:
            self.port.bind_router(self.router)
            assert self.port.fast_path
            send = self.router.send

            def counting_send(session: Any, msg: Any) -> None:  # what took the ordinary path
                if isinstance(msg, message.Event):
                    self.events_via_router_send += 1
                send(session, msg)

            self.router.send = counting_send
        else:
            publisher = ApplicationSession(ComponentConfig(REALM))
            joined: defer.Deferred[None] = defer.Deferred()
            publisher.on("join", lambda *_: joined.callback(None))
            sessions.add(publisher, self.router, authid="mics", authrole="mics")
            await joined
            self.port.bind_session(publisher)
        return self.url

    def protocol(self, client: TestSession) -> Any:
        """The router's end of a client's connection (its WebSocket protocol)."""
        return self.router._session_id_to_session[client._session_id]._transport

    def stop(self) -> Any:
        return self.listening.stopListening()

    async def __aenter__(self) -> Port:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


async def _network_scenario(fast: bool, compression: bool = False) -> tuple[list[list[Any]], Port]:
    """Bob on one device per serializer, alice, carol with a pattern subscription, mallory listening on
    bob's inbox; inbox, group and large-member-list deliveries with small, medium and large bodies."""
    async with Port(fast, compression) as side:
        url = side.url
        bobs = [await _client(url, "bob", ser, compression) for ser in SERIALIZERS]
        alice = await _client(url, "alice", "msgpack")
        carol = await _client(url, "carol", "cbor")
        mallory = await _client(url, "mallory", "json")
        for c in (*bobs, alice):
            await c.record("inbox", f"mics.inbox.{c._opts['authid']}")
            await c.record("group", "mics.group.g1")
        await carol.record("groups", "mics.group.", match="prefix")
        await mallory.record("inbox", "mics.inbox.bob")
        clients = [*bobs, alice, carol, mallory]
        side.compressed = sum(side.protocol(c)._perMessageCompress is not None for c in clients)
        body = {"text": "héllo ✓ 𝄞", "n": [1, 2.5, None, True, 2**63], "nested": {"a": {"b": []}}}
        deliver = side.port.deliver
        deliver("mics.inbox.bob", ("bob",), bobs[0]._session_id, {"msg_id": "m1", "seq": 3, "body": body})
        deliver("mics.group.g1", ["alice", "bob", "carol"], alice._session_id, {"msg_id": "g1", "body": body})
        members = [f"member{i}" for i in range(10_000)] + ["carol", "bob"]
        deliver("mics.group.g1", members, None, {"msg_id": "g2", "body": {"p": "x" * 300}})  # 16-bit length
        deliver("mics.group.g1", ["alice"], None, {"msg_id": "g3", "body": {"p": "y" * 70_000}})  # 64-bit length
        deliver("mics.group.g1", ["bob"], None, {"msg_id": "too big", "body": {"p": "z" * MAX_MESSAGE}})
        deliver("mics.group.g9", ["carol", "bob"], None, {"msg_id": "g9"})  # only carol's pattern matches
        deliver("mics.group.g1", ["nobody"], None, {"msg_id": "nobody here"})
        await _settle(clients, 12 + 3 * compression)  # m1 2, g1 4, g2 4, g3 1, g9 1 (+ "too big" compressed)
        return [c.got for c in clients], side


@pytest_twisted.ensureDeferred
async def test_pre_built_frames_deliver_what_publish_delivers_over_every_serializer():
    with_fast, fast = await _network_scenario(fast=True)
    with_publish, _ = await _network_scenario(fast=False)
    assert with_fast == with_publish
    bob_json, bob_msgpack, bob_cbor, alice, carol, mallory = with_fast
    assert [k["msg_id"] for _, _, k in bob_json] == ["g1", "g2"], "excluded from m1; too big for anyone"
    assert [k["msg_id"] for _, _, k in bob_msgpack] == ["m1", "g1", "g2"] == [k["msg_id"] for _, _, k in bob_cbor]
    assert [k["msg_id"] for _, _, k in alice] == ["g3"], "the sender's session is excluded"
    assert alice[0][2]["body"]["p"] == "y" * 70_000
    assert [(k["msg_id"], t) for _, t, k in carol] == [("g1", "mics.group.g1"), ("g2", "mics.group.g1"),
                                                      ("g9", "mics.group.g9")]  # fmt: skip
    assert mallory == [], "an eavesdropper on bob's inbox gets nothing"
    assert fast.events_via_router_send == 3, "only the oversized event took Router.send (which refused it)"
    assert fast.router._message_stats["sent"]["event"] == 12, "the router's statistics count what was written"


@pytest_twisted.ensureDeferred
async def test_compressed_connections_get_the_same_events_through_their_own_compression():
    with_fast, fast = await _network_scenario(fast=True, compression=True)
    with_publish, _ = await _network_scenario(fast=False, compression=True)
    assert with_fast == with_publish
    assert fast.compressed == 3, "bob's three devices negotiated permessage-deflate"
    assert [k["msg_id"] for _, _, k in with_fast[1]] == ["m1", "g1", "g2", "too big"], "compressed, it fits"
    assert fast.events_via_router_send == 3, "the limit is on the compressed size: Router.send decides"


@pytest_twisted.ensureDeferred
async def test_a_connection_whose_socket_is_full_gets_every_event_in_order():
    async with Port(fast=True) as side:
        bob = await _client(side.url, "bob", "msgpack")
        await bob.record("inbox", "mics.inbox.bob")
        n = 120  # ~8 MB in one reactor turn: the socket takes part, Twisted's buffer the rest
        for i in range(n):
            side.port.deliver("mics.inbox.bob", ("bob",), None, {"seq": i, "body": {"p": "x" * 65_000}})
        server = side.protocol(bob).transport
        assert len(server.dataBuffer) - server.offset + server._tempDataLen > 0, "some had to wait"
        await _settle([bob], n)
        assert [k["seq"] for _, _, k in bob.got] == list(range(n))
        assert side.events_via_router_send == 0


@pytest_twisted.ensureDeferred
async def test_a_connection_that_died_under_the_fan_out_does_not_stop_the_others():
    async with Port(fast=True) as side:
        gone = await _client(side.url, "bob", "json")
        other = await _client(side.url, "bob", "cbor")
        for c in (gone, other):
            await c.record("inbox", "mics.inbox.bob")
        gone._transport.transport.abortConnection()  # the router has not noticed yet
        side.port.deliver("mics.inbox.bob", ("bob",), None, {"msg_id": "m1"})
        side.port.deliver("mics.inbox.bob", ("bob",), None, {"msg_id": "m2"})
        await _settle([other], 2)
        assert [k["msg_id"] for _, _, k in other.got] == ["m1", "m2"]
        assert gone.got == []
        for _ in range(100):
            if gone._session_id not in side.router._session_id_to_session:
                break
            await sleep(0.02)
        assert gone._session_id not in side.router._session_id_to_session, "the router dropped the dead session"


def test_a_connection_missing_what_pre_built_frames_need_takes_the_ordinary_path():
    from autobahn.twisted.websocket import WampWebSocketServerProtocol
    from autobahn.websocket.protocol import WebSocketProtocol

    from mics.router import FrameWriter

    class Connection(WampWebSocketServerProtocol):
        """Looks like Autobahn's, but lacks what a newer or older Autobahn might not have."""

    half_built = object.__new__(Connection)
    half_built.state = WebSocketProtocol.STATE_OPEN
    half_built.send_state = WebSocketProtocol.SEND_STATE_GROUND
    event = message.Event(1, 2, kwargs={"x": 1})
    writer = FrameWriter()
    assert writer.write(half_built, event, {}) is False, "Router.send delivers it instead"
    assert writer.write(half_built, event, {}) is False, "every time, not only the first"
