"""The Python client SDK (Twisted flavour, plus the asyncio flavour in a subprocess) against a real node."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

import pytest
import pytest_twisted
from checks import NEAR_MAX_BODY, fill_inbox
from sdk_devices import Device, Devices
from twisted.internet import reactor
from twisted.internet.utils import getProcessOutputAndValue

from harness import ROOT
from mics_client import errors
from mics_client.twisted import MicsClient
from wamp_clients import JoinRefused, sleep

# -- connect, send, receive --------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_chat_message_reaches_the_other_user_with_its_ack(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant()
    alice = await device(tenant, "alice")
    bob = await device(tenant, "bob")
    assert alice.client.welcome is not None and alice.client.welcome.user_id == "alice"
    assert alice.client.welcome.heartbeat_timeout_s > 0

    ack = await alice.client.send("bob", {"text": "hi"}, client_msg_id="c1", content_type="text/plain")
    got = await bob.next_message()

    assert (ack.status, ack.client_msg_id, ack.delivered) == ("SENT", "c1", "online")
    assert (got.msg_id, got.type, got.from_user_id, got.body) == (ack.msg_id, "chat", "alice", {"text": "hi"})
    assert got.content_type == "text/plain" and got.from_device_id == "d1" and not got.replayed
    assert not alice.messages  # the sending device does not get its own message back


@pytest_twisted.ensureDeferred
async def test_a_send_from_one_device_is_copied_to_the_users_other_device(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant()
    phone = await device(tenant, "alice", "phone")
    laptop = await device(tenant, "alice", "laptop")
    await device(tenant, "bob")

    ack = await phone.client.send("bob", "from my phone")
    copy = await laptop.next_message()

    assert (copy.msg_id, copy.to_user_id, copy.from_device_id) == (ack.msg_id, "bob", "phone")


@pytest_twisted.ensureDeferred
async def test_every_serializer_carries_a_message(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant()
    bob = await device(tenant, "bob")
    for serializer in ("json", "msgpack", "cbor"):
        sender = await device(tenant, f"alice{serializer}", serializer=serializer)
        ack = await sender.client.send("bob", {"via": serializer})
        got = await bob.next_message()
        assert (got.msg_id, got.body) == (ack.msg_id, {"via": serializer})


@pytest_twisted.ensureDeferred
async def test_group_messages_reach_members_subscribed_by_prefix_or_by_name(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant()
    tenant.logic.groups["team"] = ["alice", "bob", "carol"]
    alice = await device(tenant, "alice")
    bob = await device(tenant, "bob")
    carol = await device(tenant, "carol")
    mallory = await device(tenant, "mallory")
    await bob.client.subscribe_groups()
    await carol.client.subscribe_group("team")
    await mallory.client.subscribe_groups()

    ack = await alice.client.send_group("team", {"text": "standup"})
    to_bob, to_carol = await bob.next_message(), await carol.next_message()

    assert ack.recipients == 3
    assert to_bob.msg_id == to_carol.msg_id == ack.msg_id
    assert (to_bob.type, to_bob.group_id, to_bob.body) == ("group_chat", "team", {"text": "standup"})
    await alice.client.send("mallory", "after the group message")
    assert (await mallory.next_message()).body == "after the group message"  # and nothing from the group before it


@pytest_twisted.ensureDeferred
async def test_receipts_and_signals_arrive_as_typed_messages(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant()
    alice = await device(tenant, "alice")
    bob = await device(tenant, "bob")
    ack = await alice.client.send("bob", "hello")
    await bob.next_message()

    await bob.client.receipt("alice", [ack.msg_id], "read")
    receipt = await alice.next_message()
    await bob.client.signal("alice", {"sdp": "offer"})
    signal = await alice.next_message()

    assert (receipt.type, receipt.body) == ("receipt", {"msg_ids": [ack.msg_id], "kind": "read"})
    assert receipt.is_receipt
    assert (signal.type, signal.body, signal.seq) == ("signal", {"sdp": "offer"}, None)


@pytest_twisted.ensureDeferred
async def test_presence_and_ping_answer(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant()
    alice = await device(tenant, "alice", "laptop")

    presence = await alice.client.presence(["alice", "nobody"])
    pong = await alice.client.ping()

    assert presence["alice"].online and presence["alice"].devices == ["laptop"]
    assert not presence["nobody"].online
    assert pong["ts"] > 0 and pong["heartbeat_timeout_s"] == alice.client.welcome.heartbeat_timeout_s  # type: ignore[union-attr]


# -- sync and reconnect -----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_messages_held_while_offline_are_delivered_by_the_sync_on_connect(
    make_tenant: Any, device: Devices
) -> None:
    tenant = await make_tenant()
    alice = await device(tenant, "alice")
    first = await alice.client.send("bob", "one")
    second = await alice.client.send("bob", "two")

    bob = await device(tenant, "bob")
    got = [await bob.next_message(), await bob.next_message()]

    assert [m.msg_id for m in got] == [first.msg_id, second.msg_id]
    assert all(m.replayed for m in got)
    assert bob.client.last_seq == got[-1].seq and bob.client.epoch


@pytest_twisted.ensureDeferred
async def test_a_dropped_connection_reconnects_and_syncs_what_it_missed_once(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant()
    alice = await device(tenant, "alice")
    bob = await device(tenant, "bob", backoff_initial_s=0.05)
    before = await alice.client.send("bob", "before")
    assert (await bob.next_message()).msg_id == before.msg_id

    reconnected = bob.next_connect()
    bob.client._session._transport.dropConnection(abort=True)
    missed = await alice.client.send("bob", "while away")
    await reconnected
    got = await bob.next_message()
    after = await alice.client.send("bob", "after")

    assert (got.msg_id, got.body) == (missed.msg_id, "while away")
    assert (await bob.next_message()).msg_id == after.msg_id  # "while away" came once, nothing else in between
    assert bob.client.is_connected and bob.connects == 2 and not bob.closes


@pytest_twisted.ensureDeferred
async def test_a_call_in_flight_when_the_connection_drops_fails_with_not_connected_and_never_hangs(
    make_tenant: Any, device: Devices
) -> None:
    tenant = await make_tenant()
    tenant.logic.check_delay = 0.1  # the send is still waiting for the check hook when the line drops
    alice = await device(tenant, "alice", backoff_initial_s=0.05)
    in_flight = alice.client.send("bob", "x", client_msg_id="retry-me")
    alice.client._session._transport.dropConnection(abort=True)
    in_flight.addTimeout(3, reactor)
    with pytest.raises(errors.NotConnected):
        await in_flight
    await alice.next_connect()
    ack = await alice.client.send("bob", "x", client_msg_id="retry-me")  # the retry gets the first Ack
    assert ack.msg_id and ack.client_msg_id == "retry-me"


@pytest_twisted.ensureDeferred
async def test_a_sync_with_a_lost_stream_reports_a_gap(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant()
    alice = await device(tenant, "alice")
    alice.client.epoch = "an-epoch-the-router-never-had"
    alice.client.last_seq = 7

    result = await alice.client.sync()

    assert not result.complete
    assert alice.gaps[-1].since_seq == 7 and alice.gaps[-1].epoch == result.epoch != "an-epoch-the-router-never-had"
    assert alice.client.last_seq == result.last_seq


@pytest_twisted.ensureDeferred
async def test_one_sync_catches_up_an_inbox_held_over_many_pages_in_order(make_tenant: Any, device: Devices) -> None:
    """A hostile sender's 40 near-max messages need 40 sync pages; the SDK fetches them all, in order,
    and live messages sent meanwhile come after them."""
    tenant = await make_tenant(max_payload_bytes=512 * 1024, max_user_message_qps=1000)
    sent = await fill_inbox(await tenant.user("mallory"), "bob", 40)
    bob = await device(tenant, "bob")  # connect() syncs
    got = [await bob.next_message() for _ in sent]
    assert [m.msg_id for m in got] == sent and [m.seq for m in got] == list(range(1, 41))
    assert all(m.replayed and m.body == NEAR_MAX_BODY for m in got) and not bob.gaps
    assert bob.client.last_seq == 40
    alice = await device(tenant, "alice")
    live = await alice.client.send("bob", "after")
    assert (await bob.next_message()).msg_id == live.msg_id
    assert (await bob.client.sync()).messages == [] and bob.client.last_seq == 41


@pytest_twisted.ensureDeferred
async def test_a_kick_is_final_and_reported_to_on_close(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant()
    alice = await device(tenant, "alice", backoff_initial_s=0.05)

    await tenant.admin.call("mics.admin.session.kick", tenant_id=tenant.tenant_id, user_id="alice")
    reason, _ = await alice.next_close()

    assert reason == "mics.close.kicked" and errors.code_of(reason) == 4000
    assert alice.client.state == "closed" and alice.connects == 1
    with pytest.raises(errors.NotConnected):
        await alice.client.send("bob", "after the kick")


@pytest_twisted.ensureDeferred
async def test_close_ends_the_client_without_reconnecting(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant()
    alice = await device(tenant, "alice")

    await alice.client.close()

    assert await alice.next_close() == ("wamp.close.normal", "closed by the client")
    assert alice.client.state == "closed"


@pytest_twisted.ensureDeferred
async def test_the_heartbeat_keeps_an_idle_session_alive_past_the_timeout(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant(heartbeat_timeout_s=2)
    alice = await device(tenant, "alice")
    silent = await tenant.user("silent")  # a plain WAMP session that never calls anything

    left = await silent.left.addTimeout(10, reactor)

    assert left.reason == "mics.close.heartbeat_timeout"
    assert alice.client.is_connected and alice.connects == 1 and not alice.closes
    assert (await alice.client.ping())["heartbeat_timeout_s"] == 2


# -- typed errors --------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_join_refusals_raise_typed_errors_with_codes(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant(max_connections_per_user=1)
    await device(tenant, "alice", "d1")
    cases: list[tuple[Any, str, str, type[errors.MicsError], int]] = [
        (tenant, "bad-token", "d1", errors.InvalidToken, 4001),
        ("no-such-tenant-xyz", "tok-alice", "d1", errors.InvalidTenant, 4002),
        (tenant, "tok-alice", "d2", errors.ConnectionLimit, 4429),
    ]
    for where, token, device_id, cls, code in cases:
        with pytest.raises(cls) as info:
            await device(where, "x", device_id, token=token)
        assert (info.value.code, info.value.uri) == (code, cls.uri)
    tenant.logic.auth_fail = True
    with pytest.raises(errors.HookUnavailable) as hook:
        await device(tenant, "bob")
    assert hook.value.code == 4503


@pytest_twisted.ensureDeferred
async def test_rejected_sends_raise_typed_errors_with_codes_and_kwargs(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant(max_payload_bytes=64)
    tenant.logic.groups["nobody"] = []
    alice = await device(tenant, "alice")
    client = alice.client

    cases = [
        (client.send("", "no recipient", client_msg_id="m1"), errors.InvalidMessage, 400),
        (client.send("bob", "x" * 100), errors.PayloadTooLarge, 413),
        (client.send("bob", "a forbidden word"), errors.Rejected, 403),
        (client.send_group("nobody", "hello?"), errors.EmptyGroup, 404),
        (client.call("mics.admin.tenant.list"), errors.NotAuthorized, 403),
    ]
    for call, cls, code in cases:
        with pytest.raises(cls) as info:
            await call
        assert info.value.code == code and info.value.uri == cls.uri
    with pytest.raises(errors.InvalidMessage) as invalid:
        await client.send("", "again", client_msg_id="m2")
    with pytest.raises(errors.Rejected) as rejected:
        await client.send("bob", "forbidden")
    assert invalid.value.client_msg_id == "m2" and invalid.value.kwargs["status"] == "FAILED"
    assert rejected.value.reason == "contains a forbidden word"


@pytest_twisted.ensureDeferred
async def test_rate_limit_members_hook_failure_and_presence_policy_raise_typed_errors(
    make_tenant: Any, device: Devices
) -> None:
    tenant = await make_tenant(max_message_qps=1, presence_queries=False)
    tenant.logic.members_fail = True
    alice = await device(tenant, "alice")

    with pytest.raises(errors.HookUnavailable) as hook:
        await alice.client.send_group("team", "hi")
    with pytest.raises(errors.NotAuthorized):
        await alice.client.presence(["bob"])
    with pytest.raises(errors.RateLimited) as limited:
        for n in range(20):
            await alice.client.send("bob", n)

    assert hook.value.code == 503 and limited.value.code == 429


# -- asyncio flavour ----------------------------------------------------------------------------------------

ASYNCIO_SCRIPT = r"""
import asyncio, json, sys
from mics_client.asyncio import connect
from mics_client import errors

async def main(url, tenant):
    out = {}
    try:
        await connect(url, tenant, "nope", "d1")
    except errors.InvalidToken as e:
        out["bad_token"] = [e.uri, e.code]
    got = asyncio.get_running_loop().create_future()
    carol = await connect(url, tenant, "tok-carol", "py-asyncio", reconnect=False,
                          on_message=lambda m: got.done() or got.set_result(m))
    held = await asyncio.wait_for(got, 5)          # sent before carol connected: arrives by sync
    out["held"] = [held.body, held.replayed]
    ack = await carol.send("alice", {"from": "asyncio"})
    out["ack"] = [ack.status, ack.msg_id]
    result = await carol.sync()
    out["sync"] = [len(result.messages), result.last_seq == carol.last_seq, result.complete]
    await carol.close()
    out["state"] = carol.state
    print(json.dumps(out))

asyncio.run(main(sys.argv[1], sys.argv[2]))
"""


@pytest_twisted.ensureDeferred
async def test_the_asyncio_flavour_connects_syncs_sends_and_receives(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant()
    alice = await device(tenant, "alice")
    held = await alice.client.send("carol", "held for carol")

    out, err, code = await getProcessOutputAndValue(
        sys.executable, ["-c", ASYNCIO_SCRIPT, alice.client.url, tenant.tenant_id], env=dict(os.environ), path=str(ROOT)
    )
    assert code == 0, err.decode()
    result = json.loads(out.decode().strip().splitlines()[-1])
    got = await alice.next_message()

    assert result["bad_token"] == ["mics.error.invalid_token", 4001]
    assert result["held"] == ["held for carol", True] and held.msg_id
    assert result["ack"][0] == "SENT" and (got.msg_id, got.body) == (result["ack"][1], {"from": "asyncio"})
    assert result["sync"] == [0, True, True]
    assert result["state"] == "closed"


def test_join_refused_helper_is_not_used_by_the_sdk() -> None:
    """The SDK raises its own typed errors, never the test helper's JoinRefused."""
    assert not issubclass(errors.InvalidToken, JoinRefused)


@pytest_twisted.ensureDeferred
async def test_a_live_message_lost_in_transit_is_fetched_by_a_gap_sync(make_tenant: Any, device: Devices) -> None:
    """In a cluster a forwarded delivery can be lost: the next live message shows the skipped seq, is
    held, and the SDK syncs the missing one, then delivers both in order (here the client drops the
    first live event itself)."""
    tenant = await make_tenant()
    alice = await device(tenant, "alice")
    client = MicsClient(device.url, tenant.tenant_id, "tok-bob", "d1", gap_wait_s=0.1)
    live, dropped = client._on_inbox_event, []

    def lossy(*args: Any, **kwargs: Any) -> None:
        if not dropped:
            dropped.append(kwargs["msg_id"])
            return
        live(*args, **kwargs)

    client._on_inbox_event = lossy  # type: ignore[method-assign]
    bob = Device(client)
    await client.connect()
    device.devices.append(bob)

    first = await alice.client.send("bob", "lost on the way")
    await alice.client.send("bob", "arrives")
    got = [await bob.next_message(), await bob.next_message()]

    assert dropped == [first.msg_id]
    assert [m.body for m in got] == ["lost on the way", "arrives"], "in seq order"
    assert got[0].replayed
    assert not bob.gaps and client.last_seq == 2


@pytest_twisted.ensureDeferred
async def test_a_devices_own_sends_take_inbox_seqs_without_looking_like_gaps(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant()
    alice = await device(tenant, "alice")
    phone = await device(tenant, "bob", "phone", gap_wait_s=0.05)
    await device(tenant, "bob", "laptop")
    syncs: list[int | None] = []
    original = phone.client.sync

    async def counting(since: int | None = None) -> Any:
        syncs.append(since)
        return await original(since)

    phone.client.sync = counting  # type: ignore[method-assign]
    ack = await phone.client.send("alice", "from the phone")  # its copy's seq goes to the laptop only
    await alice.client.send("bob", "reply")
    reply = await phone.next_message()
    await sleep(0.2)
    assert reply.seq == (ack.seq or 0) + 1 and syncs == []
