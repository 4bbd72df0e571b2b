"""Joining a tenant realm: every ABORT reason of protocol.md section 2, for both hook transports."""

import pytest
import pytest_twisted

from wamp_clients import JoinRefused, admin, backend, user

HOOKS = ["wamp", "http"]


@pytest.mark.parametrize("hooks", HOOKS)
@pytest_twisted.ensureDeferred
async def test_valid_token_joins_with_user_id_role_and_authextra(make_tenant, hooks):
    tenant = await make_tenant(hooks=hooks, heartbeat_timeout_s=45, offline_ttl_s=120)
    alice = await tenant.user("alice", "phone")
    welcome = alice.welcome
    assert welcome.authid == "alice" and welcome.authrole == "user"
    extra = welcome.authextra
    assert extra["device_id"] == "phone" and extra["node_id"] == tenant.node.node_id
    assert extra["heartbeat_timeout_s"] == 45 and extra["offline_ttl_s"] == 120


@pytest.mark.parametrize("hooks", HOOKS)
@pytest_twisted.ensureDeferred
async def test_bad_token_is_refused_with_invalid_token(make_tenant, hooks):
    tenant = await make_tenant(hooks=hooks)
    with pytest.raises(JoinRefused) as refused:
        await tenant.raw_user("not-a-valid-token")
    assert refused.value.reason == "mics.error.invalid_token"


@pytest_twisted.ensureDeferred
async def test_missing_device_id_is_refused_with_invalid_token(make_tenant):
    tenant = await make_tenant()
    with pytest.raises(JoinRefused) as refused:
        await tenant.raw_user("tok-alice", device_id=None)
    assert refused.value.reason == "mics.error.invalid_token"
    assert tenant.logic.calls["auth"] == 0, "the hook is not asked without a device id"


@pytest_twisted.ensureDeferred
async def test_device_id_with_a_dot_is_refused_with_invalid_token(make_tenant):
    tenant = await make_tenant()
    with pytest.raises(JoinRefused) as refused:
        await tenant.raw_user("tok-alice", device_id="bad.device")
    assert refused.value.reason == "mics.error.invalid_token"


@pytest_twisted.ensureDeferred
async def test_empty_ticket_is_refused_with_invalid_token(make_tenant):
    tenant = await make_tenant()
    with pytest.raises(JoinRefused) as refused:
        await tenant.raw_user("")
    assert refused.value.reason == "mics.error.invalid_token"


@pytest_twisted.ensureDeferred
async def test_unknown_tenant_is_refused_with_invalid_tenant(node):
    with pytest.raises(JoinRefused) as refused:
        await user(node.url, "no-such-tenant", "tok-alice", "d1")
    assert refused.value.reason == "mics.error.invalid_tenant"


@pytest_twisted.ensureDeferred
async def test_disabled_tenant_refuses_joins_and_closes_live_sessions(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    result = await tenant.admin.call("mics.admin.tenant.disable", tenant_id=tenant.tenant_id)
    assert result == {}
    left = await alice.left
    assert left.reason == "mics.close.tenant_disabled"
    with pytest.raises(JoinRefused) as refused:
        await tenant.user("bob")
    assert refused.value.reason == "mics.error.invalid_tenant"


@pytest.mark.parametrize("hooks", HOOKS)
@pytest_twisted.ensureDeferred
async def test_auth_hook_timeout_is_refused_with_hook_unavailable(make_tenant, hooks):
    tenant = await make_tenant(hooks=hooks, hook_auth_timeout_ms=100)
    tenant.logic.auth_delay = 0.5
    with pytest.raises(JoinRefused) as refused:
        await tenant.user("alice")
    assert refused.value.reason == "mics.error.hook_unavailable"


@pytest.mark.parametrize("hooks", HOOKS)
@pytest_twisted.ensureDeferred
async def test_failing_auth_hook_is_refused_with_hook_unavailable(make_tenant, hooks):
    tenant = await make_tenant(hooks=hooks)
    tenant.logic.auth_fail = True
    with pytest.raises(JoinRefused) as refused:
        await tenant.user("alice")
    assert refused.value.reason == "mics.error.hook_unavailable"


@pytest_twisted.ensureDeferred
async def test_auth_hook_breaker_opens_and_refuses_without_asking_the_hook(make_tenant):
    tenant = await make_tenant(hook_breaker_failure_threshold=2, hook_breaker_open_ms=60_000)
    tenant.logic.auth_fail = True
    for _ in range(2):
        with pytest.raises(JoinRefused):
            await tenant.user("alice")
    asked = tenant.logic.calls["auth"]
    tenant.logic.auth_fail = False
    with pytest.raises(JoinRefused) as refused:
        await tenant.user("alice")
    assert refused.value.reason == "mics.error.hook_unavailable"
    assert tenant.logic.calls["auth"] == asked, "an open breaker does not call the hook"


@pytest_twisted.ensureDeferred
async def test_wamp_tenant_without_a_backend_refuses_with_hook_unavailable(make_tenant):
    tenant = await make_tenant()
    hook_backend = tenant.sessions[1]
    await hook_backend.close()
    with pytest.raises(JoinRefused) as refused:
        await tenant.user("alice")
    assert refused.value.reason == "mics.error.hook_unavailable"


@pytest_twisted.ensureDeferred
async def test_per_user_connection_limit_refuses_the_extra_device(make_tenant):
    tenant = await make_tenant(max_connections_per_user=2)
    await tenant.user("alice", "d1")
    await tenant.user("alice", "d2")
    with pytest.raises(JoinRefused) as refused:
        await tenant.user("alice", "d3")
    assert refused.value.reason == "mics.error.connection_limit"
    await tenant.user("bob", "d1")  # other users are not affected


@pytest_twisted.ensureDeferred
async def test_tenant_connection_limit_refuses_the_extra_user(make_tenant):
    tenant = await make_tenant(max_connections=2)
    await tenant.user("alice")
    await tenant.user("bob")
    with pytest.raises(JoinRefused) as refused:
        await tenant.user("carol")
    assert refused.value.reason == "mics.error.connection_limit"


@pytest_twisted.ensureDeferred
async def test_backend_sessions_do_not_count_against_connection_limits(make_tenant):
    tenant = await make_tenant(max_connections=1)
    await tenant.backend("backend-extra")
    await tenant.user("alice")


@pytest_twisted.ensureDeferred
async def test_same_user_and_device_again_replaces_the_older_session(make_tenant):
    tenant = await make_tenant(max_connections_per_user=1)
    first = await tenant.user("alice", "phone")
    second = await tenant.user("alice", "phone")
    left = await first.left
    assert left.reason == "mics.close.replaced"
    assert second.is_attached()
    await second.call("mics.ping")


@pytest_twisted.ensureDeferred
async def test_backend_with_wrong_secret_is_refused(make_tenant):
    tenant = await make_tenant()
    with pytest.raises(JoinRefused) as refused:
        await backend(tenant.node.url, tenant.tenant_id, "wrong-secret-123456")
    assert refused.value.reason == "wamp.error.not_authorized"


@pytest_twisted.ensureDeferred
async def test_backend_secret_of_another_tenant_is_refused(make_tenant):
    mine = await make_tenant()
    other = await make_tenant()
    with pytest.raises(JoinRefused):
        await backend(mine.node.url, mine.tenant_id, other.secret)


@pytest_twisted.ensureDeferred
async def test_admin_with_wrong_secret_is_refused(node):
    with pytest.raises(JoinRefused):
        await admin(node.url, "not-the-admin-secret")


@pytest_twisted.ensureDeferred
async def test_auth_hook_may_return_the_device_id_and_config_overrides(make_tenant):
    tenant = await make_tenant()
    tenant.logic.auth_config = {"heartbeat_timeout_s": 77}
    alice = await tenant.user("alice")
    assert alice.welcome.authextra["heartbeat_timeout_s"] == 77
    got = await tenant.admin.call("mics.admin.tenant.get", tenant_id=tenant.tenant_id)
    assert got["config"]["heartbeat_timeout_s"] == 77


@pytest_twisted.ensureDeferred
async def test_auth_hook_cannot_override_the_tenant_secret(make_tenant):
    tenant = await make_tenant()
    tenant.logic.auth_config = {"secret": "stolen-secret-123"}
    await tenant.user("alice")  # the join still succeeds; the override is refused and logged
    await tenant.backend("backend-check")  # the original secret still works


@pytest.mark.parametrize("serializer", ["json", "msgpack", "cbor"])
@pytest_twisted.ensureDeferred
async def test_every_serializer_joins_and_sends(make_tenant, serializer):
    tenant = await make_tenant()
    alice = await tenant.user("alice", serializer=serializer)
    ack = await alice.call("mics.message.send", to_user_id="bob", body={"n": 1})
    assert ack["status"] == "SENT" and ack["delivered"] == "buffered"


@pytest_twisted.ensureDeferred
async def test_hook_outcomes_are_counted_in_metrics(make_tenant):
    from harness import http_get

    tenant = await make_tenant()
    await tenant.user("alice")
    with pytest.raises(JoinRefused):
        await tenant.raw_user("bad-token")
    _, body = http_get(f"{tenant.node.http}/metrics")
    text = body.decode()
    for outcome in ("ok", "rejected"):
        line = f'mics_hook_calls_total{{hook="auth",outcome="{outcome}",tenant="{tenant.tenant_id}"}} 1.0'
        assert line in text


@pytest_twisted.ensureDeferred
async def test_a_burst_of_joins_beyond_hook_concurrency_waits_for_a_slot(make_tenant):
    from twisted.internet.defer import ensureDeferred, gatherResults

    tenant = await make_tenant(hook_max_concurrency=2, hook_queue_timeout_ms=10, hook_auth_timeout_ms=2000)
    tenant.logic.auth_delay = 0.1
    sessions = await gatherResults([ensureDeferred(tenant.user(f"u{i}")) for i in range(8)])
    assert len(sessions) == 8 and tenant.logic.calls["auth"] == 8
