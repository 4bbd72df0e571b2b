"""Liveness: a user session silent past heartbeat_timeout_s is closed; any call keeps it alive.

The margins hold on a loaded machine: a silent session is waited for as long as it takes (its
close may come late, never early), and a busy session's calls come every 0.2 s against a 3 s
timeout. How long the busy session is watched is set by a silent one joined with it: once the
sweep has closed that one, it has looked at the busy one past its timeout too.
"""

import time

import pytest_twisted
from twisted.internet import reactor

from wamp_clients import sleep

BUSY_TIMEOUT_S = 3
CALL_EVERY_S = 0.2


async def closed_reason(session, within: float = 20.0) -> str:
    left = session.left
    left.addTimeout(within, reactor)
    details = await left
    return str(details.reason)


@pytest_twisted.ensureDeferred
async def test_silent_session_is_closed_with_heartbeat_timeout(make_tenant):
    tenant = await make_tenant(heartbeat_timeout_s=1)
    alice = await tenant.user("alice")
    joined = time.monotonic()
    assert await closed_reason(alice) == "mics.close.heartbeat_timeout"
    assert time.monotonic() - joined >= 1.0, "not closed before its timeout"


async def busy_until_silent_one_is_closed(tenant, call) -> None:
    """Call every CALL_EVERY_S until a silent session joined alongside is closed by the sweep."""
    silent = await tenant.user("silent")
    left = silent.left
    while not left.called:
        await call()
        await sleep(CALL_EVERY_S)
    assert await closed_reason(silent) == "mics.close.heartbeat_timeout"


@pytest_twisted.ensureDeferred
async def test_calls_keep_a_session_alive_past_the_timeout(make_tenant):
    tenant = await make_tenant(heartbeat_timeout_s=BUSY_TIMEOUT_S)
    alice = await tenant.user("alice")
    await busy_until_silent_one_is_closed(tenant, lambda: alice.call("mics.ping"))
    assert alice.is_attached()


@pytest_twisted.ensureDeferred
async def test_calls_to_tenant_procedures_count_as_activity(make_tenant):
    tenant = await make_tenant(heartbeat_timeout_s=BUSY_TIMEOUT_S)
    backend = await tenant.backend("backend-hb")
    await backend.register(lambda: "pong", "tenant.echo")
    alice = await tenant.user("alice")
    await busy_until_silent_one_is_closed(tenant, lambda: alice.call("tenant.echo"))
    assert alice.is_attached()


@pytest_twisted.ensureDeferred
async def test_backend_sessions_are_not_subject_to_the_heartbeat(make_tenant):
    tenant = await make_tenant(heartbeat_timeout_s=1)
    backend = await tenant.backend("backend-idle")
    silent = await tenant.user("silent")  # joined after the backend: closed once the sweep is past both
    assert await closed_reason(silent) == "mics.close.heartbeat_timeout"
    assert backend.is_attached()
