"""Batched check-message hook on a real node (tenant config hook_batch_max > 1), over WAMP and HTTP
(JSON and protobuf): concurrent sends are checked in batches, each sender gets its own message's
verdict, and the single check's policy holds per message."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet.defer import DeferredList

TRANSPORTS = [("wamp", "json"), ("http", "json"), ("http", "protobuf")]
BATCHED = {"hook_batch_max": 8, "hook_batch_wait_ms": 30}


async def _send_all(tenant: Any, bodies: dict[str, str]) -> dict[str, Any]:
    """Each user sends its body to bob at the same time; user -> Ack or the ApplicationError."""
    senders = {u: await tenant.user(u) for u in bodies}
    calls = [senders[u].call("mics.message.send", to_user_id="bob", body=b) for u, b in bodies.items()]
    results = await DeferredList(calls, consumeErrors=True)
    return {u: r if ok else r.value for u, (ok, r) in zip(bodies, results, strict=True)}


@pytest.mark.parametrize(("hooks", "encoding"), TRANSPORTS)
@pytest_twisted.ensureDeferred
async def test_concurrent_sends_are_checked_in_batches_and_each_sender_gets_its_own_verdict(
    make_tenant, hooks, encoding
):
    tenant = await make_tenant(hooks=hooks, encoding=encoding, **BATCHED)
    bob = await tenant.user("bob")
    await bob.listen("mics.inbox.bob")
    bodies = {f"u{i}": "forbidden word" if i % 3 == 0 else f"hello {i}" for i in range(6)}
    results = await _send_all(tenant, bodies)
    for user, body in bodies.items():
        if "forbidden" in body:
            assert isinstance(results[user], ApplicationError), user
            assert results[user].error == "mics.error.rejected"
            assert results[user].kwargs["reason"] == "contains a forbidden word"
        else:
            assert results[user]["status"] == "SENT", user
    got = sorted([(await bob.next_event("mics.inbox.bob"))["body"] for _ in range(4)])
    assert got == sorted(b for b in bodies.values() if "forbidden" not in b)
    assert await bob.no_event("mics.inbox.bob", 0.2), "no refused message was delivered"
    assert tenant.logic.calls["check_message"] == 6, "every message was checked"
    assert sum(tenant.logic.batches) == 6 and max(tenant.logic.batches) > 1, tenant.logic.batches
    if hooks == "http":
        paths = {path for path, _, _ in tenant.http.requests}
        assert "/hooks/check-messages" in paths and "/hooks/check-message" not in paths


@pytest.mark.parametrize(("hooks", "encoding"), TRANSPORTS[:2])
@pytest_twisted.ensureDeferred
async def test_a_backend_without_the_batch_hook_still_checks_every_message(make_tenant, hooks, encoding):
    tenant = await make_tenant(hooks=hooks, encoding=encoding, batch_hook=False, **BATCHED)
    await (await tenant.user("bob")).listen("mics.inbox.bob")
    results = await _send_all(tenant, {"alice": "forbidden word", "carol": "fine"})
    assert isinstance(results["alice"], ApplicationError) and results["alice"].error == "mics.error.rejected"
    assert results["carol"]["status"] == "SENT"
    assert tenant.logic.calls["check_message"] == 2 and tenant.logic.calls["check_messages"] == 0


@pytest.mark.parametrize(("hooks", "encoding"), TRANSPORTS[:2])
@pytest_twisted.ensureDeferred
async def test_a_failing_batch_hook_degrades_each_message_to_allow(make_tenant, hooks, encoding):
    tenant = await make_tenant(hooks=hooks, encoding=encoding, **BATCHED)
    tenant.logic.check_fail = True
    bob = await tenant.user("bob")
    await bob.listen("mics.inbox.bob")
    results = await _send_all(tenant, {"alice": "forbidden but unchecked", "carol": "hi"})
    assert results["alice"]["status"] == "SENT" and results["carol"]["status"] == "SENT", results
    assert {(await bob.next_event("mics.inbox.bob"))["body"] for _ in range(2)} == {"forbidden but unchecked", "hi"}
    assert tenant.logic.calls["check_messages"] >= 1


@pytest_twisted.ensureDeferred
async def test_a_slow_batch_times_out_and_its_messages_are_allowed(make_tenant):
    tenant = await make_tenant(hook_timeout_ms=50, **BATCHED)
    tenant.logic.check_delay = 0.5
    bob = await tenant.user("bob")
    await bob.listen("mics.inbox.bob")
    results = await _send_all(tenant, {"alice": "forbidden but late", "carol": "hi"})
    assert results["alice"]["status"] == "SENT" and results["carol"]["status"] == "SENT"


@pytest_twisted.ensureDeferred
async def test_batching_can_be_turned_on_and_off_live(make_tenant):
    tenant = await make_tenant()
    await (await tenant.user("bob")).listen("mics.inbox.bob")
    await _send_all(tenant, {"alice": "a", "carol": "b"})
    assert tenant.logic.calls["check_messages"] == 0
    await tenant.configure(**BATCHED)
    results = await _send_all(tenant, {"dave": "forbidden word", "erin": "b"})
    assert isinstance(results["dave"], ApplicationError) and results["erin"]["status"] == "SENT"
    assert tenant.logic.batches == [2]
    await tenant.configure(hook_batch_max=1)
    await _send_all(tenant, {"frank": "c"})
    assert tenant.logic.batches == [2] and tenant.logic.calls["check_message"] == 5


@pytest_twisted.ensureDeferred
async def test_the_batch_hook_fields_are_validated(make_tenant):
    tenant = await make_tenant()
    for bad in ({"hook_batch_max": 0}, {"hook_batch_max": 1001}, {"hook_batch_wait_ms": -1},
                {"hook_batch_wait_ms": 1001}, {"hook_batch_max": "8"}):  # fmt: skip
        with pytest.raises(ApplicationError) as err:
            await tenant.configure(**bad)
        assert err.value.error == "mics.error.invalid_config", bad
