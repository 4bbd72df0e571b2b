"""Sends, copies, dedup, groups, receipts, signals and system messages (protocol.md sections 3, 4, 7)."""

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet.defer import gatherResults

ALICE_INBOX = "mics.inbox.alice"
BOB_INBOX = "mics.inbox.bob"


async def send_error(call) -> ApplicationError:
    with pytest.raises(ApplicationError) as err:
        await call
    return err.value


@pytest_twisted.ensureDeferred
async def test_message_carries_every_field_and_the_ack_its_sender_copy_seq(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice", "phone")
    bob = await tenant.user("bob")
    await bob.listen(BOB_INBOX)
    ack = await alice.call(
        "mics.message.send", to_user_id="bob", body={"t": "hi"}, client_msg_id="c-1", content_type="text/plain"
    )
    event = await bob.next_event(BOB_INBOX)
    assert set(ack) == {"msg_id", "status", "ts", "seq", "client_msg_id", "delivered"}
    assert ack["status"] == "SENT" and ack["delivered"] == "online" and ack["client_msg_id"] == "c-1"
    assert ack["seq"] == 1, "the sender's copy is the first message of alice's stream"
    assert event == {
        "msg_id": ack["msg_id"], "type": "chat", "tenant_id": tenant.tenant_id, "from_user_id": "alice",
        "from_device_id": "phone", "to_user_id": "bob", "body": {"t": "hi"}, "content_type": "text/plain",
        "client_msg_id": "c-1", "seq": 1, "ts": ack["ts"], "trace_id": event["trace_id"],
    }  # fmt: skip
    assert event["trace_id"]


@pytest_twisted.ensureDeferred
async def test_message_ids_are_unique_and_sortable_by_time(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    acks = [await alice.call("mics.message.send", to_user_id="bob", body=i) for i in range(20)]
    ids = [a["msg_id"] for a in acks]
    assert len(set(ids)) == 20 and ids == sorted(ids)


@pytest_twisted.ensureDeferred
async def test_senders_other_devices_get_a_copy_and_the_sending_device_does_not(make_tenant):
    tenant = await make_tenant()
    phone = await tenant.user("alice", "phone")
    laptop = await tenant.user("alice", "laptop")
    for device in (phone, laptop):
        await device.listen(ALICE_INBOX)
    ack = await phone.call("mics.message.send", to_user_id="bob", body="from phone")
    copy = await laptop.next_event(ALICE_INBOX)
    assert copy["msg_id"] == ack["msg_id"] and copy["from_device_id"] == "phone" and copy["seq"] == ack["seq"]
    assert await phone.no_event(ALICE_INBOX)


@pytest_twisted.ensureDeferred
async def test_every_device_of_the_recipient_receives_the_message(make_tenant):
    tenant = await make_tenant()
    bob_phone = await tenant.user("bob", "phone")
    bob_pc = await tenant.user("bob", "pc")
    carol = await tenant.user("carol")
    for s in (bob_phone, bob_pc):
        await s.listen(BOB_INBOX)
    await carol.listen("mics.inbox.carol")
    alice = await tenant.user("alice")
    ack = await alice.call("mics.message.send", to_user_id="bob", body="both")
    assert (await bob_phone.next_event(BOB_INBOX))["msg_id"] == ack["msg_id"]
    assert (await bob_pc.next_event(BOB_INBOX))["msg_id"] == ack["msg_id"]
    assert await carol.no_event("mics.inbox.carol")


@pytest_twisted.ensureDeferred
async def test_duplicate_client_msg_id_returns_the_first_ack_and_delivers_once(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    bob = await tenant.user("bob")
    await bob.listen(BOB_INBOX)
    first = await alice.call("mics.message.send", to_user_id="bob", body="once", client_msg_id="dup-1")
    again = await alice.call("mics.message.send", to_user_id="bob", body="once", client_msg_id="dup-1")
    assert again == first
    await bob.next_event(BOB_INBOX)
    assert await bob.no_event(BOB_INBOX)


@pytest_twisted.ensureDeferred
async def test_concurrent_duplicates_in_flight_share_one_send(make_tenant):
    tenant = await make_tenant()
    tenant.logic.check_delay = 0.05
    alice = await tenant.user("alice")
    acks = await gatherResults(
        [alice.call("mics.message.send", to_user_id="bob", body="x", client_msg_id="same") for _ in range(3)]
    )
    assert len({a["msg_id"] for a in acks}) == 1
    assert tenant.logic.calls["check_message"] == 1


@pytest_twisted.ensureDeferred
async def test_the_same_client_msg_id_from_another_user_is_a_new_message(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    carol = await tenant.user("carol")
    a = await alice.call("mics.message.send", to_user_id="bob", body="x", client_msg_id="shared")
    c = await carol.call("mics.message.send", to_user_id="bob", body="x", client_msg_id="shared")
    assert a["msg_id"] != c["msg_id"]


@pytest_twisted.ensureDeferred
async def test_a_rejected_send_may_be_retried_with_the_same_client_msg_id(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    err = await send_error(alice.call("mics.message.send", to_user_id="bob", body="forbidden", client_msg_id="r1"))
    assert err.error == "mics.error.rejected"
    ack = await alice.call("mics.message.send", to_user_id="bob", body="fine now", client_msg_id="r1")
    assert ack["status"] == "SENT"


@pytest.mark.parametrize(
    "kwargs",
    [
        {"body": "no recipient"},
        {"to_user_id": 42, "body": "x"},
        {"to_user_id": "", "body": "x"},
        {"to_user_id": "bad.user", "body": "x"},
        {"to_user_id": "has space", "body": "x"},
        {"to_user_id": "x" * 129, "body": "x"},
        {"to_user_id": "bob"},
        {"to_user_id": "bob", "body": None},
        {"to_user_id": "bob", "body": "x", "content_type": 5},
        {"to_user_id": "bob", "body": "x", "client_msg_id": ["not", "a", "string"]},
    ],
    ids=[
        "no-to",
        "to-int",
        "to-empty",
        "to-dot",
        "to-space",
        "to-long",
        "no-body",
        "body-null",
        "ctype-int",
        "cmid-list",
    ],
)
@pytest_twisted.ensureDeferred
async def test_invalid_send_arguments_fail_with_invalid_message(make_tenant, kwargs):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    err = await send_error(alice.call("mics.message.send", **kwargs))
    assert err.error == "mics.error.invalid_message"
    assert err.kwargs["code"] == 400 and err.kwargs["status"] == "FAILED" and err.kwargs["reason"]
    assert err.kwargs["message"]


@pytest_twisted.ensureDeferred
async def test_failed_send_echoes_the_client_msg_id(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    err = await send_error(alice.call("mics.message.send", to_user_id="bad.id", body="x", client_msg_id="c-9"))
    assert err.kwargs["client_msg_id"] == "c-9"


@pytest_twisted.ensureDeferred
async def test_body_over_max_payload_bytes_fails_with_payload_too_large(make_tenant):
    tenant = await make_tenant(max_payload_bytes=100)
    alice = await tenant.user("alice")
    bob = await tenant.user("bob")
    await bob.listen(BOB_INBOX)
    err = await send_error(alice.call("mics.message.send", to_user_id="bob", body={"t": "x" * 200}))
    assert err.error == "mics.error.payload_too_large" and err.kwargs["code"] == 413
    assert await bob.no_event(BOB_INBOX)
    ok = await alice.call("mics.message.send", to_user_id="bob", body={"t": "x" * 50})
    assert ok["status"] == "SENT"


@pytest_twisted.ensureDeferred
async def test_binary_bodies_are_measured_and_delivered_as_bytes(make_tenant):
    tenant = await make_tenant(max_payload_bytes=64)
    alice = await tenant.user("alice", serializer="msgpack")
    bob = await tenant.user("bob", serializer="msgpack")
    await bob.listen(BOB_INBOX)
    await alice.call("mics.message.send", to_user_id="bob", body=b"\x00\x01encrypted")
    assert (await bob.next_event(BOB_INBOX))["body"] == b"\x00\x01encrypted"
    err = await send_error(alice.call("mics.message.send", to_user_id="bob", body=b"\x00" * 65))
    assert err.error == "mics.error.payload_too_large"


@pytest_twisted.ensureDeferred
async def test_tenant_qps_over_budget_fails_with_rate_limited(make_tenant):
    tenant = await make_tenant(max_message_qps=3, check_message_hook=False)
    alice = await tenant.user("alice")
    results = await gatherResults(
        [alice.call("mics.message.send", to_user_id="bob", body=i).addErrback(lambda f: f.value) for i in range(6)]
    )
    limited = [r for r in results if isinstance(r, ApplicationError)]
    assert 1 <= len(limited) <= 3 and len(results) - len(limited) >= 3
    assert all(e.error == "mics.error.rate_limited" and e.kwargs["code"] == 429 for e in limited)


@pytest_twisted.ensureDeferred
async def test_one_tenants_flood_does_not_rate_limit_another(make_tenant):
    noisy = await make_tenant(max_message_qps=1, check_message_hook=False)
    quiet = await make_tenant(check_message_hook=False)
    a = await noisy.user("alice")
    b = await quiet.user("alice")
    for i in range(3):
        await a.call("mics.message.send", to_user_id="bob", body=i).addErrback(lambda f: None)
    assert (await b.call("mics.message.send", to_user_id="bob", body="ok"))["status"] == "SENT"


# -- groups -----------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_group_message_reaches_online_members_only(make_tenant):
    tenant = await make_tenant()
    tenant.logic.groups["g1"] = ["alice", "bob", "carol"]
    alice = await tenant.user("alice", "phone")
    alice_pc = await tenant.user("alice", "pc")
    bob = await tenant.user("bob")
    mallory = await tenant.user("mallory")
    for s in (alice, alice_pc, bob):
        await s.listen("mics.group.g1")
    await mallory.listen("mics.group.", match="prefix")
    ack = await alice.call("mics.group.send", group_id="g1", body="hello group")
    assert ack["recipients"] == 3 and ack["status"] == "SENT" and ack["delivered"] == "online"
    got = await bob.next_event("mics.group.g1")
    assert got["type"] == "group_chat" and got["group_id"] == "g1" and got["msg_id"] == ack["msg_id"]
    assert "seq" not in got, "group messages are not part of an inbox stream"
    assert (await alice_pc.next_event("mics.group.g1"))["msg_id"] == ack["msg_id"]
    assert await alice.no_event("mics.group.g1"), "the sending session gets no echo"
    assert await mallory.no_event("mics.group."), "a non-member subscribed by prefix receives nothing"


@pytest_twisted.ensureDeferred
async def test_group_members_are_asked_on_every_send(make_tenant):
    tenant = await make_tenant()
    tenant.logic.groups["g2"] = ["alice", "bob"]
    alice = await tenant.user("alice")
    bob = await tenant.user("bob")
    await bob.listen("mics.group.g2")
    await alice.call("mics.group.send", group_id="g2", body=1)
    await bob.next_event("mics.group.g2")
    tenant.logic.groups["g2"] = ["alice"]  # bob left the group
    await alice.call("mics.group.send", group_id="g2", body=2)
    assert tenant.logic.calls["group_members"] == 2
    assert await bob.no_event("mics.group.g2")


@pytest.mark.parametrize("hooks", ["wamp", "http"])
@pytest_twisted.ensureDeferred
async def test_group_without_members_fails_with_empty_group(make_tenant, hooks):
    tenant = await make_tenant(hooks=hooks)
    alice = await tenant.user("alice")
    err = await send_error(alice.call("mics.group.send", group_id="nobody", body="x", client_msg_id="g"))
    assert err.error == "mics.error.empty_group" and err.kwargs["code"] == 404
    assert err.kwargs["client_msg_id"] == "g" and err.kwargs["status"] == "FAILED"


@pytest.mark.parametrize("hooks", ["wamp", "http"])
@pytest.mark.parametrize("trouble", ["fail", "timeout"])
@pytest_twisted.ensureDeferred
async def test_group_members_hook_trouble_fails_with_hook_unavailable(make_tenant, hooks, trouble):
    tenant = await make_tenant(hooks=hooks, hook_timeout_ms=100)
    tenant.logic.groups["g"] = ["alice", "bob"]
    if trouble == "fail":
        tenant.logic.members_fail = True
    else:
        tenant.logic.members_delay = 0.4
    alice = await tenant.user("alice")
    err = await send_error(alice.call("mics.group.send", group_id="g", body="x"))
    assert err.error == "mics.error.hook_unavailable" and err.kwargs["code"] == 503


@pytest_twisted.ensureDeferred
async def test_group_send_rejected_by_the_check_hook_is_not_delivered(make_tenant):
    tenant = await make_tenant()
    tenant.logic.groups["g"] = ["alice", "bob"]
    alice = await tenant.user("alice")
    bob = await tenant.user("bob")
    await bob.listen("mics.group.g")
    err = await send_error(alice.call("mics.group.send", group_id="g", body="forbidden"))
    assert err.error == "mics.error.rejected"
    assert await bob.no_event("mics.group.g")


@pytest_twisted.ensureDeferred
async def test_invalid_group_id_fails_with_invalid_message(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    err = await send_error(alice.call("mics.group.send", group_id="a.b", body="x"))
    assert err.error == "mics.error.invalid_message"


@pytest_twisted.ensureDeferred
async def test_group_buffering_holds_the_message_for_offline_members(make_tenant):
    tenant = await make_tenant(group_buffering=True)
    tenant.logic.groups["g"] = ["alice", "bob"]
    alice = await tenant.user("alice")
    ack = await alice.call("mics.group.send", group_id="g", body="while you were away")
    assert ack["delivered"] == "buffered"
    bob = await tenant.user("bob")
    synced = await bob.call("mics.inbox.sync", since_seq=0)
    assert [m["msg_id"] for m in synced["messages"]] == [ack["msg_id"]]
    assert synced["messages"][0]["group_id"] == "g"


@pytest_twisted.ensureDeferred
async def test_group_messages_are_not_held_by_default(make_tenant):
    tenant = await make_tenant()
    tenant.logic.groups["g"] = ["alice", "bob"]
    alice = await tenant.user("alice")
    ack = await alice.call("mics.group.send", group_id="g", body="best effort")
    assert ack["delivered"] == "offline", "nobody else was online and nothing is held"
    bob = await tenant.user("bob")
    assert (await bob.call("mics.inbox.sync", since_seq=0))["messages"] == []


# -- receipts, signals, ping, presence ------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_receipt_reaches_the_original_sender(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    bob = await tenant.user("bob")
    await alice.listen(ALICE_INBOX)
    ack = await alice.call("mics.message.send", to_user_id="bob", body="read me")
    r = await bob.call("mics.message.receipt", to_user_id="alice", msg_ids=[ack["msg_id"]], kind="read")
    assert r["status"] == "SENT"
    got = await alice.next_event(ALICE_INBOX)
    assert got["type"] == "receipt" and got["body"] == {"msg_ids": [ack["msg_id"]], "kind": "read"}
    assert got["from_user_id"] == "bob" and got["seq"] == ack["seq"] + 1


@pytest.mark.parametrize(
    "kwargs",
    [
        {"msg_ids": [], "kind": "read"},
        {"msg_ids": "m1", "kind": "read"},
        {"msg_ids": ["m1"], "kind": "seen"},
        {"msg_ids": [1], "kind": "read"},
    ],
)
@pytest_twisted.ensureDeferred
async def test_invalid_receipts_fail_with_invalid_message(make_tenant, kwargs):
    tenant = await make_tenant()
    bob = await tenant.user("bob")
    err = await send_error(bob.call("mics.message.receipt", to_user_id="alice", **kwargs))
    assert err.error == "mics.error.invalid_message"


@pytest_twisted.ensureDeferred
async def test_signals_are_delivered_live_and_never_held(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    bob = await tenant.user("bob")
    await bob.listen(BOB_INBOX)
    ack = await alice.call("mics.signal.send", to_user_id="bob", body={"sdp": "offer"})
    got = await bob.next_event(BOB_INBOX)
    assert got["type"] == "signal" and got["body"] == {"sdp": "offer"} and "seq" not in got
    assert ack["delivered"] == "online" and "seq" not in ack
    assert (await bob.call("mics.inbox.sync", since_seq=0))["messages"] == []
    offline = await alice.call("mics.signal.send", to_user_id="nobody-online", body={"ice": 1})
    assert offline["delivered"] == "offline"


@pytest_twisted.ensureDeferred
async def test_ping_reports_time_and_heartbeat_timeout(make_tenant):
    tenant = await make_tenant(heartbeat_timeout_s=40)
    alice = await tenant.user("alice")
    pong = await alice.call("mics.ping")
    assert pong["heartbeat_timeout_s"] == 40 and isinstance(pong["ts"], int)


@pytest_twisted.ensureDeferred
async def test_presence_lists_online_users_and_their_devices(make_tenant):
    tenant = await make_tenant()
    await tenant.user("bob", "phone")
    await tenant.user("bob", "pc")
    alice = await tenant.user("alice")
    got = await alice.call("mics.presence.get", user_ids=["bob", "zed"])
    assert got == {"bob": {"online": True, "devices": ["pc", "phone"]}, "zed": {"online": False, "devices": []}}
    err = await send_error(alice.call("mics.presence.get", user_ids=[f"u{i}" for i in range(101)]))
    assert err.error == "mics.error.invalid_message"


# -- backend -------------------------------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_backend_sends_system_messages_as_a_chosen_sender(make_tenant):
    tenant = await make_tenant()
    backend = await tenant.backend("backend-sys")
    bob = await tenant.user("bob")
    await bob.listen(BOB_INBOX)
    ack = await backend.call("mics.message.send", to_user_id="bob", body={"notice": 1}, from_user_id="helpdesk")
    got = await bob.next_event(BOB_INBOX)
    assert got["type"] == "system" and got["from_user_id"] == "helpdesk" and got["from_device_id"] is None
    assert ack["seq"] == got["seq"]
    assert tenant.logic.calls["check_message"] == 0, "system sends skip the check-message hook"


@pytest_twisted.ensureDeferred
async def test_backend_lists_and_kicks_sessions_of_its_tenant(make_tenant):
    tenant = await make_tenant()
    backend = await tenant.backend("backend-ops")
    phone = await tenant.user("alice", "phone")
    pc = await tenant.user("alice", "pc")
    listed = await backend.call("mics.session.list", user_id="alice")
    assert sorted(s["device_id"] for s in listed["sessions"]) == ["pc", "phone"]
    assert all(s["node_id"] == tenant.node.node_id and s["online_at"] > 0 for s in listed["sessions"])
    assert (await backend.call("mics.session.kick", user_id="alice", device_id="phone")) == {"kicked": 1}
    assert (await phone.left).reason == "mics.close.kicked"
    assert pc.is_attached()


@pytest_twisted.ensureDeferred
async def test_member_change_notifies_online_members_with_a_system_message(make_tenant):
    tenant = await make_tenant()
    tenant.logic.groups["g"] = ["alice", "bob"]
    backend = await tenant.backend("backend-groups")
    alice = await tenant.user("alice")
    carol = await tenant.user("carol")
    for s in (alice, carol):
        await s.listen("mics.group.g")
    result = await backend.call("mics.group.members_changed", group_id="g", added=["carol"], removed=[])
    assert result["recipients"] == 3
    for s in (alice, carol):
        got = await s.next_event("mics.group.g")
        assert got["type"] == "system" and got["body"] == {"added": ["carol"], "removed": []}


@pytest_twisted.ensureDeferred
async def test_prefix_subscribers_learn_the_concrete_group_topic(make_tenant):
    from autobahn.wamp.types import SubscribeOptions
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred

    tenant = await make_tenant()
    tenant.logic.groups["g7"] = ["alice", "bob"]
    bob = await tenant.user("bob")
    got: Deferred = Deferred()
    await bob.subscribe(
        lambda details=None, **kw: got.callback((details.topic, kw["group_id"])),
        "mics.group.",
        options=SubscribeOptions(match="prefix", details_arg="details"),
    )
    alice = await tenant.user("alice")
    await alice.call("mics.group.send", group_id="g7", body="hi")
    got.addTimeout(5, reactor)
    assert await got == ("mics.group.g7", "g7")
