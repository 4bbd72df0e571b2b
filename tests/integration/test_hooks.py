"""Check-message hook policy (timeout, bulkhead, breaker, degrade-to-allow) over both transports,
and the HTTP hook wire format: paths, signatures, JSON and protobuf bodies (protocol.md section 5)."""

import json

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet.defer import gatherResults

from mics.hooks import codec
from mics.hooks.signing import signature

HOOKS = ["wamp", "http"]


async def sent_and_received(tenant, body="hello"):
    alice = await tenant.user("alice")
    bob = await tenant.user("bob")
    await bob.listen("mics.inbox.bob")
    ack = await alice.call("mics.message.send", to_user_id="bob", body=body)
    got = await bob.next_event("mics.inbox.bob")
    return ack, got


@pytest.mark.parametrize("hooks", HOOKS)
@pytest_twisted.ensureDeferred
async def test_check_hook_rejection_fails_the_send_with_the_hooks_reason(make_tenant, hooks):
    tenant = await make_tenant(hooks=hooks)
    alice = await tenant.user("alice")
    bob = await tenant.user("bob")
    await bob.listen("mics.inbox.bob")
    with pytest.raises(ApplicationError) as err:
        await alice.call("mics.message.send", to_user_id="bob", body="forbidden words", client_msg_id="c7")
    e = err.value
    assert e.error == "mics.error.rejected"
    assert e.kwargs == {
        "code": 403, "message": "contains a forbidden word", "status": "FAILED",
        "reason": "contains a forbidden word", "client_msg_id": "c7",
    }  # fmt: skip
    assert await bob.no_event("mics.inbox.bob")


@pytest.mark.parametrize("hooks", HOOKS)
@pytest_twisted.ensureDeferred
async def test_check_hook_sees_the_whole_message(make_tenant, hooks):
    tenant = await make_tenant(hooks=hooks)
    ack, _ = await sent_and_received(tenant, {"text": "hi"})
    seen = tenant.logic.seen_messages[-1]
    assert seen["msg_id"] == ack["msg_id"] and seen["from_user_id"] == "alice" and seen["to_user_id"] == "bob"
    assert seen["body"] == {"text": "hi"} and seen["type"] == "chat" and seen["tenant_id"] == tenant.tenant_id


@pytest.mark.parametrize("hooks", HOOKS)
@pytest_twisted.ensureDeferred
async def test_slow_check_hook_times_out_and_the_message_is_allowed(make_tenant, hooks):
    tenant = await make_tenant(hooks=hooks, hook_timeout_ms=50)
    tenant.logic.check_delay = 0.5
    ack, got = await sent_and_received(tenant, "forbidden but the hook is too slow to say so")
    assert ack["status"] == "SENT" and got["msg_id"] == ack["msg_id"]


@pytest.mark.parametrize("hooks", HOOKS)
@pytest_twisted.ensureDeferred
async def test_failing_check_hook_degrades_to_allow(make_tenant, hooks):
    tenant = await make_tenant(hooks=hooks)
    tenant.logic.check_fail = True
    ack, got = await sent_and_received(tenant)
    assert got["msg_id"] == ack["msg_id"]


@pytest.mark.parametrize("hooks", HOOKS)
@pytest_twisted.ensureDeferred
async def test_open_breaker_skips_the_check_hook_and_allows(make_tenant, hooks):
    tenant = await make_tenant(hooks=hooks, hook_breaker_failure_threshold=3, hook_breaker_open_ms=60_000)
    tenant.logic.check_fail = True
    alice = await tenant.user("alice")
    for i in range(3):
        await alice.call("mics.message.send", to_user_id="bob", body=i)
    asked = tenant.logic.calls["check_message"]
    tenant.logic.check_fail = False
    for _ in range(5):
        ack = await alice.call("mics.message.send", to_user_id="bob", body="forbidden yet allowed")
        assert ack["status"] == "SENT"
    assert tenant.logic.calls["check_message"] == asked == 3


@pytest_twisted.ensureDeferred
async def test_breaker_closes_again_after_open_ms_when_the_hook_recovers(make_tenant):
    tenant = await make_tenant(hook_breaker_failure_threshold=1, hook_breaker_open_ms=200)
    tenant.logic.check_fail = True
    alice = await tenant.user("alice")
    await alice.call("mics.message.send", to_user_id="bob", body=1)
    tenant.logic.check_fail = False
    from wamp_clients import sleep

    await sleep(0.3)
    with pytest.raises(ApplicationError) as err:
        await alice.call("mics.message.send", to_user_id="bob", body="forbidden")
    assert err.value.error == "mics.error.rejected", "the half-open trial reached the healthy hook"


@pytest.mark.parametrize("hooks", HOOKS)
@pytest_twisted.ensureDeferred
async def test_bulkhead_full_queue_degrades_to_allow_without_asking_the_hook(make_tenant, hooks):
    tenant = await make_tenant(hooks=hooks, hook_max_concurrency=1, hook_queue_timeout_ms=1, hook_timeout_ms=1000)
    tenant.logic.check_delay = 0.2
    alice = await tenant.user("alice")
    acks = await gatherResults([alice.call("mics.message.send", to_user_id="bob", body=i) for i in range(4)])
    assert all(a["status"] == "SENT" for a in acks)
    assert tenant.logic.calls["check_message"] == 1


@pytest_twisted.ensureDeferred
async def test_check_message_hook_false_skips_the_hook(make_tenant):
    tenant = await make_tenant(check_message_hook=False)
    ack, _ = await sent_and_received(tenant, "forbidden is fine here")
    assert ack["status"] == "SENT" and tenant.logic.calls["check_message"] == 0


@pytest_twisted.ensureDeferred
async def test_one_tenants_hook_outage_does_not_touch_another(make_tenant):
    broken = await make_tenant(hook_timeout_ms=50)
    broken.logic.check_delay = 1.0
    healthy = await make_tenant()
    alice = await healthy.user("alice")
    with pytest.raises(ApplicationError) as err:
        await alice.call("mics.message.send", to_user_id="bob", body="forbidden")
    assert err.value.error == "mics.error.rejected"


# -- the HTTP wire format ---------------------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
@pytest_twisted.ensureDeferred
async def test_http_hooks_are_signed_posts_to_paths_under_the_base_url(make_tenant, encoding):
    tenant = await make_tenant(hooks="http", encoding=encoding)
    tenant.logic.groups["g"] = ["alice", "bob"]
    alice = await tenant.user("alice", "phone")
    await alice.call("mics.message.send", to_user_id="bob", body={"k": [1, 2]})
    await alice.call("mics.group.send", group_id="g", body="x")
    server = tenant.http
    paths = [p for p, _, _ in server.requests]
    assert paths[:2] == ["/hooks/auth", "/hooks/check-message"]
    assert sorted(paths[2:]) == ["/hooks/check-message", "/hooks/get-group-members"], "group send asks both"
    assert server.signature_errors == []
    content_type = "application/json" if encoding == "json" else "application/x-protobuf"
    for _path, headers, body in server.requests:
        assert headers["X-Mics-Tenant"] == tenant.tenant_id
        assert headers["Content-Type"] == content_type
        expected = signature(tenant.secret, headers["X-Mics-Timestamp"], headers["X-Mics-Nonce"], body)
        assert headers["X-Mics-Signature"] == expected
    auth_fields = codec.decode_request("auth", server.requests[0][2], content_type)
    assert auth_fields == {"token": "tok-alice", "device_id": "phone", "tenant_id": tenant.tenant_id}
    members_body = next(b for p, _, b in server.requests if p == "/hooks/get-group-members")
    members = codec.decode_request("group_members", members_body, content_type)
    assert members == {"group_id": "g", "from_user_id": "alice", "tenant_id": tenant.tenant_id}


@pytest_twisted.ensureDeferred
async def test_http_json_bodies_are_flat_objects_of_the_input_fields(make_tenant):
    tenant = await make_tenant(hooks="http")
    await tenant.user("alice", "phone")
    body = json.loads(tenant.http.requests[0][2])
    assert body == {"token": "tok-alice", "device_id": "phone", "tenant_id": tenant.tenant_id}


@pytest_twisted.ensureDeferred
async def test_http_nonces_are_never_reused(make_tenant):
    tenant = await make_tenant(hooks="http")
    alice = await tenant.user("alice")
    for i in range(5):
        await alice.call("mics.message.send", to_user_id="bob", body=i)
    nonces = [h["X-Mics-Nonce"] for _, h, _ in tenant.http.requests]
    assert len(set(nonces)) == len(nonces) == 6


@pytest_twisted.ensureDeferred
async def test_http_hook_server_down_refuses_joins_and_degrades_sends(make_tenant):
    tenant = await make_tenant(hooks="http")
    alice = await tenant.user("alice")
    await tenant.http.stop()
    ack = await alice.call("mics.message.send", to_user_id="bob", body="forbidden but nobody checks")
    assert ack["status"] == "SENT"
    from wamp_clients import JoinRefused

    with pytest.raises(JoinRefused) as refused:
        await tenant.user("bob")
    assert refused.value.reason == "mics.error.hook_unavailable"


@pytest.mark.parametrize("hooks", HOOKS)
@pytest_twisted.ensureDeferred
async def test_a_timed_out_hook_is_counted_as_a_timeout_not_a_failure(make_tenant, hooks):
    from harness import http_get

    tenant = await make_tenant(hooks=hooks, hook_timeout_ms=50)
    tenant.logic.check_delay = 0.5
    await sent_and_received(tenant)
    text = http_get(f"{tenant.node.http}/metrics")[1].decode()
    labels = f'hook="check_message",outcome="timeout",tenant="{tenant.tenant_id}"'
    assert f"mics_hook_calls_total{{{labels}}} 1.0" in text
    assert f'hook="check_message",outcome="failure",tenant="{tenant.tenant_id}"}} 1.0' not in text
