"""The admin commands of `mics` (protocol.md section 7) as a subprocess against the session's node:
tables by default, `--json` for the procedure's result, exit status 0 / 1 (MICS error) / 2 (usage,
no secret, no node)."""

from __future__ import annotations

import json

import pytest_twisted
from integration.conftest import CliRun, run_mics

from harness import free_port
from wamp_clients import sleep


def rows(run: CliRun) -> list[list[str]]:
    """A table's lines split into cells (cells in these tests have no spaces)."""
    assert run.code == 0, run.err
    return [line.split() for line in run.out.splitlines()]


def refused(run: CliRun, code: int, text: str) -> None:
    assert run.code == code, (run.code, run.out, run.err)
    assert run.out == "" and text in run.err, run.err


@pytest_twisted.ensureDeferred
async def test_tenants_list_shows_every_tenant_with_its_connections(make_tenant):
    tenant = await make_tenant()
    await tenant.user("alice")
    table = rows(await run_mics("tenants", "list", "--url", tenant.node.url))
    assert table[0] == ["TENANT", "ENABLED", "CONNECTIONS"]
    assert [tenant.tenant_id, "yes", "1"] in table[1:]
    as_json = await run_mics("tenants", "list", "--json", "--url", tenant.node.url)
    listed = json.loads(as_json.out)
    assert {"tenant_id": tenant.tenant_id, "enabled": True, "connections": 1} in listed["tenants"]


@pytest_twisted.ensureDeferred
async def test_tenants_get_shows_the_config_with_the_secret_masked(make_tenant):
    tenant = await make_tenant(max_message_qps=321)
    run = await run_mics("tenants", "get", tenant.tenant_id, "--url", tenant.node.url)
    title, header, *fields = rows(run)
    assert title == ["tenant", tenant.tenant_id] and header == ["FIELD", "VALUE"]
    assert ["secret", "***"] in fields and ["max_message_qps", "321"] in fields
    assert tenant.secret not in run.out
    as_json = json.loads((await run_mics("tenants", "get", tenant.tenant_id, "--json", "--url", tenant.node.url)).out)
    assert as_json == await tenant.admin.call("mics.admin.tenant.get", tenant_id=tenant.tenant_id)


@pytest_twisted.ensureDeferred
async def test_tenants_upsert_creates_from_a_file_and_merges_set_fields(node, tmp_path):
    config = tmp_path / "tenant.json"
    config.write_text(json.dumps({"secret": "cli-secret-0123456789", "hook_transport": "wamp"}))
    created = await run_mics("tenants", "upsert", "cli-made", "--config", str(config), "--url", node.url)
    assert (created.code, created.out) == (0, "created tenant cli-made\n")
    updated = await run_mics(
        "tenants", "upsert", "cli-made", "--set", "heartbeat_timeout_s=45", "--set", 'event_sinks=["file"]',
        "--set", "hook_base_url=http://127.0.0.1:9/hooks", "--url", node.url, "--json",
    )  # fmt: skip
    assert json.loads(updated.out) == {"tenant_id": "cli-made", "created": False}
    got = json.loads((await run_mics("tenants", "get", "cli-made", "--json", "--url", node.url)).out)["config"]
    assert got["heartbeat_timeout_s"] == 45 and got["event_sinks"] == ["file"]
    assert got["hook_base_url"] == "http://127.0.0.1:9/hooks", "a value that is not JSON is taken as a string"


@pytest_twisted.ensureDeferred
async def test_an_invalid_upsert_prints_the_validation_error_naming_the_field_and_exits_1(make_tenant):
    tenant = await make_tenant()
    run = await run_mics("tenants", "upsert", tenant.tenant_id, "--set", "hook_timeout_ms=0", "--url", tenant.node.url)
    refused(run, 1, f"error: mics.error.invalid_config: tenants.{tenant.tenant_id}.hook_timeout_ms: expected int")
    unknown = await run_mics("tenants", "upsert", tenant.tenant_id, "--set", "colour=blue", "--url", tenant.node.url)
    refused(unknown, 1, f"tenants.{tenant.tenant_id}.colour: unknown field")
    got = await tenant.admin.call("mics.admin.tenant.get", tenant_id=tenant.tenant_id)
    assert got["config"]["hook_timeout_ms"] == 150, "a refused upsert changes nothing"


@pytest_twisted.ensureDeferred
async def test_upsert_without_fields_or_with_a_bad_set_or_file_is_a_usage_error(node, tmp_path):
    refused(await run_mics("tenants", "upsert", "cli-x1", "--url", node.url), 2, "needs --config FILE or --set")
    refused(await run_mics("tenants", "upsert", "cli-x1", "--set", "secret", "--url", node.url), 2,
            "--set expects field=value, got 'secret'")  # fmt: skip
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    refused(await run_mics("tenants", "upsert", "cli-x1", "--config", str(bad), "--url", node.url), 2,
            "is not valid JSON")  # fmt: skip
    refused(await run_mics("tenants", "upsert", "cli-x1", "--config", str(tmp_path / "none.json"), "--url", node.url),
            2, "cannot read")  # fmt: skip
    listed = json.loads((await run_mics("tenants", "list", "--json", "--url", node.url)).out)
    assert "cli-x1" not in [t["tenant_id"] for t in listed["tenants"]], "nothing reached the node"


@pytest_twisted.ensureDeferred
async def test_tenants_disable_closes_live_sessions_and_get_shows_it(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    run = await run_mics("tenants", "disable", tenant.tenant_id, "--url", tenant.node.url)
    assert (run.code, run.out) == (0, f"disabled tenant {tenant.tenant_id}\n")
    assert (await alice.left).reason == "mics.close.tenant_disabled"
    assert ["enabled", "no"] in rows(await run_mics("tenants", "get", tenant.tenant_id, "--url", tenant.node.url))


@pytest_twisted.ensureDeferred
async def test_calls_on_an_unknown_tenant_exit_1_with_the_mics_error(node):
    for args in (["tenants", "get"], ["tenants", "disable"], ["sessions", "list"], ["stats"], ["dlq", "list"]):
        run = await run_mics(*args, "nobody-here", "--url", node.url)
        refused(run, 1, "error: mics.error.not_found: no tenant 'nobody-here'")


@pytest_twisted.ensureDeferred
async def test_sessions_list_and_kick(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice", "phone")
    await tenant.user("bob", "laptop")
    url = tenant.node.url
    header, *listed = rows(await run_mics("sessions", "list", tenant.tenant_id, "--url", url))
    assert header == ["USER", "DEVICE", "NODE", "SESSION", "ONLINE_AT"]
    node_id = tenant.node.node_id
    assert sorted(r[:3] for r in listed) == [["alice", "phone", node_id], ["bob", "laptop", node_id]]
    only_alice = await run_mics("sessions", "list", tenant.tenant_id, "--user", "alice", "--json", "--url", url)
    only = json.loads(only_alice.out)
    assert [s["device_id"] for s in only["sessions"]] == ["phone"]
    none = await run_mics("sessions", "kick", tenant.tenant_id, "alice", "--device", "tablet", "--url", url)
    assert (none.code, none.out) == (0, "kicked 0 sessions\n")
    kicked = await run_mics("sessions", "kick", tenant.tenant_id, "alice", "--url", url)
    assert (kicked.code, kicked.out) == (0, "kicked 1 session\n")
    assert (await alice.left).reason == "mics.close.kicked"
    bad = await run_mics("sessions", "kick", tenant.tenant_id, "no.dots", "--url", url)
    refused(bad, 1, "error: mics.error.invalid_message: user_id (and device_id, if given) must be valid ids")


@pytest_twisted.ensureDeferred
async def test_stats_shows_counters_and_hook_health_per_tenant(make_tenant):
    tenant = await make_tenant(hooks="http", hook_timeout_ms=50, hook_breaker_failure_threshold=2)
    alice = await tenant.user("alice")
    tenant.logic.check_delay = 0.3  # the check-message hook times out: sends are allowed, timeouts counted
    for n in range(3):
        await alice.call("mics.message.send", to_user_id="bob", body=n)
    await sleep(0.3)  # let the slow hook answers drain, so nothing is in flight
    url = tenant.node.url
    stats = json.loads((await run_mics("stats", tenant.tenant_id, "--json", "--url", url)).out)
    hooks = stats["tenants"][tenant.tenant_id]["hooks"]
    assert hooks["check_message"]["breaker"] == "open" and hooks["check_message"]["in_flight"] == 0
    assert hooks["check_message"]["calls"]["timeout"] == 2 and hooks["check_message"]["calls"]["breaker_open"] == 1
    assert hooks["auth"] == {"breaker": "closed", "in_flight": 0, "calls": {**hooks["auth"]["calls"], "ok": 1}}
    table = rows(await run_mics("stats", tenant.tenant_id, "--url", url))
    assert table[0] == ["node", tenant.node.node_id]
    assert table[1][:3] == ["TENANT", "ENABLED", "CONNECTIONS"] and table[2][:3] == [tenant.tenant_id, "yes", "1"]
    hook_header = table.index(["TENANT", "HOOK", "BREAKER", "IN_FLIGHT", "OK", "REJECTED", "TIMEOUT", "FAILURE",
                               "QUEUE_FULL", "BREAKER_OPEN"])  # fmt: skip
    assert [tenant.tenant_id, "check_message", "open", "0", "0", "0", "2", "0", "0", "1"] in table[hook_header:]
    everyone = json.loads((await run_mics("stats", "--json", "--url", url)).out)
    assert tenant.tenant_id in everyone["tenants"] and len(everyone["tenants"]) > 1


@pytest_twisted.ensureDeferred
async def test_dlq_list_and_repush_on_a_tenant_without_kafka(make_tenant):
    tenant = await make_tenant(event_sinks=["file"])
    url = tenant.node.url
    listing = await run_mics("dlq", "list", tenant.tenant_id, "--url", url)
    assert listing.code == 0
    assert listing.out == "ID  FAILED_AT  EVENT_TYPE  KEY  ATTEMPTS  ERROR\n0 dead letters held, 0 dropped\n"
    as_json = json.loads((await run_mics("dlq", "list", tenant.tenant_id, "--limit", "5", "--json", "--url", url)).out)
    assert as_json == {"dead_letters": [], "total": 0, "dropped": 0}
    refused(await run_mics("dlq", "list", tenant.tenant_id, "--limit", "0", "--url", url), 1,
            "error: mics.error.invalid_message: limit must be an integer >= 1, got 0")  # fmt: skip
    refused(await run_mics("dlq", "repush", tenant.tenant_id, "--url", url), 1,
            f"error: mics.error.invalid_config: tenant '{tenant.tenant_id}' has no kafka event sink")  # fmt: skip


@pytest_twisted.ensureDeferred
async def test_no_secret_no_node_or_bad_usage_exit_2_and_say_which(node):
    refused(await run_mics("tenants", "list", "--url", node.url, secret=None), 2, "set MICS_ADMIN_SECRET")
    nobody = f"ws://127.0.0.1:{free_port()}/ws"
    refused(await run_mics("tenants", "list", "--url", nobody), 2, f"cannot reach the node at {nobody}")
    refused(await run_mics("sessions", "kick", "some-tenant"), 2, "the following arguments are required: user_id")
    refused(await run_mics("tenants", "rename"), 2, "invalid choice: 'rename'")
    refused(await run_mics("dlq", "list", "t1", "--limit", "many"), 2, "invalid int value: 'many'")


@pytest_twisted.ensureDeferred
async def test_the_url_defaults_to_mics_port_on_loopback(node):
    run = await run_mics("tenants", "list", "--json", env={"MICS_PORT": str(node.port)})
    assert run.code == 0 and "demo" in [t["tenant_id"] for t in json.loads(run.out)["tenants"]]


@pytest_twisted.ensureDeferred
async def test_a_wrong_admin_secret_is_refused_by_the_node_with_exit_1(node):
    run = await run_mics("tenants", "list", "--url", node.url, secret="not-the-admin-secret")
    refused(run, 1, "error: wamp.error.")
