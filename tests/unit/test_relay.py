"""Cross-node WAMP (mics.cluster.relay) between in-process cluster members on a real redis-server:
announcements, forwarded calls and their answers, errors, timeouts and lost nodes, topics and
events, progressive results put back in order, cancels.
The realm side is a fake port (the Crossbar side is tested in test_router.py)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, reactor, task

from mics.cluster import PROGRESS, RELAYED, RESULT, TENANT, Cluster
from mics.cluster import relay as relay_module
from mics.cluster.relay import OutOfOrder, ProgressOrder, Routes, WampRelay, matches
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


# -- progressive results and cancels ------------------------------------------------------------------------
def test_progressive_results_are_put_back_in_the_order_the_callee_sent_them():
    order = ProgressOrder(limit=3)
    assert order.arrived(1, "b") == [] and order.arrived(3, "d") == [] and order.held == 2
    assert not order.complete(1)
    assert order.arrived(0, "a") == ["a", "b"] and order.held == 1
    assert order.arrived(0, "a") == [] and order.arrived(3, "d") == [], "a repeat is dropped"
    assert order.arrived(2, "c") == ["c", "d"] and order.held == 0 and order.complete(4)
    assert order.arrived(4, "e") == ["e"] and not order.complete(6)


def test_a_call_holds_only_so_many_results_ahead_of_a_missing_one():
    order = ProgressOrder(limit=2)
    order.arrived(1, "b")
    order.arrived(2, "c")
    with pytest.raises(OutOfOrder):
        order.arrived(3, "d")
    assert order.arrived(0, "a") == ["a", "b", "c"], "what was held is still handed on"


async def _progressive(here: Member, there: Member) -> tuple[list[Any], defer.Deferred[Any], int]:
    """A progressive call from `here` that `there` holds open: (results handed on, answer, request id)."""
    await there.serve(Routes(frozenset({("tenant.stream", "exact")})), tenant_stream=lambda **_: defer.Deferred())
    await until(lambda: here.relay.serves("tenant.stream"))
    got: list[Any] = []
    answer = here.relay.call("tenant.stream", [], {}, None, None, lambda args, kwargs: got.append((args, kwargs)))
    return got, answer, max(here.relay._pending)


@pytest_twisted.ensureDeferred
async def test_progressive_results_overtaken_on_the_way_are_handed_on_in_order_and_the_answer_last(pair):
    here, there = pair
    got, answer, request = await _progressive(here, there)
    relay = here.relay
    relay.on_operation(PROGRESS, [request, 2, [], {"delta": "c"}], there.cluster.node_id)
    relay.on_operation(RESULT, [request, True, [], {"body": "abcd"}, 4], there.cluster.node_id)
    relay.on_operation(PROGRESS, [request, 0, [], {"delta": "a"}], there.cluster.node_id)
    relay.on_operation(PROGRESS, [request, 3, [], {"delta": "d"}], there.cluster.node_id)
    assert [kw["delta"] for _a, kw in got] == ["a"] and not answer.called, "b is still on its way"
    relay.on_operation(PROGRESS, [request, 1, ["x"], {"delta": "b"}], there.cluster.node_id)
    assert got == [([], {"delta": "a"}), (["x"], {"delta": "b"}), ([], {"delta": "c"}), ([], {"delta": "d"})]
    assert await answer == ([], {"body": "abcd"})
    relay.on_operation(PROGRESS, [request, 4, [], {"delta": "late"}], there.cluster.node_id)
    assert len(got) == 4 and relay._early == 0


@pytest_twisted.ensureDeferred
async def test_an_error_waits_for_the_progressive_results_sent_before_it(pair):
    here, there = pair
    got, answer, request = await _progressive(here, there)
    here.relay.on_operation(RESULT, [request, False, "tenant.error.broken", ["down"], {}, 1], there.cluster.node_id)
    assert not answer.called
    here.relay.on_operation(PROGRESS, [request, 0, [], {"delta": "a"}], there.cluster.node_id)
    with pytest.raises(ApplicationError) as raised:
        await answer
    assert raised.value.error == "tenant.error.broken" and got == [([], {"delta": "a"})]


@pytest_twisted.ensureDeferred
async def test_a_progressive_call_streams_through_the_other_node_in_order_then_answers(pair):
    here, there = pair

    async def stream(words: int, progress: Any = None) -> str:
        for n in range(words):
            progress(n, delta=f"w{n}")
        return "done"

    await there.serve(Routes(frozenset({("tenant.stream", "exact")})), tenant_stream=stream)
    await until(lambda: here.relay.serves("tenant.stream"))
    got: list[Any] = []
    result = await here.relay.call("tenant.stream", [], {"words": 200}, None, None,
                                   lambda args, kwargs: got.append((args, kwargs)))  # fmt: skip
    assert result == (["done"], {})
    assert got == [([n], {"delta": f"w{n}"}) for n in range(200)]
    plain = await here.relay.call("tenant.stream", [], {"words": 0}, None, None)  # no progress asked for
    assert plain == (["done"], {})


@pytest_twisted.ensureDeferred
async def test_a_canceled_call_is_canceled_on_the_serving_node_too(pair):
    here, there = pair
    held: list[defer.Deferred[Any]] = []
    interrupted: list[int] = []

    def hold(**_: Any) -> defer.Deferred[Any]:
        held.append(defer.Deferred(lambda _d: interrupted.append(len(held))))
        return held[-1]

    await there.serve(Routes(frozenset({("tenant.slow", "exact")})), tenant_slow=hold)
    await until(lambda: here.relay.serves("tenant.slow"))
    call = here.relay.call("tenant.slow", [], {}, None, None, lambda *_: None)
    call.cancel()  # at once: the cancel must not overtake the call
    await until(lambda: interrupted == [1])
    with pytest.raises(defer.CancelledError):
        await call
    assert there.relay._serving == {}
    expired = here.relay.call("tenant.slow", [], {}, None, 1000)  # given up on: canceled there too
    here.clock.advance(1.1)
    with pytest.raises(ApplicationError):
        await expired
    await until(lambda: interrupted == [1, 2])


@pytest_twisted.ensureDeferred
async def test_progress_keeps_a_call_without_a_timeout_alive_and_silence_ends_it(pair):
    here, there = pair
    got, answer, request = await _progressive(here, there)
    for n in range(3):
        here.clock.advance(relay_module.CALL_TIMEOUT_S - 1)
        here.relay.on_operation(PROGRESS, [request, n, [], {"delta": n}], there.cluster.node_id)
    assert not answer.called and len(got) == 3
    here.clock.advance(relay_module.CALL_TIMEOUT_S + 0.1)
    with pytest.raises(ApplicationError) as silent:
        await answer
    assert silent.value.error == "mics.error.unavailable"


@pytest_twisted.ensureDeferred
async def test_results_held_past_the_bounds_fail_the_call_unavailable(pair, monkeypatch):
    here, there = pair
    monkeypatch.setattr(relay_module, "MAX_EARLY_PER_CALL", 2)
    got, answer, request = await _progressive(here, there)
    for n in (1, 2, 3):
        here.relay.on_operation(PROGRESS, [request, n, [], {}], there.cluster.node_id)
    with pytest.raises(ApplicationError) as lost:
        await answer
    assert lost.value.error == "mics.error.unavailable" and got == [] and here.relay._early == 0
    monkeypatch.setattr(relay_module, "MAX_EARLY", 1)  # every call of the tenant together
    _got, first, first_id = await _progressive(here, there)
    _got, second, second_id = await _progressive(here, there)
    here.relay.on_operation(PROGRESS, [first_id, 1, [], {}], there.cluster.node_id)
    here.relay.on_operation(PROGRESS, [second_id, 1, [], {}], there.cluster.node_id)
    with pytest.raises(ApplicationError):
        await second
    assert not first.called
    first.cancel()
    first.addErrback(lambda _f: None)


@pytest_twisted.ensureDeferred
async def test_a_progressive_result_that_cannot_travel_ends_the_call_after_the_ones_before(pair):
    here, there = pair

    def stream(progress: Any) -> defer.Deferred[Any]:
        progress(delta="fine")
        progress(delta=2**70)  # msgpack cannot carry it
        return defer.Deferred()

    await there.serve(Routes(frozenset({("tenant.stream", "exact")})), tenant_stream=stream)
    await until(lambda: here.relay.serves("tenant.stream"))
    got: list[Any] = []
    call = here.relay.call("tenant.stream", [], {}, None, None, lambda args, kwargs: got.append(kwargs))
    with pytest.raises(ApplicationError) as refused:
        await call
    assert refused.value.error == "wamp.error.invalid_argument" and got == [{"delta": "fine"}]
