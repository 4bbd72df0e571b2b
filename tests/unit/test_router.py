"""The Crossbar internals MICS uses (mics.router), checked on a real Crossbar router run in process:
the trusted fan-out delivers exactly what a publish() with eligible_authid/exclude delivers, to the
same sessions; without the internals the realm port falls back to publish()."""

from __future__ import annotations

from typing import Any

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
