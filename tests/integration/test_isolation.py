"""The isolation catalogue: every way we could think of for one user, backend or tenant to reach what
belongs to another (protocol.md sections 1-3, 5), tried against a real node, table-driven.

Each attempt must be refused (or, where the router accepts the request, deliver nothing); at the end
the victim's inbox has received exactly the messages sent to it, and no attacker's subscription has
received anything. The number of attempts is printed in the run log.
"""

from __future__ import annotations

import itertools
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import PublishOptions, SubscribeOptions
from checks import RUN_COUNTS, control_pair, in_thread
from raw_ws import RawWebSocket

from harness import ADMIN_SECRET
from mics.hooks.signing import SignatureError, SignatureVerifier, sign_headers
from wamp_clients import JoinRefused, TestSession, admin, backend, sleep, user

COUNTS = RUN_COUNTS["isolation"]
NOT_AUTHORIZED = "wamp.error.not_authorized"
_addresses = itertools.count(100)  # a fresh loopback address for each failing wampcra login (throttling)


@dataclass
class World:
    """Two tenants: the victim bob and the attacker mallory in A, eve and another bob in B."""

    a: Any
    b: Any
    alice: TestSession
    bob: TestSession
    mallory: TestSession
    eve: TestSession
    bob_in_b: TestSession
    backend_b: TestSession
    sent_to_bob: list[str] = field(default_factory=list)
    listeners: list[tuple[TestSession, str]] = field(default_factory=list)  # what no attacker may receive on


async def refused(action: Awaitable[Any], *uris: str) -> str:
    """The error URI the router answered with; fails if the action succeeded or failed otherwise."""
    try:
        result = await action
    except ApplicationError as e:
        assert not uris or e.error in uris, f"refused with {e.error}, expected one of {uris}"
        return str(e.error)
    raise AssertionError(f"not refused: {result!r}")


async def join_refused(connecting: Awaitable[Any]) -> str:
    try:
        session = await connecting
    except JoinRefused as e:
        return e.reason
    await session.close()
    raise AssertionError("joined")


def _raw_wampcra(port: int, realm: str, authid: str, secret: str) -> list[Any]:
    """A wampcra login from its own loopback address, so failures never throttle 127.0.0.1."""
    ws = RawWebSocket(port, bind=f"127.0.0.{next(_addresses)}")
    try:
        assert ws.handshake() == 101
        return ws.join(realm, secret=secret, authid=authid)
    finally:
        ws.close()


async def wampcra_refused(w: World, realm: str, authid: str, secret: str) -> str:
    reply = await in_thread(_raw_wampcra, w.a.node.port, realm, authid, secret)
    assert reply[0] == 3, f"joined {realm} as {authid}: {reply}"
    return str(reply[2])


async def subscribe_refused(session: TestSession, topic: str, match: str | None = None) -> str:
    options = SubscribeOptions(match=match) if match else None
    return await refused(session.subscribe(lambda *a, **kw: None, topic, options=options))


async def listened_but_got_nothing(w: World, session: TestSession, topic: str, match: str | None = None) -> str:
    """A subscription the router allows (group topics): the check is that nothing of others arrives."""
    await session.listen(topic, match)
    w.listeners.append((session, topic))
    return "subscribed; checked at the end"


def publish(session: TestSession, topic: str, **options: Any) -> Awaitable[Any]:
    return session.publish(topic, text="spoof", options=PublishOptions(acknowledge=True, **options))


async def send_as(w: World, **kwargs: Any) -> str:
    """mallory's send with extra identity kwargs: refused, or sent as mallory."""
    try:
        ack = await w.mallory.call("mics.message.send", to_user_id="alice", body="hi", **kwargs)
    except ApplicationError as e:
        return str(e.error)
    return f"sent as mallory ({ack['msg_id']})"


async def sync_leaks_nothing(w: World, **kwargs: Any) -> str:
    try:
        result = await w.mallory.call("mics.inbox.sync", since_seq=0, **kwargs)
    except ApplicationError as e:
        return str(e.error)
    assert not set(w.sent_to_bob) & {m["msg_id"] for m in result["messages"]}, "bob's messages in mallory's sync"
    return "own inbox only"


def replayed_hook_signature() -> str:
    verifier = SignatureVerifier("the-tenant-secret")
    body = b'{"token":"tok-bob","device_id":"d1","tenant_id":"t"}'
    headers = sign_headers("t", "the-tenant-secret", body)
    verifier.verify(headers, body)
    with pytest.raises(SignatureError):
        verifier.verify(headers, body)
    return "replay refused"


def forged_hook_signature(secret: str, now_ms: int | None = None, tamper: bool = False) -> str:
    body = b'{"token":"tok-bob","device_id":"d1","tenant_id":"t"}'
    headers = sign_headers("t", secret, body, now_ms=now_ms) if now_ms else sign_headers("t", secret, body)
    with pytest.raises(SignatureError):
        SignatureVerifier("the-tenant-secret").verify(headers, body.replace(b"bob", b"eve") if tamper else body)
    return "refused"


Attempt = Callable[[World], Awaitable[str]]
USER_CALLS = ["mics.session.list", "mics.session.kick", "mics.group.members_changed", "wamp.session.list",
              "wamp.session.count", "wamp.session.kill_by_authid", "wamp.subscription.list",
              "wamp.registration.list", "wamp.subscription.list_subscribers", "mics.authorize", "mics.hook.auth",
              "mics.hook.check_message", "mics.admin.tenant.list", "mics.admin.tenant.get",
              "mics.admin.session.kick", "mics.admin.dlq.list"]  # fmt: skip

CATALOGUE: dict[str, Attempt] = {
    # subscriptions to another user's inbox, exact and by pattern
    "subscribe to bob's inbox": lambda w: subscribe_refused(w.mallory, "mics.inbox.bob"),
    "subscribe to bob's inbox by prefix": lambda w: subscribe_refused(w.mallory, "mics.inbox.bob", "prefix"),
    "subscribe to every inbox by prefix": lambda w: subscribe_refused(w.mallory, "mics.inbox.", "prefix"),
    "subscribe to inboxes starting with b": lambda w: subscribe_refused(w.mallory, "mics.inbox.b", "prefix"),
    "subscribe to one's own inbox as a prefix (mallory2...)":
        lambda w: subscribe_refused(w.mallory, "mics.inbox.mallory", "prefix"),
    "subscribe to inboxes by wildcard": lambda w: subscribe_refused(w.mallory, "mics.inbox.", "wildcard"),
    "subscribe to mics..bob by wildcard": lambda w: subscribe_refused(w.mallory, "mics..bob", "wildcard"),
    "subscribe to everything by the empty prefix": lambda w: subscribe_refused(w.mallory, "", "prefix"),
    "subscribe to mics. by prefix": lambda w: subscribe_refused(w.mallory, "mics.", "prefix"),
    "subscribe to BOB's inbox (another id)": lambda w: subscribe_refused(w.mallory, "mics.inbox.BOB"),
    "subscribe to the backends' events by prefix": lambda w: subscribe_refused(w.mallory, "mics.event.", "prefix"),
    "subscribe to chat events": lambda w: subscribe_refused(w.mallory, "mics.event.single_chat_msg"),
    "subscribe to session joins (meta)": lambda w: subscribe_refused(w.mallory, "wamp.session.on_join"),
    "subscribe to session leaves (meta)": lambda w: subscribe_refused(w.mallory, "wamp.session.on_leave"),
    "subscribe to subscription creation (meta)": lambda w: subscribe_refused(w.mallory, "wamp.subscription.on_create"),
    "subscribe to bob's inbox in another tenant": lambda w: subscribe_refused(w.eve, "mics.inbox.bob"),
    "subscribe to a group one is not in": lambda w: listened_but_got_nothing(w, w.mallory, "mics.group.g1"),
    "subscribe to every group by prefix": lambda w: listened_but_got_nothing(w, w.mallory, "mics.group.", "prefix"),
    # publishing into someone's topics, with and without publish options
    "publish to bob's inbox": lambda w: refused(publish(w.mallory, "mics.inbox.bob"), NOT_AUTHORIZED),
    "publish to bob's inbox, eligible bob": lambda w: refused(
        publish(w.mallory, "mics.inbox.bob", eligible_authid=["bob"]), NOT_AUTHORIZED),
    "publish to bob's inbox, excluding nobody": lambda w: refused(
        publish(w.mallory, "mics.inbox.bob", exclude_me=False), NOT_AUTHORIZED),
    "publish to a group topic": lambda w: refused(publish(w.mallory, "mics.group.g1"), NOT_AUTHORIZED),
    "publish to a tenant topic": lambda w: refused(publish(w.mallory, "tenant.news"), NOT_AUTHORIZED),
    "publish a fake event to backends": lambda w: refused(publish(w.mallory, "mics.event.single_chat_msg"),
                                                          NOT_AUTHORIZED),
    "backend publishes to bob's inbox": lambda w: refused(publish(w.backend_b, "mics.inbox.bob"), NOT_AUTHORIZED),
    # registering what others call
    "register mics.message.send": lambda w: refused(w.mallory.register(lambda **kw: None, "mics.message.send")),
    # (the dealer answers "already exists" before it asks the authorizer: the registration stays the backend's)
    "register the auth hook as a user": lambda w: refused(w.mallory.register(lambda **kw: None, "mics.hook.auth")),
    "register a tenant procedure as a user": lambda w: refused(w.mallory.register(lambda: 1, "tenant.mine"),
                                                               NOT_AUTHORIZED),
    # calls outside a user's role
    **{f"call {uri}": (lambda w, uri=uri: refused(w.mallory.call(uri), NOT_AUTHORIZED, "wamp.error.no_such_procedure"))
       for uri in USER_CALLS},
    "get bob's session details": lambda w: refused(w.mallory.call("wamp.session.get", w.bob._session_id),
                                                   NOT_AUTHORIZED),
    "kill bob's session": lambda w: refused(w.mallory.call("wamp.session.kill", w.bob._session_id), NOT_AUTHORIZED),
    "call another tenant's procedure": lambda w: refused(w.mallory.call("tenant.private"),
                                                         "wamp.error.no_such_procedure"),
    # identity in arguments
    "send as bob (from_user_id)": lambda w: send_as(w, from_user_id="bob"),
    "send as bob (user_id)": lambda w: send_as(w, user_id="bob"),
    "send with alice's client_msg_id": lambda w: send_as(w, client_msg_id="canary-0"),
    "sync bob's inbox by user_id": lambda w: sync_leaks_nothing(w, user_id="bob"),
    "sync bob's inbox by to_user_id": lambda w: sync_leaks_nothing(w, to_user_id="bob"),
    # identity at join
    "a ticket user joins the control realm": lambda w: join_refused(user(w.a.node.url, "mics.control", "tok-bob")),
    "a user joins with authid bob": lambda w: _welcome_authid(w, authid="bob"),
    "a user asks for the backend role": lambda w: _welcome_authid(w, authrole="backend"),
    "a user asks for the mics role": lambda w: _welcome_authid(w, authrole="mics"),
    "a user's authextra names another tenant": lambda w: _welcome_authid(w, authextra={"tenant_id": w.b.tenant_id}),
    "tenant A's backend joins tenant B": lambda w: wampcra_refused(w, w.b.tenant_id, "backend", w.a.secret),
    "tenant B's backend joins tenant A": lambda w: wampcra_refused(w, w.a.tenant_id, "backend", w.b.secret),
    "a backend joins the control realm": lambda w: wampcra_refused(w, "mics.control", "backend", w.a.secret),
    "a backend logs in as admin": lambda w: wampcra_refused(w, "mics.control", "admin", w.a.secret),
    "an admin authid joins a tenant realm": lambda w: wampcra_refused(w, w.a.tenant_id, "admin", w.a.secret),
    "a backend joins a tenant that does not exist": lambda w: wampcra_refused(w, "nobody-here", "backend", w.a.secret),
    "backend B kicks a user of A by id": lambda w: _kick_across(w),
    # HTTP hook signatures (the SDK's verifier, as a tenant's hook server runs it)
    "a replayed hook request": lambda w: _sync(replayed_hook_signature()),
    "a hook request signed with another tenant's secret": lambda w: _sync(forged_hook_signature("another-secret")),
    "a stale hook request": lambda w: _sync(forged_hook_signature("the-tenant-secret", now_ms=1_000)),
    "a hook request with a tampered body": lambda w: _sync(forged_hook_signature("the-tenant-secret", tamper=True)),
}  # fmt: skip


async def _sync(value: str) -> str:
    return value


def _raw_join(port: int, realm: str, **hello: Any) -> list[Any]:
    ws = RawWebSocket(port)
    try:
        assert ws.handshake() == 101
        return ws.join(realm, ticket="tok-mallory", device_id="forged", **hello)
    finally:
        ws.close()


async def _welcome_authid(w: World, **hello: Any) -> str:
    """Join A with mallory's ticket and something forged: the node decides authid, role and extra."""
    welcome = await in_thread(_raw_join, w.a.node.port, w.a.tenant_id, **hello)
    assert welcome[0] == 2, welcome
    details = welcome[2]
    assert (details["authid"], details["authrole"]) == ("mallory", "user")
    assert details["authextra"]["tenant_id"] == w.a.tenant_id
    return "joined as mallory, user, tenant A"


async def _kick_across(w: World) -> str:
    result = await w.backend_b.call("mics.session.kick", user_id="alice")
    assert result == {"kicked": 0} and await w.alice.call("mics.ping")  # alice of tenant A is still connected
    return "nobody kicked in A"


@pytest_twisted.ensureDeferred
async def test_no_attempt_in_the_catalogue_reaches_another_users_or_tenants_data(make_tenant, mics_node):
    a = await make_tenant()
    b = await make_tenant()
    a.logic.groups["g1"] = ["alice", "bob"]
    w = World(a, b, await a.user("alice"), await a.user("bob"), await a.user("mallory"), await b.user("eve"),
              await b.user("bob"), await b.backend("backend-b"))  # fmt: skip
    await w.bob.listen("mics.inbox.bob")
    await w.bob.listen("mics.group.g1")
    await w.bob_in_b.listen("mics.inbox.bob")
    await w.mallory.listen("mics.inbox.mallory")
    w.listeners += [(w.bob_in_b, "mics.inbox.bob"), (w.mallory, "mics.inbox.mallory")]
    await w.backend_b.register(lambda: "tenant B's data", "tenant.private")

    outcomes: dict[str, str] = {}
    for n, (name, attempt) in enumerate(CATALOGUE.items()):
        if n % 10 == 0:  # canaries for bob all along: none may show up anywhere else
            ack = await w.alice.call("mics.message.send", to_user_id="bob", body={"private": n},
                                     client_msg_id=f"canary-{n}")  # fmt: skip
            w.sent_to_bob.append(ack["msg_id"])
            await w.alice.call("mics.group.send", group_id="g1", body={"group": n})
        outcomes[name] = await attempt(w)
    await sleep(0.5)

    got = [(await w.bob.next_event("mics.inbox.bob"))["msg_id"] for _ in w.sent_to_bob]
    leaked = {f"{s._session_id}:{topic}": len(s.events[topic]) for s, topic in w.listeners if s.events[topic]}
    COUNTS["attempts"] += len(outcomes)
    COUNTS["refused"] += len(outcomes) - len(leaked)
    COUNTS["leaked"] += len(leaked)
    COUNTS["control messages"] += len(got) + await control_pair(a, tag="iso")
    assert len(outcomes) >= 50
    assert got == w.sent_to_bob and await w.bob.no_event("mics.inbox.bob")
    assert leaked == {}, f"attacker subscriptions received: {leaked}"
    assert "sent as mallory" in outcomes["send with alice's client_msg_id"]  # dedup is per user: a new message
    assert all(o in (NOT_AUTHORIZED, "mics.error.invalid_message") or o.startswith("sent as mallory")
               for k, o in outcomes.items() if k.startswith("send as"))  # fmt: skip
    for session in (await admin(mics_node.url, ADMIN_SECRET), await backend(mics_node.url, a.tenant_id, a.secret)):
        await session.close()  # the failed logins above throttled no one else
