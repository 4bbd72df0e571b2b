"""Liveness: a user session silent past heartbeat_timeout_s is closed; any call keeps it alive."""

import pytest_twisted
from twisted.internet import reactor

from wamp_clients import sleep


@pytest_twisted.ensureDeferred
async def test_silent_session_is_closed_with_heartbeat_timeout(make_tenant):
    tenant = await make_tenant(heartbeat_timeout_s=1)
    alice = await tenant.user("alice")
    left = alice.left
    left.addTimeout(3.5, reactor)
    details = await left
    assert details.reason == "mics.close.heartbeat_timeout"


@pytest_twisted.ensureDeferred
async def test_calls_keep_a_session_alive_past_the_timeout(make_tenant):
    tenant = await make_tenant(heartbeat_timeout_s=1)
    alice = await tenant.user("alice")
    for _ in range(8):
        await alice.call("mics.ping")
        await sleep(0.3)
    assert alice.is_attached()


@pytest_twisted.ensureDeferred
async def test_calls_to_tenant_procedures_count_as_activity(make_tenant):
    tenant = await make_tenant(heartbeat_timeout_s=1)
    backend = await tenant.backend("backend-hb")
    await backend.register(lambda: "pong", "tenant.echo")
    alice = await tenant.user("alice")
    for _ in range(8):
        await alice.call("tenant.echo")
        await sleep(0.3)
    assert alice.is_attached()


@pytest_twisted.ensureDeferred
async def test_backend_sessions_are_not_subject_to_the_heartbeat(make_tenant):
    tenant = await make_tenant(heartbeat_timeout_s=1)
    backend = await tenant.backend("backend-idle")
    await sleep(2.5)
    assert backend.is_attached()
