"""The backend HTTP API (protocol.md section 13) on a real node: every action, every status code,
signatures and replays, through raw signed requests and the Python SDK's MicsHttpClient."""

from __future__ import annotations

import json
from typing import Any

import pytest
import pytest_twisted
from twisted.internet.threads import deferToThread

from harness import http_post_json
from mics_client import errors
from mics_client.hooks.client import MicsHttpClient
from mics_client.signing import sign_headers


def post(base: str, path: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, Any]:
    return http_post_json(base + path, body, headers)


def signed(tenant, fields: dict[str, Any], secret: str | None = None, **sign: Any) -> tuple[bytes, dict[str, str]]:
    body = json.dumps(fields).encode()
    return body, sign_headers(tenant.tenant_id, secret or tenant.secret, body, **sign)


def client(tenant) -> MicsHttpClient:
    return MicsHttpClient(tenant.node.http, tenant.tenant_id, tenant.secret)


@pytest_twisted.ensureDeferred
async def test_a_backend_sends_to_users_and_groups_over_http_as_a_system_sender(make_tenant):
    tenant = await make_tenant()
    tenant.logic.groups["crew"] = ["bob", "carol"]
    bob = await tenant.user("bob")
    await bob.listen("mics.inbox.bob")
    await bob.listen("mics.group.crew")
    api = client(tenant)
    ack = await deferToThread(api.send, "bob", {"text": "shipped"}, "shop", client_msg_id="o-1")
    message = await bob.next_event("mics.inbox.bob")
    assert ack["status"] == "SENT" and ack["delivered"] == "online" and ack["client_msg_id"] == "o-1"
    assert (message["type"], message["from_user_id"], message["from_device_id"]) == ("system", "shop", None)
    assert message["msg_id"] == ack["msg_id"] and message["seq"] == ack["seq"]
    again = await deferToThread(api.send, "bob", {"text": "shipped"}, "shop", client_msg_id="o-1")
    assert again == ack, "dedup by client_msg_id, like the WAMP procedure"
    group_ack = await deferToThread(api.group_send, "crew", "all hands", "ops")
    assert group_ack["recipients"] == 2 and (await bob.next_event("mics.group.crew"))["body"] == "all hands"
    changed = await deferToThread(api.members_changed, "crew", ["dave"], [])
    assert changed["recipients"] == 3
    assert (await bob.next_event("mics.group.crew"))["body"] == {"added": ["dave"], "removed": []}


@pytest_twisted.ensureDeferred
async def test_a_backend_lists_kicks_and_asks_presence_over_http(make_tenant):
    tenant = await make_tenant()
    bob = await tenant.user("bob", "phone")
    await tenant.user("carol")
    api = client(tenant)
    sessions = await deferToThread(api.sessions, "bob")
    assert [(s["user_id"], s["device_id"]) for s in sessions] == [("bob", "phone")]
    assert len(await deferToThread(api.sessions)) == 2
    presence = await deferToThread(api.presence, ["bob", "zed"])
    assert presence == {"bob": {"online": True, "devices": ["phone"]}, "zed": {"online": False, "devices": []}}
    assert await deferToThread(api.kick, "bob") == 1
    left = await bob.left
    assert left.reason == "mics.close.kicked"


@pytest_twisted.ensureDeferred
async def test_send_errors_answer_the_mics_error_with_its_code_as_the_http_status(make_tenant):
    tenant = await make_tenant(max_payload_bytes=40, max_message_qps=2)
    base, path = tenant.node.http, f"/api/v1/{tenant.tenant_id}/send"
    cases = [
        ({"to_user_id": "b.b", "body": 1, "from_user_id": "ops"}, 400, "mics.error.invalid_message"),
        ({"to_user_id": "bob", "from_user_id": "ops"}, 400, "mics.error.invalid_message"),
        ({"to_user_id": "bob", "body": {"n": 2**64}, "from_user_id": "ops"}, 400, "mics.error.invalid_message"),
        ({"to_user_id": "bob", "body": "x" * 50, "from_user_id": "ops"}, 413, "mics.error.payload_too_large"),
    ]
    for fields, status, uri in cases:
        body, headers = signed(tenant, fields)
        got_status, answer = await deferToThread(post, base, path, body, headers)
        assert (got_status, answer["error"], answer["code"]) == (status, uri, status), fields
        assert answer["message"]
    with pytest.raises(errors.EmptyGroup):
        await deferToThread(client(tenant).group_send, "nobody-here", "x")
    with pytest.raises(errors.RateLimited) as limited:  # 2 per second: a burst runs out at once
        for _ in range(10):
            await deferToThread(client(tenant).send, "bob", "ok", "ops")
    assert limited.value.code == 429 and limited.value.kwargs["status"] == "FAILED"


@pytest_twisted.ensureDeferred
async def test_unsigned_forged_stale_replayed_and_misaddressed_requests_answer_401(make_tenant):
    tenant = await make_tenant()
    other = await make_tenant()
    base, path = tenant.node.http, f"/api/v1/{tenant.tenant_id}/sessions"
    body, good = signed(tenant, {})
    assert (await deferToThread(post, base, path, body, good))[0] == 200
    attempts = {
        "replayed": (body, good),
        "unsigned": (body, {}),
        "another tenant's secret": signed(tenant, {}, secret=other.secret),
        "stale": signed(tenant, {}, now_ms=1_000),
        "tampered": (b'{"user_id":"x"}', signed(tenant, {})[1]),
        "misaddressed": (body, {**sign_headers(other.tenant_id, tenant.secret, body)}),
        "non-ascii": (body, {**signed(tenant, {})[1], "X-Mics-Signature": "\u00e9" * 64}),
    }
    for name, (b, h) in attempts.items():
        h = {k: v.encode("utf-8").decode("latin-1") for k, v in h.items()}
        status, answer = await deferToThread(post, base, path, b, h)
        assert (status, answer["error"]) == (401, "mics.error.bad_signature"), name


@pytest_twisted.ensureDeferred
async def test_unknown_tenants_actions_and_unreadable_bodies(make_tenant, node):
    tenant = await make_tenant()
    body, headers = signed(tenant, {})
    status, answer = await deferToThread(post, node.http, "/api/v1/nosuchtenant/sessions", body, headers)
    assert (status, answer["error"]) == (404, "mics.error.not_found")
    status, answer = await deferToThread(post, node.http, f"/api/v1/{tenant.tenant_id}/drop-tables", body, headers)
    assert (status, answer["error"]) == (404, "mics.error.not_found")
    status, _ = await deferToThread(post, node.http, "/api/v2/x/y", body, headers)
    assert status == 404
    for raw in (b"not json", b"[1, 2]", b'{"user_id": "a", '):
        status, answer = await deferToThread(post, node.http, f"/api/v1/{tenant.tenant_id}/sessions", raw,
                                             sign_headers(tenant.tenant_id, tenant.secret, raw))  # fmt: skip
        assert (status, answer["error"]) == (400, "mics.error.invalid_message"), raw
    await tenant.admin.call("mics.admin.tenant.disable", tenant_id=tenant.tenant_id)
    body, headers = signed(tenant, {})
    status, _ = await deferToThread(post, node.http, f"/api/v1/{tenant.tenant_id}/sessions", body, headers)
    assert status == 404, "a disabled tenant is not served"
