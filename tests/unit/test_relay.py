"""Cross-node WAMP (mics.cluster.relay) between in-process cluster members on a real redis-server:
announcements, forwarded calls and their answers, errors, timeouts and lost nodes, topics and
events. The realm side is a fake port (the Crossbar side is tested in test_router.py)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, reactor, task

from mics.cluster import RELAYED, TENANT, Cluster
from mics.cluster import relay as relay_module
from mics.cluster.relay import Routes, WampRelay, matches
from mics.router import Caller

_ids = itertools.count(1)


class Port:
    """A realm whose backends serve `handlers`; records what was published in it."""

    def __init__(self) -> None:
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.served_routes = Routes()
        self.published: list[tuple[str, dict[str, Any], dict[str, Any], list[Any]]] = []
        self.calls: list[tuple[str, Caller | None, int | None]] = []

    def install_relay(self, relay: Any) -> None:
        self.relay = relay

    def procedures(self) -> frozenset[tuple[str, str]]:
        return self.served_routes.procedures

    def call_here(self, procedure: str, args: list[Any], kwargs: dict[str, Any], caller: Caller | None,
                  timeout_ms: int | None, on_progress: Any = None) -> Any:  # fmt: skip
        self.calls.append((procedure, caller, timeout_ms))
        handler = self.handlers.get(procedure)
        if handler is None:
            return defer.fail(ApplicationError(ApplicationError.NO_SUCH_PROCEDURE, procedure))
        if on_progress is not None:  # a handler that streams takes `progress(*args, **kwargs)`
            kwargs = {**kwargs, "progress": lambda *a, **kw: on_progress(list(a), kw)}
        return defer.maybeDeferred(handler, *args, **kwargs).addCallback(lambda result: ([result], {}))

    def publish(self, topic: str, options: Any, kwargs: dict[str, Any], args: Any = ()) -> None:
        picked = {k: getattr(options, k) for k in ("eligible_authid", "exclude_authid", "eligible_authrole")}
        self.published.append((topic, {k: v for k, v in picked.items() if v}, kwargs, list(args)))


class Member:
    def __init__(self, cluster: Cluster, relay: WampRelay, port: Port, clock: task.Clock) -> None:
        self.cluster, self.relay, self.port, self.clock = cluster, relay, port, clock

    async def serve(self, routes: Routes, **handlers: Callable[..., Any]) -> None:
        """Backends here register `routes.procedures`; a backend takes events, someone subscribes
        to a tenant topic (the meta events the realm component passes on)."""
        self.port.handlers.update({k.replace("_", "."): v for k, v in handlers.items()})
        self.port.served_routes = routes
        for sub_id, uri, wanted in ((1, "mics.event.connect_online", routes.events), (2, "tenant.news", routes.topics)):
            if wanted:
                self.relay.subscription_created(sub_id, uri)
            else:
                self.relay.subscription_deleted(sub_id)
        self.relay.subscription_created(3, "mics.inbox.bob")  # an inbox: nothing other nodes need
        await self.relay.announce()


@pytest_twisted.async_yield_fixture()
async def pair(redis_url: str) -> AsyncIterator[tuple[Member, Member]]:
    tenant_id = f"rel{next(_ids)}x"
    members: list[Member] = []
    probes: list[defer.Deferred[None]] = []
    for n in range(2):
        probe: defer.Deferred[None] = defer.Deferred()
        probes.append(probe)
        box: list[Member] = []

        def on_operation(op: list[Any], origin: str, box: list[Member] = box, probe: Any = probe) -> None:
            kind, _tenant, *args = op
            if kind == TENANT and not probe.called:
                probe.callback(None)
            elif kind in RELAYED:
                box[0].relay.on_operation(kind, args, origin)

        async def no_reap(node_id: str) -> None:
            return None

        cluster = Cluster(f"{tenant_id}-n{n}", redis_url, reactor, on_operation, no_reap, lambda: None)
        await cluster.start()
        port, clock = Port(), task.Clock()
        box.append(Member(cluster, WampRelay(tenant_id, cluster, port, clock), port, clock))
        members.append(box[0])
    for n, probe in enumerate(probes):  # each member's subscription is live once a probe reaches it
        while not probe.called:
            members[1 - n].cluster.send_to(members[n].cluster.node_id, [TENANT, "probe"])
            await task.deferLater(reactor, 0.02, lambda: None)
    yield members[0], members[1]
    for m in members:
        m.relay.close()
        await m.cluster.stop()


async def until(probe: Callable[[], bool], timeout: float = 3.0) -> None:
    for _ in range(int(timeout / 0.01)):
        if probe():
            return
        await task.deferLater(reactor, 0.01, lambda: None)
    raise AssertionError("never happened")


ALICE = Caller(7, "alice", "user", {"session": 7, "authid": "alice", "authextra": {"device_id": "phone"}})


@pytest_twisted.ensureDeferred
async def test_a_call_another_node_announced_is_served_there_as_the_caller(pair):
    here, there = pair
    assert not here.relay.serves("tenant.org.tree")
    await there.serve(Routes(frozenset({("tenant.org.tree", "exact")})), tenant_org_tree=lambda root: {"root": root})
    await until(lambda: here.relay.serves("tenant.org.tree"))
    result = await here.relay.call("tenant.org.tree", [], {"root": "eng"}, ALICE, 2000)
    assert result == ([{"root": "eng"}], {})
    assert there.port.calls == [("tenant.org.tree", ALICE, 2000)]
    # the callee's node can now tell who alice's session is (wamp.session.get), and only that
    assert there.relay.session_details(7) == ALICE.details and there.relay.session_details(8) is None
    there.clock.advance(relay_module.SESSION_TTL_S + 1)
    assert there.relay.session_details(7) is None


@pytest_twisted.ensureDeferred
async def test_an_error_raised_by_the_remote_callee_comes_back_as_raised(pair):
    here, there = pair

    def refuse() -> None:
        raise ApplicationError("tenant.error.no_quota", "out of quota", plan="free")

    await there.serve(Routes(frozenset({("tenant.quota", "exact")})), tenant_quota=refuse)
    await until(lambda: here.relay.serves("tenant.quota"))
    with pytest.raises(ApplicationError) as raised:
        await here.relay.call("tenant.quota", [], {}, None, None)
    assert (raised.value.error, raised.value.args, raised.value.kwargs) == (
        "tenant.error.no_quota", ("out of quota",), {"plan": "free"},
    )  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_a_call_nobody_answers_fails_unavailable_after_its_timeout(pair):
    here, there = pair
    await there.serve(Routes(frozenset({("tenant.slow", "exact")})), tenant_slow=lambda: defer.Deferred())
    await until(lambda: here.relay.serves("tenant.slow"))
    pending = here.relay.call("tenant.slow", [], {}, None, 1500)
    here.clock.advance(1.4)
    assert not pending.called
    here.clock.advance(0.2)
    with pytest.raises(ApplicationError) as failed:
        await pending
    assert failed.value.error == "mics.error.unavailable" and failed.value.kwargs["code"] == 503


@pytest_twisted.ensureDeferred
async def test_calls_waiting_on_a_lost_node_fail_at_once_and_its_routes_go(pair):
    here, there = pair
    await there.serve(Routes(frozenset({("tenant.slow", "exact")})), tenant_slow=lambda: defer.Deferred())
    await until(lambda: here.relay.serves("tenant.slow"))
    pending = here.relay.call("tenant.slow", [], {}, None, None)
    await here.relay.node_lost(there.cluster.node_id)
    with pytest.raises(ApplicationError) as failed:
        await pending
    assert failed.value.error == "mics.error.unavailable"
    assert not here.relay.serves("tenant.slow")
    await here.relay.load()  # the lost node's announcement is gone from Redis too
    assert not here.relay.serves("tenant.slow")


@pytest_twisted.ensureDeferred
async def test_a_node_that_starts_later_reads_the_announcements_made_before(pair):
    here, there = pair
    await there.serve(Routes(frozenset({("tenant.dir.", "prefix")}), events=True))
    late = WampRelay(here.relay.tenant_id, here.cluster, Port(), task.Clock())
    assert not late.serves("tenant.dir.lookup")
    await late.load()
    assert late.serves("tenant.dir.lookup") and not late.serves("tenant.other")


@pytest_twisted.ensureDeferred
async def test_a_call_is_refused_rather_than_lost_when_a_value_cannot_travel_or_too_many_wait(pair, monkeypatch):
    here, there = pair
    await there.serve(Routes(frozenset({("tenant.x", "exact")})), tenant_x=lambda *a: defer.Deferred())
    await until(lambda: here.relay.serves("tenant.x"))
    with pytest.raises(ApplicationError) as refused:
        await here.relay.call("tenant.x", [2**70], {}, None, None)
    assert refused.value.error == "wamp.error.invalid_argument"
    monkeypatch.setattr(relay_module, "MAX_PENDING", 1)
    first = here.relay.call("tenant.x", [], {}, None, None)
    with pytest.raises(ApplicationError) as busy:
        await here.relay.call("tenant.x", [], {}, None, None)
    assert busy.value.error == "mics.error.unavailable"
    first.cancel()  # a canceled call is forgotten: room for the next one
    second = here.relay.call("tenant.x", [], {}, None, None)
    assert not second.called
    second.cancel()
    first.addErrback(lambda _f: None)
    second.addErrback(lambda _f: None)


@pytest_twisted.ensureDeferred
async def test_publishes_go_to_nodes_with_tenant_subscribers_with_their_options(pair):
    here, there = pair
    here.relay.published("tenant.news", [1], {"headline": "nobody listens yet"}, {})
    await there.serve(Routes(topics=True))
    await until(lambda: bool(here.relay._remote))
    here.relay.published("tenant.news", [2**70], {}, {})  # msgpack cannot carry it: dropped, logged
    here.relay.published("tenant.news", ["x"], {"headline": "v2"}, {"eligible_authid": ["carol"]})
    await until(lambda: bool(there.port.published))
    assert there.port.published == [("tenant.news", {"eligible_authid": ["carol"]}, {"headline": "v2"}, ["x"])]


@pytest_twisted.ensureDeferred
async def test_events_go_to_nodes_where_a_backend_takes_them_and_only_there(pair):
    here, there = pair
    await there.serve(Routes(topics=True))
    await until(lambda: bool(here.relay._remote))
    here.relay.events_elsewhere([("mics.event.connect_online", {"user_id": "bob"})])
    await task.deferLater(reactor, 0.2, lambda: None)
    assert there.port.published == []
    await there.serve(Routes(events=True))
    await until(lambda: here.relay._remote[there.cluster.node_id].events)
    here.relay.events_elsewhere([("mics.event.connect_online", {"user_id": "bob"})])
    await until(lambda: bool(there.port.published))
    assert there.port.published == [
        ("mics.event.connect_online", {"eligible_authrole": ["backend"]}, {"user_id": "bob"}, [])
    ]


def test_registrations_match_and_rank_as_a_dealers_do():
    assert matches("tenant.a.b", "exact", "tenant.a.b") and not matches("tenant.a.b", "exact", "tenant.a.bc")
    assert matches("tenant.files.", "prefix", "tenant.files.x.y") and not matches("tenant.files.", "prefix", "tenant.f")
    assert matches("tenant..list", "wildcard", "tenant.groups.list")
    assert not matches("tenant..list", "wildcard", "tenant.groups.x.list")
    assert not matches("tenant..list", "wildcard", "tenant.groups.lists")
    relay = WampRelay.__new__(WampRelay)
    relay._remote = {
        "n-wild": Routes(frozenset({("tenant..get", "wildcard")})),
        "n-short": Routes(frozenset({("tenant.", "prefix")})),
        "n-long": Routes(frozenset({("tenant.files.", "prefix")})),
        "n-exact": Routes(frozenset({("tenant.files.get", "exact")})),
    }
    assert relay._serving_node("tenant.files.get") == "n-exact"
    assert relay._serving_node("tenant.files.put") == "n-long"
    assert relay._serving_node("tenant.users.get") == "n-short"
    del relay._remote["n-short"]
    assert relay._serving_node("tenant.users.get") == "n-wild"
    assert relay._serving_node("mics.hook.auth") is None
