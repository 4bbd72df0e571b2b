"""The admin API in realm mics.control (protocol.md section 7) and run-time tenants."""

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError

from harness import ADMIN_SECRET
from wamp_clients import JoinRefused, admin, user


@pytest_twisted.ensureDeferred
async def test_a_tenant_added_at_run_time_gets_its_realm_on_first_use(node):
    adm = await admin(node.url, ADMIN_SECRET)
    try:
        result = await adm.call(
            "mics.admin.tenant.upsert",
            tenant_id="runtime-tenant",
            config={"secret": "runtime-secret-1", "hook_transport": "http", "hook_base_url": "http://127.0.0.1:9/"},
        )
        assert result == {"tenant_id": "runtime-tenant", "created": True}
        listed = await adm.call("mics.admin.tenant.list")
        assert {"tenant_id": "runtime-tenant", "enabled": True, "connections": 0} in listed["tenants"]
        with pytest.raises(JoinRefused) as refused:  # the realm exists: the join reaches the (dead) hook
            await user(node.url, "runtime-tenant", "tok-alice", "d1")
        assert refused.value.reason == "mics.error.hook_unavailable"
    finally:
        await adm.close()


@pytest_twisted.ensureDeferred
async def test_get_shows_the_config_with_the_secret_redacted(make_tenant):
    tenant = await make_tenant(max_message_qps=123)
    got = await tenant.admin.call("mics.admin.tenant.get", tenant_id=tenant.tenant_id)
    assert got["tenant_id"] == tenant.tenant_id
    assert got["config"]["secret"] == "***" and got["config"]["max_message_qps"] == 123
    assert got["config"]["hook_timeout_ms"] == 150, "defaults are shown"


@pytest_twisted.ensureDeferred
async def test_partial_upsert_merges_and_applies_to_new_sessions(make_tenant):
    tenant = await make_tenant(heartbeat_timeout_s=30)
    result = await tenant.configure(heartbeat_timeout_s=42)
    assert result == {"tenant_id": tenant.tenant_id, "created": False}
    got = await tenant.admin.call("mics.admin.tenant.get", tenant_id=tenant.tenant_id)
    assert got["config"]["heartbeat_timeout_s"] == 42 and got["config"]["hook_transport"] == "wamp"
    alice = await tenant.user("alice")
    assert alice.welcome.authextra["heartbeat_timeout_s"] == 42


@pytest.mark.parametrize(
    ("config", "field"),
    [
        ({"hook_timeout_ms": 0}, "hook_timeout_ms"),
        ({"hook_timeout_ms": "fast"}, "hook_timeout_ms"),
        ({"max_connections": True}, "max_connections"),
        ({"hook_transport": "smtp"}, "hook_transport"),
        ({"no_such_field": 1}, "no_such_field"),
        ({"event_sinks": ["kafka", "carrier-pigeon"]}, "event_sinks"),
        ({"hook_transport": "http"}, "hook_base_url"),
        ({"secret": "short"}, "secret"),
        ({"heartbeat_timeout_s": 0}, "heartbeat_timeout_s"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_invalid_config_is_refused_naming_tenant_and_field(make_tenant, config, field):
    tenant = await make_tenant()
    with pytest.raises(ApplicationError) as err:
        await tenant.configure(**config)
    e = err.value
    assert e.error == "mics.error.invalid_config"
    assert e.kwargs["tenant_id"] == tenant.tenant_id and e.kwargs["field"] == field
    assert field in e.kwargs["message"] and tenant.tenant_id in e.kwargs["message"]
    got = await tenant.admin.call("mics.admin.tenant.get", tenant_id=tenant.tenant_id)
    assert got["config"]["hook_timeout_ms"] == 150, "a refused upsert changes nothing"


@pytest_twisted.ensureDeferred
async def test_new_tenant_without_secret_or_with_a_bad_id_is_refused(node):
    adm = await admin(node.url, ADMIN_SECRET)
    try:
        for tenant_id, config, field in [("ok-tenant-x", {}, "secret"), ("1bad", {"secret": "x" * 10}, "tenant_id")]:
            with pytest.raises(ApplicationError) as err:
                await adm.call("mics.admin.tenant.upsert", tenant_id=tenant_id, config=config)
            assert err.value.error == "mics.error.invalid_config" and err.value.kwargs["field"] == field
    finally:
        await adm.close()


@pytest_twisted.ensureDeferred
async def test_admin_lists_and_kicks_sessions(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice", "phone")
    await tenant.user("bob")
    listed = await tenant.admin.call("mics.admin.session.list", tenant_id=tenant.tenant_id)
    assert sorted(s["user_id"] for s in listed["sessions"]) == ["alice", "bob"]
    only = await tenant.admin.call("mics.admin.session.list", tenant_id=tenant.tenant_id, user_id="alice")
    assert [s["device_id"] for s in only["sessions"]] == ["phone"]
    kicked = await tenant.admin.call("mics.admin.session.kick", tenant_id=tenant.tenant_id, user_id="alice")
    assert kicked == {"kicked": 1}
    assert (await alice.left).reason == "mics.close.kicked"


@pytest_twisted.ensureDeferred
async def test_stats_count_connections_and_held_messages_per_tenant(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    await alice.call("mics.message.send", to_user_id="bob", body="held")
    stats = await tenant.admin.call("mics.admin.stats", tenant_id=tenant.tenant_id)
    mine = stats["tenants"][tenant.tenant_id]
    assert mine["connections"] == 1 and mine["buffer_held_messages"] == 2  # bob's message + alice's copy
    assert stats["node_id"] == tenant.node.node_id


@pytest_twisted.ensureDeferred
async def test_admin_calls_on_an_unknown_tenant_fail_clearly(node):
    adm = await admin(node.url, ADMIN_SECRET)
    try:
        with pytest.raises(ApplicationError) as err:
            await adm.call("mics.admin.tenant.get", tenant_id="nobody-here")
        assert err.value.error == "mics.error.not_found"
    finally:
        await adm.close()


@pytest_twisted.ensureDeferred
async def test_users_cannot_join_the_control_realm(make_tenant):
    tenant = await make_tenant()
    with pytest.raises(JoinRefused):
        await user(tenant.node.url, "mics.control", "tok-alice", "d1")
