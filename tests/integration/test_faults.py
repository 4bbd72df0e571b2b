"""Faults against real processes: hooks down, slow or answering garbage (both transports), a client
killed in the middle of its sends, a node SIGKILLed in a cluster. Each fault has its documented
outcome, nothing acknowledged is lost, and the tenant works again once the fault is gone.

(Also fault tests, elsewhere: a Redis restart in test_cluster.py, Kafka down and back in
test_events_kafka.py, a slow consumer in test_abuse.py.)
"""

from __future__ import annotations

import os
import signal
import socket
import struct
import time
from collections import Counter
from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from checks import RUN_COUNTS, control_pair, in_thread, sync_pages
from raw_ws import open_websocket

from harness import ADMIN_SECRET, start_node
from hook_servers import HookLogic, HttpHookServer, wamp_backend
from wamp_clients import JoinRefused, TestSession, admin, sleep, user

COUNTS = RUN_COUNTS["faults"]
HOOK_POLICY = {"hook_timeout_ms": 100, "hook_auth_timeout_ms": 300, "hook_breaker_open_ms": 200}


async def outcomes(tenant: Any, bob: TestSession, alice: TestSession) -> dict[str, str]:
    """What a join, a send (check-message hook) and a group send (group-members hook) give now."""
    seen: dict[str, str] = {}
    try:
        session = await tenant.user("newcomer")
        seen["join"] = "joined"
        await session.close()
    except JoinRefused as e:
        seen["join"] = e.reason
    ack = await alice.call("mics.message.send", to_user_id="bob", body="through the fault")
    got = await bob.next_event("mics.inbox.bob")
    seen["send"] = "delivered" if got["msg_id"] == ack["msg_id"] else "lost"
    try:
        await alice.call("mics.group.send", group_id="g1", body="to the group")
        seen["group send"] = "sent"
    except ApplicationError as e:
        seen["group send"] = str(e.error)
    return seen


@pytest.mark.parametrize("transport", ["wamp", "http"])
@pytest_twisted.ensureDeferred
async def test_a_hook_that_is_down_slow_or_answers_garbage_gives_the_documented_outcome_and_recovers(
    make_tenant, transport
):
    tenant = await make_tenant(hooks=transport, **HOOK_POLICY)
    tenant.logic.groups["g1"] = ["alice", "bob"]
    alice, bob = await tenant.user("alice"), await tenant.user("bob")
    await bob.listen("mics.inbox.bob")
    unavailable = "mics.error.hook_unavailable"
    documented = {"join": unavailable, "send": "delivered", "group send": unavailable}  # send: the check degrades
    healthy = {"join": "joined", "send": "delivered", "group send": "sent"}
    seen: dict[str, dict[str, str]] = {}

    for fault in ("down", "slow", "garbage"):
        if fault == "down":
            await _hook_down(tenant)
        elif fault == "slow":
            tenant.logic.auth_delay = tenant.logic.check_delay = tenant.logic.members_delay = 1.0
        else:
            tenant.logic.garbage = True
        seen[fault] = await outcomes(tenant, bob, alice)
        if fault == "down":
            await _hook_up(tenant)
        tenant.logic.auth_delay = tenant.logic.check_delay = tenant.logic.members_delay = 0.0
        tenant.logic.garbage = False
        await sleep(0.3)  # the breaker's open time
        seen[f"after {fault}"] = await outcomes(tenant, bob, alice)

    COUNTS["hook faults"] += 3
    COUNTS["control messages"] += 6 + await control_pair(tenant, tag=f"hook-{transport}")
    assert seen == {"down": documented, "slow": documented, "garbage": documented, "after down": healthy,
                    "after slow": healthy, "after garbage": healthy}  # fmt: skip


async def _hook_down(tenant: Any) -> None:
    if tenant.http is not None:
        await tenant.http.stop()
        return
    hook_backend = next(s for s in tenant.sessions if s.welcome and s.welcome.authid == "backend")
    await hook_backend.close()
    tenant.sessions.remove(hook_backend)


async def _hook_up(tenant: Any) -> None:
    if tenant.http is not None:
        tenant.http = HttpHookServer(tenant.secret, tenant.logic, "json")
        await tenant.configure(hook_base_url=tenant.http.base_url)
        return
    tenant.sessions.append(await wamp_backend(tenant.node.url, tenant.tenant_id, tenant.secret, tenant.logic))


# -- a client killed mid-send ---------------------------------------------------------------------


def _pipeline_then_die(port: int, tenant_id: str, count: int, cut_frame: bool) -> None:
    """Join, write `count` sends without reading a single answer, maybe half a frame more, then
    reset the connection (SO_LINGER 0): what the router sees when a client process is killed."""
    ws = open_websocket(port)
    assert ws.join(tenant_id, ticket="tok-alice", device_id="doomed")[0] == 2
    for n in range(count):
        ws.call(n + 1, "mics.message.send", {"to_user_id": "bob", "body": {"n": n}, "client_msg_id": f"k{n}"})
    if cut_frame:  # a frame header announcing 200 bytes, and 100 of them
        ws.send_raw(bytes([0x81, 0x80 | 126]) + struct.pack("!H", 200) + b"\x00" * 4 + b"[48, 999, {}, " + b" " * 86)
    ws.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    ws.close()


@pytest.mark.parametrize("cut_frame", [False, True], ids=["between frames", "inside a frame"])
@pytest_twisted.ensureDeferred
async def test_a_client_killed_mid_send_leaves_each_message_delivered_at_most_once_and_a_retry_delivers_the_rest(
    make_tenant, cut_frame
):
    tenant = await make_tenant(max_user_message_qps=100_000)  # a burst from one user
    bob = await tenant.user("bob")
    await bob.listen("mics.inbox.bob")
    count = 50

    await in_thread(_pipeline_then_die, tenant.node.port, tenant.tenant_id, count, cut_frame)
    await sleep(1.0)
    first = [e["client_msg_id"] for e in _drain(bob, "mics.inbox.bob")]
    alice = await tenant.user("alice", "retry")  # the restarted client sends everything again
    acks = [await alice.call("mics.message.send", to_user_id="bob", body={"n": n}, client_msg_id=f"k{n}")
            for n in range(count)]  # fmt: skip
    await sleep(0.5)
    second = [e["client_msg_id"] for e in _drain(bob, "mics.inbox.bob")]

    delivered = Counter(first + second)
    lost = count - len(delivered)
    COUNTS["clients killed mid-send"] += 1
    COUNTS["messages checked"] += count
    COUNTS["lost"] += lost
    assert set(delivered) == {f"k{n}" for n in range(count)} and lost == 0
    assert max(delivered.values()) == 1, "a message was delivered twice"
    assert len({a["msg_id"] for a in acks}) == count
    COUNTS["control messages"] += await control_pair(tenant)


def _drain(session: TestSession, topic: str) -> list[dict[str, Any]]:
    events = list(session.events[topic])
    session.events[topic].clear()
    return events


# -- a node SIGKILLed in a cluster -----------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_every_message_acknowledged_while_a_cluster_node_is_sigkilled_reaches_its_recipient_once(
    tmp_path, redis_url
):
    env = {"MICS_REDIS_URL": redis_url}
    survivor = start_node(tmp_path, "survivor", env=env)
    doomed = start_node(tmp_path, "doomed", env=env)
    secret = "secret-sigkill-0123456789"
    logic = HookLogic()
    hooks = HttpHookServer(secret, logic, "json")
    sessions: list[TestSession] = []
    try:
        adm = await admin(survivor.url, ADMIN_SECRET)
        sessions.append(adm)
        tenant_id = f"kill{os.getpid() % 10000}"
        config = {"secret": secret, "hook_transport": "http", "hook_base_url": hooks.base_url,
                  "max_user_message_qps": 100_000}  # fmt: skip
        await adm.call("mics.admin.tenant.upsert", tenant_id=tenant_id, config=config)
        alice = await user(survivor.url, tenant_id, "tok-alice", "d1")
        carol = await user(survivor.url, tenant_id, "tok-carol", "d1")
        bob = await user(doomed.url, tenant_id, "tok-bob", "d1")
        sessions += [alice, carol, bob]
        for session, uid in ((carol, "carol"), (bob, "bob")):
            await session.listen(f"mics.inbox.{uid}")
        await sleep(0.5)  # presence settles through Redis

        acks: dict[str, list[str]] = {"bob": [], "carol": []}
        killed_at = None
        started = time.monotonic()
        n = 0
        while time.monotonic() - started < 9.0:  # sends before, during and after the kill and the reaping
            for to in ("bob", "carol"):
                ack = await alice.call("mics.message.send", to_user_id=to, body={"n": n})
                acks[to].append(ack["msg_id"])
            n += 1
            if killed_at is None and n == 20:
                os.killpg(doomed.process.proc.pid, signal.SIGKILL)
                doomed.process.proc.wait(5)
                killed_at = n
            await sleep(0.05)

        live_bob = [e["msg_id"] for e in bob.events["mics.inbox.bob"]]
        bob_again = await user(survivor.url, tenant_id, "tok-bob", "d2")  # bob's other device, on the survivor
        sessions.append(bob_again)
        synced = [m["msg_id"] for m in (await sync_pages(bob_again, strict=False))[0]]
        live_carol = [(await carol.next_event("mics.inbox.carol"))["msg_id"] for _ in acks["carol"]]
    finally:
        for session in reversed(sessions):
            await session.close()
        await hooks.stop()
        doomed.process.stop()
        survivor.process.stop()

    lost = len(set(acks["bob"]) - set(synced)) + len(set(acks["carol"]) - set(live_carol))
    COUNTS["nodes killed"] += 1
    COUNTS["messages checked"] += len(acks["bob"]) + len(acks["carol"])
    COUNTS["lost"] += lost
    assert killed_at == 20 and len(acks["bob"]) > 40
    assert synced == acks["bob"], "every message acknowledged for bob is held for him, in order, once"
    assert live_bob == acks["bob"][: len(live_bob)]  # what reached the dead node's device before it died
    assert live_carol == acks["carol"] and lost == 0
