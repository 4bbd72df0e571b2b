"""The cluster's view of a realm (mics.router.RealmTap) on a real Crossbar router run in process:
calls without a local callee are authorized by the router and handed to the relay, answers and
errors go back to the caller, local callees always win; calls for another node reach the local
callee as that node's caller; backend publishes are handed over with their options; routes say
what the backends here serve."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, ComponentConfig, PublishOptions, RegisterOptions
from crossbar.router.role import RouterRoleStaticAuth
from test_router import REALM, _router
from twisted.internet import defer, reactor, task

from mics.router import Caller, RealmPort

EVERYTHING = {"uri": "", "match": "prefix", "allow": {"call": True, "register": True, "publish": True,
              "subscribe": True}, "disclose": {"caller": True}}  # fmt: skip
HOOKS_ONLY = {"uri": "mics.hook.", "match": "prefix", "allow": {"call": True, "register": False, "publish": False,
              "subscribe": False}, "disclose": {"caller": False}}  # fmt: skip


class Relay:
    """Another node that serves `procedures`: each call gets a Deferred the test answers."""

    def __init__(self, procedures: tuple[str, ...] = ("tenant.remote",)) -> None:
        self.procedures = procedures
        self.calls: list[tuple[str, list[Any], dict[str, Any], Caller | None, int | None]] = []
        self.answers: list[defer.Deferred[Any]] = []
        self.publishes: list[tuple[str, list[Any], dict[str, Any], dict[str, Any]]] = []
        self.sessions: dict[int, dict[str, Any]] = {}
        self.progress: list[Any] = []  # each call's on_progress (None: the caller did not ask for it)

    def serves(self, procedure: str) -> bool:
        return procedure in self.procedures

    def call(self, procedure: str, args: list[Any], kwargs: dict[str, Any], caller: Caller | None,
             timeout_ms: int | None, on_progress: Any = None) -> defer.Deferred[Any]:  # fmt: skip
        self.calls.append((procedure, args, kwargs, caller, timeout_ms))
        self.progress.append(on_progress)
        answer: defer.Deferred[Any] = defer.Deferred()
        self.answers.append(answer)
        return answer

    def published(self, topic: str, args: list[Any], kwargs: dict[str, Any], options: dict[str, Any]) -> None:
        self.publishes.append((topic, args, kwargs, options))

    def session_details(self, session_id: int) -> dict[str, Any] | None:
        return self.sessions.get(session_id)


async def _setup(relay: Relay) -> tuple[Any, Any, RealmPort]:
    router, sessions = await _router()
    router.add_role(RouterRoleStaticAuth(router, "backend", default_permissions=EVERYTHING))
    router.add_role(RouterRoleStaticAuth(router, "hooker", permissions=[HOOKS_ONLY]))
    port = RealmPort(REALM)
    port.install_relay(relay)
    port.bind_router(router)
    return router, sessions, port


async def _session(sessions: Any, router: Any, authid: str, authrole: str) -> ApplicationSession:
    session = ApplicationSession(ComponentConfig(REALM))
    joined: defer.Deferred[None] = defer.Deferred()
    session.on("join", lambda *_: joined.callback(None))
    sessions.add(session, router, authid=authid, authrole=authrole)
    await joined
    return session


async def turn() -> None:
    await task.deferLater(reactor, 0.01, lambda: None)


async def _bob_calls_remote(relay: Relay, *args: Any, **kwargs: Any) -> tuple[Any, defer.Deferred[Any]]:
    """Bob (a user) calls `tenant.remote`, which only the relay's other node serves."""
    router, sessions, _port = await _setup(relay)
    bob = await _session(sessions, router, "bob", "user")
    call = bob.call("tenant.remote", *args, **kwargs)
    await turn()
    return bob, call


@pytest_twisted.ensureDeferred
async def test_a_call_no_local_callee_serves_goes_to_the_relay_and_its_answer_to_the_caller():
    relay = Relay()
    bob, call = await _bob_calls_remote(relay, 1, "two", root="eng", options=CallOptions(timeout=1500))
    [(procedure, args, kwargs, caller, timeout_ms)] = relay.calls
    assert (procedure, args, kwargs, timeout_ms) == ("tenant.remote", [1, "two"], {"root": "eng"}, 1500)
    assert caller is not None and (caller.session, caller.authid, caller.authrole) == (bob._session_id, "bob", "user")
    assert caller.details["authid"] == "bob" and "transport" not in caller.details
    relay.answers[0].callback((["a", "b"], {"k": 1}))
    got = await call
    assert (list(got.results), got.kwresults) == (["a", "b"], {"k": 1})


@pytest_twisted.ensureDeferred
async def test_an_error_from_the_serving_node_reaches_the_caller_as_raised():
    relay = Relay()
    _bob, call = await _bob_calls_remote(relay)
    relay.answers[0].errback(ApplicationError("tenant.error.nope", "no", code=7))
    with pytest.raises(ApplicationError) as raised:
        await call
    assert (raised.value.error, raised.value.args, raised.value.kwargs) == ("tenant.error.nope", ("no",), {"code": 7})


@pytest_twisted.ensureDeferred
async def test_the_router_refuses_a_call_its_role_may_not_make_before_anything_is_forwarded():
    relay = Relay(("tenant.remote", "mics.hook.auth"))
    router, sessions, _port = await _setup(relay)
    hooker = await _session(sessions, router, "h", "hooker")  # may call mics.hook.* only
    with pytest.raises(ApplicationError) as denied:
        await hooker.call("tenant.remote")
    assert denied.value.error == "wamp.error.not_authorized" and relay.calls == []
    hooker.call("mics.hook.auth")
    await turn()
    assert [c[0] for c in relay.calls] == ["mics.hook.auth"]
    assert relay.calls[0][3] is None, "an undisclosed call names no caller to the other node"


@pytest_twisted.ensureDeferred
async def test_a_local_callee_always_wins_and_unknown_procedures_stay_unknown():
    relay = Relay(("tenant.both",))
    router, sessions, _port = await _setup(relay)
    backend = await _session(sessions, router, "backend", "backend")
    await backend.register(lambda: "local", "tenant.both")
    bob = await _session(sessions, router, "bob", "user")
    assert await bob.call("tenant.both") == "local" and relay.calls == []
    with pytest.raises(ApplicationError) as missing:
        await bob.call("tenant.nowhere")
    assert missing.value.error == "wamp.error.no_such_procedure"


@pytest_twisted.ensureDeferred
async def test_a_canceled_forwarded_call_is_canceled_at_the_relay_too():
    relay = Relay()
    _bob, call = await _bob_calls_remote(relay)
    call.cancel()
    await turn()
    assert relay.answers[0].called, "the relay's call was canceled"
    relay.answers[0].addErrback(lambda _f: None)
    with pytest.raises(ApplicationError) as canceled:  # as a dealer answers a CANCEL
        await call
    assert canceled.value.error == "wamp.error.canceled"


@pytest_twisted.ensureDeferred
async def test_session_get_answers_for_a_remote_caller_the_relay_knows_and_only_that():
    relay = Relay()
    relay.sessions[4242] = {"session": 4242, "authid": "alice", "authextra": {"device_id": "phone"}}
    router, sessions, _port = await _setup(relay)
    backend = await _session(sessions, router, "backend", "backend")
    assert await backend.call("wamp.session.get", 4242) == relay.sessions[4242]
    with pytest.raises(ApplicationError):  # not here, not known: the dealer answers as always
        await backend.call("wamp.session.get", 4343)


@pytest_twisted.ensureDeferred
async def test_a_call_for_another_node_reaches_the_local_callee_as_that_nodes_caller_and_is_never_handed_on():
    relay = Relay(("tenant.here", "tenant.gone"))
    router, sessions, port = await _setup(relay)
    service = await _session(sessions, router, "mics", "mics")
    port.bind_session(service)
    backend = await _session(sessions, router, "backend", "backend")
    seen: list[tuple[Any, ...]] = []

    def here(*args: Any, details: Any, **kwargs: Any) -> Any:
        seen.append((details.caller, details.caller_authid, details.caller_authrole, args, kwargs))
        return {"ok": True}

    await backend.register(here, "tenant.here", options=RegisterOptions(details_arg="details"))
    alice = Caller(4242, "alice", "user", {})
    assert await port.call_here("tenant.here", [1], {"x": 2}, alice, None) == ([{"ok": True}], {})
    assert seen == [(4242, "alice", "user", (1,), {"x": 2})]
    with pytest.raises(ApplicationError) as missing:  # not registered here: answered, not sent on
        await port.call_here("tenant.gone", [], {}, alice, None)
    assert missing.value.error == "wamp.error.no_such_procedure" and relay.calls == []
    with pytest.raises(ApplicationError) as refused:
        await port.call_here("tenant.here", [], {"options": 1}, alice, None)
    assert refused.value.error == "wamp.error.invalid_argument"


@pytest_twisted.ensureDeferred
async def test_backend_publishes_are_handed_over_with_their_options_and_procedures_say_what_backends_serve():
    relay = Relay()
    router, sessions, port = await _setup(relay)
    assert port.procedures() == frozenset()
    backend = await _session(sessions, router, "backend", "backend")
    bob = await _session(sessions, router, "bob", "user")
    await backend.publish("tenant.news", "x", headline="v1",
                          options=PublishOptions(acknowledge=True, eligible_authid=["carol"]))  # fmt: skip
    await bob.publish("tenant.news", headline="users never publish", options=PublishOptions(acknowledge=True))
    await backend.publish("mics.inbox.bob", options=PublishOptions(acknowledge=True))
    await turn()
    assert relay.publishes == [("tenant.news", ["x"], {"headline": "v1"}, {"eligible_authid": ["carol"]})]
    await backend.register(lambda: None, "tenant.dir.", options=RegisterOptions(match="prefix"))
    await backend.register(lambda: None, "mics.hook.auth")
    await backend.register(lambda: None, "mics.other")  # not something other nodes call
    await bob.register(lambda: None, "tenant.users.own")  # not a backend: not served to other nodes
    assert port.procedures() == {("tenant.dir.", "prefix"), ("mics.hook.auth", "exact")}


@pytest_twisted.ensureDeferred
async def test_one_session_cannot_hold_every_forwarded_call(monkeypatch):
    from mics import router as router_module

    monkeypatch.setattr(router_module, "FORWARDED_PER_SESSION", 2)
    relay = Relay()
    router, sessions, _port = await _setup(relay)
    bob = await _session(sessions, router, "bob", "user")
    alice = await _session(sessions, router, "alice", "user")
    first, second = bob.call("tenant.remote"), bob.call("tenant.remote")
    with pytest.raises(ApplicationError) as busy:
        await bob.call("tenant.remote")
    assert busy.value.error == "mics.error.unavailable" and len(relay.calls) == 2
    alice.call("tenant.remote")  # another session is not held back
    await turn()
    assert len(relay.calls) == 3
    relay.answers[0].callback(([1], {}))
    assert await first == 1
    bob.call("tenant.remote")  # room again
    await turn()
    assert len(relay.calls) == 4
    for answer in relay.answers[1:]:
        answer.callback(([], {}))
    await second


@pytest_twisted.ensureDeferred
async def test_progressive_results_from_the_serving_node_reach_a_caller_that_asked_for_them():
    relay = Relay(("tenant.remote", "mics.agent.helper"))
    got: list[Any] = []
    bob, call = await _bob_calls_remote(relay, options=CallOptions(on_progress=lambda *a, **kw: got.append((a, kw))))
    assert relay.progress[0] is not None
    relay.progress[0](["x"], {"delta": "a"})
    relay.progress[0]([], {"delta": "b"})
    await turn()
    assert got == [(("x",), {"delta": "a"}), ((), {"delta": "b"})] and not call.called
    relay.answers[0].callback(([], {"body": "ab"}))
    assert (await call).kwresults == {"body": "ab"}
    plain = bob.call("tenant.remote")  # a caller that did not ask gets no progressive results
    await turn()
    assert relay.progress[1] is None
    relay.answers[1].callback((["done"], {}))
    assert await plain == "done"


@pytest_twisted.ensureDeferred
async def test_our_components_agent_calls_are_forwarded_and_not_held_to_one_sessions_share(monkeypatch):
    from mics import router as router_module

    monkeypatch.setattr(router_module, "FORWARDED_PER_SESSION", 1)
    relay = Relay(("mics.agent.helper",))
    router, sessions, _port = await _setup(relay)
    router.add_role(RouterRoleStaticAuth(router, "mics", default_permissions=EVERYTHING))
    node = await _session(sessions, router, "mics", "mics")
    calls = [node.call("mics.agent.helper", message={}, options=CallOptions(on_progress=lambda *a, **kw: None))
             for _ in range(3)]  # fmt: skip
    await turn()
    assert [c[0] for c in relay.calls] == ["mics.agent.helper"] * 3
    for answer in relay.answers:
        answer.callback(([], {"body": "hi"}))
    for call in calls:
        assert (await call).kwresults == {"body": "hi"}
