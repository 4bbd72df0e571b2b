"""The whole contract on every cluster node: a backend connected to node A serves users on node B.

Two real nodes on one redis-server; the tenant's backend session joins node A only. Every test
runs for both hook transports: with `wamp` hooks the backend also answers node B's auth,
check-message and group-members hooks; with `http` hooks one hook server answers both nodes and
the backend on A serves `tenant.*` procedures, topics and events.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallDetails, CallOptions, PublishOptions, RegisterOptions

from cluster_tenants import ClusterTenant, eventually, online
from harness import Node
from wamp_clients import TestSession, sleep


@pytest_twisted.async_yield_fixture(params=["wamp", "http"])
async def tenant(request: Any, cluster_nodes: tuple[Node, Node]) -> AsyncIterator[ClusterTenant]:
    t = await ClusterTenant.create(cluster_nodes[0], request.param, prefix="cw", event_sinks=["wamp"])
    await t.hooks_reach(cluster_nodes[1])
    yield t
    await t.close()


async def registered(session: TestSession, procedure: str, fn: Any, match: str | None = None) -> None:
    await session.register(fn, procedure, options=RegisterOptions(details_arg="details", match=match))


async def served(session: TestSession, procedure: str, **kwargs: Any) -> Any:
    """Call until another node's registration is known here (announcements travel through Redis)."""

    async def probe() -> Any:
        try:
            return {"result": await session.call(procedure, **kwargs)}
        except ApplicationError as e:
            if e.error != "wamp.error.no_such_procedure":
                raise
            return None

    got = await eventually(probe)
    assert got is not None, f"{procedure} never became callable"
    return got["result"]


@pytest_twisted.ensureDeferred
async def test_a_user_on_the_other_node_joins_sends_and_is_checked_through_the_backends_hooks(cluster_nodes, tenant):
    a, b = cluster_nodes
    bob = await tenant.user(b, "bob")  # the auth hook answers node B too
    assert bob.welcome.authextra["node_id"] == b.node_id
    alice = await tenant.user(a, "alice")
    assert await online(bob, "alice")
    ack = await bob.call("mics.message.send", to_user_id="alice", body="hi from B")
    assert (await alice.next_event("mics.inbox.alice"))["msg_id"] == ack["msg_id"]
    with pytest.raises(ApplicationError) as refused:  # the check-message hook is asked from node B
        await bob.call("mics.message.send", to_user_id="alice", body="forbidden words")
    assert refused.value.error == "mics.error.rejected"
    assert refused.value.kwargs["reason"] == "contains a forbidden word"
    tenant.logic.groups["g1"] = ["alice", "bob"]
    await alice.listen("mics.group.g1")
    group_ack = await bob.call("mics.group.send", group_id="g1", body="to the group")  # group-members hook
    assert group_ack["recipients"] == 2
    assert (await alice.next_event("mics.group.g1"))["msg_id"] == group_ack["msg_id"]
    assert tenant.logic.calls["group_members"] == 1


@pytest_twisted.ensureDeferred
async def test_a_users_call_on_the_other_node_reaches_the_backends_procedure_with_the_caller_disclosed(
    cluster_nodes, tenant
):
    a, b = cluster_nodes
    backend = await tenant.backend(a, "backend-directory")
    seen: list[dict[str, Any]] = []

    async def tree(*args: Any, details: CallDetails, **kwargs: Any) -> dict[str, Any]:
        info = await backend.call("wamp.session.get", details.caller)
        seen.append({"caller": details.caller, "authid": details.caller_authid, "role": details.caller_authrole,
                     "device": info["authextra"]["device_id"], "node": info["authextra"]["node_id"]})  # fmt: skip
        return {"root": kwargs.get("root"), "args": list(args)}

    await registered(backend, "tenant.org.tree", tree)
    bob = await tenant.user(b, "bob", "laptop")
    got = await served(bob, "tenant.org.tree", root="eng")
    assert got == {"root": "eng", "args": []}
    assert seen == [{"caller": bob.session_id, "authid": "bob", "role": "user", "device": "laptop",
                     "node": b.node_id}]  # fmt: skip
    # positional arguments and several results travel as WAMP has them
    assert await bob.call("tenant.org.tree", 1, "two") == {"root": None, "args": [1, "two"]}


@pytest_twisted.ensureDeferred
async def test_errors_of_a_remote_procedure_reach_the_caller_as_raised(cluster_nodes, tenant):
    a, b = cluster_nodes
    backend = await tenant.backend(a)

    def refuse(*args: Any, details: CallDetails, **kwargs: Any) -> None:
        raise ApplicationError("tenant.error.no_quota", "out of quota", plan="free", code=7)

    await registered(backend, "tenant.file.upload_url", refuse)
    bob = await tenant.user(b, "bob")

    async def refused() -> ApplicationError | None:
        try:
            await bob.call("tenant.file.upload_url", name="x")
        except ApplicationError as e:
            return e if e.error != "wamp.error.no_such_procedure" else None
        return None

    error = await eventually(refused)
    assert error is not None and error.error == "tenant.error.no_quota"
    assert error.args == ("out of quota",) and error.kwargs == {"plan": "free", "code": 7}
    with pytest.raises(ApplicationError) as missing:  # nobody registered it anywhere
        await bob.call("tenant.nothing.here")
    assert missing.value.error == "wamp.error.no_such_procedure"


@pytest_twisted.ensureDeferred
async def test_prefix_and_wildcard_registrations_on_one_node_serve_the_other(cluster_nodes, tenant):
    a, b = cluster_nodes
    backend = await tenant.backend(a)
    await registered(backend, "tenant.files.", lambda *a, details, **kw: {"prefix": details.procedure}, "prefix")
    await registered(backend, "tenant..list", lambda *a, details, **kw: {"wildcard": details.procedure}, "wildcard")
    bob = await tenant.user(b, "bob")
    assert await served(bob, "tenant.files.photos.get") == {"prefix": "tenant.files.photos.get"}
    assert await served(bob, "tenant.groups.list") == {"wildcard": "tenant.groups.list"}


@pytest_twisted.ensureDeferred
async def test_the_users_node_authorizes_calls_it_forwards(cluster_nodes, tenant):
    """Users may call tenant.* and their own procedures only: a hook registered on node A is not
    callable by a user on node B, exactly as on node A."""
    a, b = cluster_nodes
    backend = await tenant.backend(a)
    await registered(backend, "tenant.ping", lambda *a, details, **kw: "pong")
    bob = await tenant.user(b, "bob")
    assert await served(bob, "tenant.ping") == "pong"
    if tenant.transport == "wamp":  # the hook backend on A registered mics.hook.*
        for node in (a, b):
            user = await tenant.user(node, f"eve{node.node_id[-1]}")
            with pytest.raises(ApplicationError) as denied:
                await user.call("mics.hook.auth", token="tok-zed", device_id="d1", tenant_id=tenant.tenant_id)
            assert denied.value.error == "wamp.error.not_authorized"


@pytest_twisted.ensureDeferred
async def test_a_backends_publish_reaches_subscribers_on_every_node_with_its_options(cluster_nodes, tenant):
    a, b = cluster_nodes
    backend = await tenant.backend(a)
    bob, carol = await tenant.user(b, "bob"), await tenant.user(b, "carol")
    alice = await tenant.user(a, "alice")
    for session in (bob, carol, alice):
        await session.listen("tenant.news")
    await carol.listen("tenant.", match="prefix")

    async def published() -> bool:
        await backend.publish("tenant.news", headline="probe", options=PublishOptions(acknowledge=True))
        try:
            await bob.next_event("tenant.news", timeout=0.2)
        except Exception:
            return False
        return True

    assert await eventually(published)  # B announced its tenant.* subscribers
    await sleep(0.3)
    for session in (bob, carol, alice):
        session.events.clear()
    await backend.publish("tenant.news", "breaking", headline="v2", options=PublishOptions(acknowledge=True))
    assert (await bob.next_event("tenant.news"))["headline"] == "v2"
    assert (await alice.next_event("tenant.news"))["headline"] == "v2"
    assert (await carol.next_event("tenant."))["headline"] == "v2"
    assert (await carol.next_event("tenant.news"))["headline"] == "v2"
    only_carol = PublishOptions(acknowledge=True, eligible_authid=["carol"])
    await backend.publish("tenant.news", headline="for carol", options=only_carol)
    assert (await carol.next_event("tenant.news"))["headline"] == "for carol"
    assert await bob.no_event("tenant.news") and await alice.no_event("tenant.news")


@pytest_twisted.ensureDeferred
async def test_the_event_sink_brings_every_nodes_events_to_a_backend_on_one_node(cluster_nodes, tenant):
    a, b = cluster_nodes
    backend = await tenant.backend(a)
    await backend.listen("mics.event.connect_online")
    await backend.listen("mics.event.single_chat_msg")
    await sleep(0.3)  # the announcement of node A's event subscriber reaches node B
    bob = await tenant.user(b, "bob")
    online_event = await backend.next_event("mics.event.connect_online")
    assert (online_event["user_id"], online_event["node_id"]) == ("bob", b.node_id)
    ack = await bob.call("mics.message.send", to_user_id="zed", body="offline zed")
    sent = await backend.next_event("mics.event.single_chat_msg")
    assert sent["msg_id"] == ack["msg_id"] and sent["node_id"] == b.node_id
    assert sent["event_data"]["body"] == "offline zed"
    assert await backend.no_event("mics.event.single_chat_msg"), "each event arrives once"


@pytest_twisted.ensureDeferred
async def test_a_backend_on_one_node_sends_lists_kicks_and_announces_to_users_on_the_other(cluster_nodes, tenant):
    a, b = cluster_nodes
    backend = await tenant.backend(a)
    bob = await tenant.user(b, "bob")
    await bob.listen("mics.group.g9")
    assert await online(backend, "bob")
    ack = await backend.call("mics.message.send", to_user_id="bob", body="system notice", from_user_id="shop")
    got = await bob.next_event("mics.inbox.bob")
    assert (got["msg_id"], got["type"], got["from_user_id"]) == (ack["msg_id"], "system", "shop")
    tenant.logic.groups["g9"] = ["bob"]
    await backend.call("mics.group.members_changed", group_id="g9", added=["bob"], removed=[])
    assert (await bob.next_event("mics.group.g9"))["body"] == {"added": ["bob"], "removed": []}
    listed = await backend.call("mics.session.list", user_id="bob")
    assert [(s["node_id"], s["session_id"]) for s in listed["sessions"]] == [(b.node_id, bob.session_id)]
    assert await backend.call("mics.session.kick", user_id="bob") == {"kicked": 1}
    assert (await bob.left).reason == "mics.close.kicked"


@pytest_twisted.ensureDeferred
async def test_calls_served_by_the_other_node_all_come_back_and_their_latency_is_printed(cluster_nodes, tenant):
    a, b = cluster_nodes
    backend = await tenant.backend(a)
    await registered(backend, "tenant.echo", lambda *args, details, **kw: kw.get("n"))
    here, there = await tenant.user(a, "alice"), await tenant.user(b, "bob")
    assert await served(there, "tenant.echo", n=-1) == -1
    timings: dict[str, list[float]] = {}
    for name, session in (("same node", here), ("other node", there)):
        lat = timings[name] = []
        for n in range(200):
            began = time.perf_counter()
            assert await session.call("tenant.echo", n=n) == n
            lat.append((time.perf_counter() - began) * 1000)
        lat.sort()
    summary = {k: f"p50 {v[100]:.2f} ms, p99 {v[197]:.2f} ms" for k, v in timings.items()}
    print(f"\ntenant.* call from a user ({tenant.transport} hooks): {summary}")


@pytest_twisted.ensureDeferred
async def test_a_users_progressive_call_on_the_other_node_gets_every_result_in_order_then_the_answer(
    cluster_nodes, tenant
):
    a, b = cluster_nodes
    backend = await tenant.backend(a)

    async def count(to: int, details: CallDetails) -> int:
        for n in range(to):
            if details.progress:
                details.progress(n, square=n * n)
        return to

    await registered(backend, "tenant.count", count)
    bob = await tenant.user(b, "bob")
    assert await served(bob, "tenant.count", to=0) == 0
    got: list[Any] = []
    progress = CallOptions(on_progress=lambda *a, **kw: got.append((a, kw)))
    answer = await bob.call("tenant.count", to=100, options=progress)
    assert answer == 100 and got == [((n,), {"square": n * n}) for n in range(100)]
    assert await bob.call("tenant.count", to=3) == 3  # without progressive results: the answer alone
