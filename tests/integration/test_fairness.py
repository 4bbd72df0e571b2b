"""Fair share on a real node: a tenant over its share is refused at the router's gate, before our
procedure runs, while another tenant's sends and the capped tenant's own sync still work.

The node runs with `fair_share_busy_pct: 0` (always saturated), so the real FairShare caps any
tenant sending more than MIN_CAPPED_RATE sends/s without having to saturate the test machine.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from checks import metric
from integration.conftest import TenantFactory
from twisted.internet import defer, reactor, task

from harness import Node, start_node
from mics import errors, uris
from mics.limits import MIN_CAPPED_RATE

OUT_OF_THE_WAY = {"max_user_message_qps": 100_000, "max_message_qps": 100_000}


def sleep(seconds: float) -> Any:
    return task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.async_yield_fixture()
async def saturated(tmp_path) -> AsyncIterator[tuple[Node, TenantFactory]]:
    node = start_node(tmp_path, "fair", node={"fair_share_busy_pct": 0})
    factory = TenantFactory(node)
    yield node, factory
    await factory.close()
    node.process.stop()


async def _outcomes(calls: list[defer.Deferred[Any]]) -> tuple[int, list[ApplicationError]]:
    """How many calls were answered, and the errors of the others."""
    results = await defer.DeferredList(calls, consumeErrors=True)
    failed = [r.value for ok, r in results if not ok]
    return len(results) - len(failed), failed


def _send_calls(node: Node, tenant_id: str) -> float:
    """How many times our mics.message.send procedure ran for the tenant (the gate's refusals never do)."""
    return metric(node, "mics_procedure_duration_seconds_count", tenant=tenant_id, procedure=uris.MESSAGE_SEND)


@pytest_twisted.ensureDeferred
async def test_a_capped_tenants_sends_are_refused_at_the_gate_while_another_tenant_and_its_sync_still_work(
    saturated,
):
    node, make_tenant = saturated
    noisy = await make_tenant(**OUT_OF_THE_WAY)
    quiet = await make_tenant(**OUT_OF_THE_WAY)
    flooder = await noisy.user("n1")
    await noisy.user("n2")
    alice = await quiet.user("alice")
    bob = await quiet.user("bob")
    await bob.listen("mics.inbox.bob")

    # over MIN_CAPPED_RATE for several ticks: the node (always "saturated") caps the noisy tenant
    refused: list[ApplicationError] = []
    for _ in range(12):
        calls = [flooder.call("mics.message.send", to_user_id="n2", body={"n": i}) for i in range(60)]
        refused += (await _outcomes(calls))[1]
        if refused:
            break
        await sleep(0.25)
    assert refused, "the noisy tenant was never capped"
    assert metric(node, "mics_fair_share_cap", tenant=noisy.tenant_id) >= MIN_CAPPED_RATE

    # a burst well over what its cap lets through: most are answered by the gate, not our procedure
    ran_before = _send_calls(node, noisy.tenant_id)
    calls = [flooder.call("mics.message.send", to_user_id="n2", body="x", client_msg_id=f"c{i}") for i in range(200)]
    accepted, failed = await _outcomes(calls)
    ran = _send_calls(node, noisy.tenant_id) - ran_before
    assert failed and all(e.error == errors.RATE_LIMITED.uri for e in failed)
    assert {e.kwargs["status"] for e in failed} == {"FAILED"} and all(e.kwargs["code"] == 429 for e in failed)
    assert all(e.kwargs["client_msg_id"].startswith("c") for e in failed), "the gate echoes client_msg_id"
    at_gate = len(failed) - (ran - accepted)
    assert at_gate > 0, f"every refusal went through our procedure ({len(failed)} refused, {ran} ran)"

    # the other tenant, within its share, is never refused; the capped tenant may still sync
    for n in range(5):
        ack = await alice.call("mics.message.send", to_user_id="bob", body={"n": n})
        assert (await bob.next_event("mics.inbox.bob"))["msg_id"] == ack["msg_id"]
    assert metric(node, "mics_fair_share_cap", tenant=quiet.tenant_id) == 0
    synced = await flooder.call("mics.inbox.sync")
    assert "messages" in synced
    ping = await flooder.call("mics.ping")
    assert "ts" in ping
