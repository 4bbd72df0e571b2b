"""The Python hook SDK used by real tenants: a WAMP backend on TenantBackend and an HTTP hook server on HookServer."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_twisted
import treq
from twisted.internet import reactor
from twisted.internet.defer import Deferred, DeferredList, ensureDeferred

from harness import ADMIN_SECRET
from mics_client import errors
from mics_client.admin import AdminSession, connect_admin
from mics_client.hooks import Hooks, RejectToken
from mics_client.hooks.backend import TenantBackend, connect_backend
from mics_client.hooks.http import HookServer
from mics_client.signing import sign_headers
from mics_client.twisted import MicsClient

_counter = itertools.count(1)
GROUPS = {"team": ["alice", "bob"]}


class ShopHooks(Hooks):
    """A tenant's logic: tokens `ok-<user>`, one group, no messages about refunds."""

    def __init__(self) -> None:
        self.checked: list[dict[str, Any]] = []

    async def auth(self, token: str, device_id: str, tenant_id: str) -> str:
        if not token.startswith("ok-"):
            raise RejectToken("unknown token")
        return token[3:]

    def check_message(self, message: dict[str, Any]) -> dict[str, Any] | bool:
        self.checked.append(message)
        if "refund" in str(message.get("body")):
            return {"allow": False, "reason": "refunds go through support"}
        return True

    async def group_members(self, group_id: str, from_user_id: str, tenant_id: str) -> list[str]:
        return GROUPS.get(group_id, [])


class ShopBackend(ShopHooks, TenantBackend):
    """The same logic served over WAMP by the base class."""

    def __init__(self, config: Any) -> None:
        TenantBackend.__init__(self, config)
        ShopHooks.__init__(self)


class TenantSetup:
    def __init__(self, url: str) -> None:
        self.url = url
        self.closers: list[Any] = []
        self.admin: AdminSession | None = None

    @staticmethod
    def new_ids() -> tuple[str, str]:
        tenant_id = f"h{os.getpid() % 10000}x{next(_counter)}"
        return tenant_id, f"secret-{tenant_id}-0123456789"

    async def create(self, ids: tuple[str, str] | None = None, **config: Any) -> tuple[str, str]:
        if self.admin is None:
            self.admin = await connect_admin(self.url, ADMIN_SECRET)
        tenant_id, secret = ids or self.new_ids()
        created = await self.admin.upsert_tenant(tenant_id, secret=secret, **config)
        assert created == {"tenant_id": tenant_id, "created": True}
        return tenant_id, secret

    async def client(self, tenant_id: str, token: str, device_id: str = "d1", **kw: Any) -> MicsClient:
        client = MicsClient(self.url, tenant_id, token, device_id, **kw)
        await client.connect()
        self.closers.append(client.close)
        return client

    async def close(self) -> None:
        for close in reversed(self.closers):
            await close()
        if self.admin is not None:
            self.admin.leave()
            await self.admin.left


@pytest_twisted.async_yield_fixture()
async def setup(mics_node: Any) -> AsyncIterator[TenantSetup]:
    s = TenantSetup(mics_node.url)
    yield s
    await s.close()


def inbox(client: MicsClient) -> list[Any]:
    got: list[Any] = []
    client.on_message(got.append)
    return got


@pytest_twisted.ensureDeferred
async def test_a_wamp_backend_on_the_base_class_serves_every_hook(setup: TenantSetup) -> None:
    tenant_id, secret = await setup.create(hook_transport="wamp")
    backend = await connect_backend(setup.url, tenant_id, secret, ShopBackend)
    setup.closers.append(lambda: backend.leave())

    alice = await setup.client(tenant_id, "ok-alice")
    bob = await setup.client(tenant_id, "ok-bob")
    await bob.subscribe_groups()
    bob_got = inbox(bob)
    with pytest.raises(errors.InvalidToken):
        await setup.client(tenant_id, "stolen")
    with pytest.raises(errors.Rejected) as rejected:
        await alice.send("bob", "I want a refund")
    ack = await alice.send_group("team", "hello team")
    await bob.ping()  # events before this call's result have arrived

    assert alice.welcome is not None and alice.welcome.user_id == "alice"
    assert rejected.value.reason == "refunds go through support"
    assert ack.recipients == 2 and [m.msg_id for m in bob_got] == [ack.msg_id]
    assert any(m.get("body") == "hello team" for m in backend.checked)


@pytest_twisted.ensureDeferred
async def test_the_backend_sends_system_messages_reports_members_and_kicks(setup: TenantSetup) -> None:
    tenant_id, secret = await setup.create(hook_transport="wamp")
    backend = await connect_backend(setup.url, tenant_id, secret, ShopBackend)
    setup.closers.append(lambda: backend.leave())
    alice = await setup.client(tenant_id, "ok-alice")
    await alice.subscribe_group("team")
    got = inbox(alice)
    closed: Deferred[str] = Deferred()
    alice.on_close(lambda reason, message: closed.callback(reason))

    ack = await backend.send_system("alice", {"notice": "welcome"}, from_user_id="shop")
    await backend.members_changed("team", added=["carol"])
    sessions = await backend.sessions("alice")
    await alice.ping()
    kicked = await backend.kick("alice")
    reason = await closed.addTimeout(5, reactor)

    system = [m for m in got if m.type == "system"]
    assert [m.msg_id for m in system][:1] == [ack["msg_id"]]
    assert system[0].from_user_id == "shop" and system[0].body == {"notice": "welcome"}
    assert system[1].group_id == "team" and system[1].body == {"added": ["carol"], "removed": []}
    assert [s["device_id"] for s in sessions] == ["d1"]
    assert kicked == 1 and reason == "mics.close.kicked" and alice.state == "closed"


class WaryHooks(ShopHooks):
    """Checks that crash on "crash" and never finish on "stall"; counts the batched calls."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []

    def check_message(self, message: dict[str, Any]) -> Any:
        body = str(message.get("body"))
        if "crash" in body:
            raise RuntimeError("the tenant's check broke on this one")
        if "stall" in body:
            return Deferred()  # never answers
        return super().check_message(message)

    async def check_messages(self, messages: list[dict[str, Any]], timeout_ms: int | None = None) -> list[Any]:
        self.batches.append(len(messages))
        return await super().check_messages(messages, timeout_ms)


class WaryBackend(WaryHooks, TenantBackend):
    def __init__(self, config: Any) -> None:
        TenantBackend.__init__(self, config)
        WaryHooks.__init__(self)


@pytest.mark.parametrize(("transport", "encoding"), [("wamp", "json"), ("http", "json"), ("http", "protobuf")])
@pytest_twisted.ensureDeferred
async def test_the_sdks_batched_check_answers_each_message_and_a_broken_one_cannot_wave_others_through(
    setup: TenantSetup, transport: str, encoding: str
) -> None:
    batching = {"hook_batch_max": 8, "hook_batch_wait_ms": 50, "hook_timeout_ms": 400}
    if transport == "wamp":
        tenant_id, secret = await setup.create(hook_transport="wamp", **batching)
        hooks: WaryHooks = await connect_backend(setup.url, tenant_id, secret, WaryBackend)
        setup.closers.append(lambda: hooks.leave())  # type: ignore[attr-defined]
    else:
        hooks = WaryHooks()
        ids = setup.new_ids()
        server = HookServer(hooks, ids[1])
        setup.closers.append(server.stop)
        tenant_id, _ = await setup.create(ids, hook_transport="http", hook_encoding=encoding,
                                          hook_base_url=server.base_url, **batching)  # fmt: skip
    senders = {u: await setup.client(tenant_id, f"ok-{u}") for u in ("alice", "carol", "dave", "erin")}
    bodies = {"alice": "a refund, now", "carol": "crash the checker", "dave": "stall the checker", "erin": "hi"}
    sends = [ensureDeferred(senders[u].send("bob", b)) for u, b in bodies.items()]
    results = await DeferredList(sends, consumeErrors=True)

    refused, *allowed = results
    assert not refused[0] and isinstance(refused[1].value, errors.Rejected), "its batch-mates' trouble changes nothing"
    assert all(ok for ok, _ in allowed), "no verdict (crashed, or too slow) degrades that message alone to allow"
    assert hooks.batches == [4], "one call for the four"


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
@pytest_twisted.ensureDeferred
async def test_an_http_hook_server_on_the_helper_serves_a_tenant(setup: TenantSetup, encoding: str) -> None:
    hooks = ShopHooks()
    ids = setup.new_ids()
    server = HookServer(hooks, ids[1])
    setup.closers.append(server.stop)
    tenant_id, _ = await setup.create(ids, hook_transport="http", hook_encoding=encoding, hook_base_url=server.base_url)

    alice = await setup.client(tenant_id, "ok-alice")
    bob = await setup.client(tenant_id, "ok-bob")
    await bob.subscribe_group("team")
    bob_got = inbox(bob)
    with pytest.raises(errors.InvalidToken):
        await setup.client(tenant_id, "stolen")
    with pytest.raises(errors.Rejected) as rejected:
        await alice.send("bob", {"text": "refund please"})
    ack = await alice.send_group("team", {"text": "hi"})
    await bob.ping()

    assert rejected.value.reason == "refunds go through support"
    assert ack.recipients == 2 and [m.msg_id for m in bob_got] == [ack.msg_id]
    assert hooks.checked[-1]["body"] == {"text": "hi"} and hooks.checked[-1]["from_user_id"] == "alice"
    assert server.resource.stats["auth"] == 3 and server.resource.stats["bad_signature"] == 0


@pytest_twisted.ensureDeferred
async def test_the_http_hook_server_refuses_bad_stale_and_replayed_signatures(setup: TenantSetup) -> None:
    hooks = ShopHooks()
    server = HookServer(hooks, "the-secret")
    setup.closers.append(server.stop)
    url = server.base_url + "auth"
    body = b'{"token":"ok-alice","device_id":"d1","tenant_id":"shop"}'

    async def post(headers: dict[str, str], data: bytes = body) -> int:
        response = await treq.post(url, data=data, headers={**headers, "Content-Type": "application/json"})
        await response.content()
        return int(response.code)

    good = sign_headers("shop", "the-secret", body)
    statuses = {
        "good": await post(good),
        "replayed": await post(good),
        "wrong secret": await post(sign_headers("shop", "other-secret", body)),
        "stale": await post(sign_headers("shop", "the-secret", body, now_ms=1_000)),
        "tampered": await post(sign_headers("shop", "the-secret", body), body.replace(b"alice", b"admin")),
        "unsigned": await post({}),
    }

    assert statuses == {"good": 200, "replayed": 401, "wrong secret": 401, "stale": 401, "tampered": 401,
                        "unsigned": 401}  # fmt: skip
    assert server.resource.stats == {"auth": 1, "check_message": 0, "check_messages": 0, "group_members": 0,
                                     "agents": 0,
                                     "bad_signature": 5}  # fmt: skip
