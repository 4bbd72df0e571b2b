"""The send service with no node: a tenant runtime on the memory engine, a recording realm port
and hooks answered in process. The same pipeline the WAMP adapter calls on a real node."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from fakes import RecordingSink, online, system
from twisted.internet import defer

from mics import errors, uris
from mics.errors import MicsError, SendFailed
from mics.events import Event
from mics.requests import (
    EditRequest,
    GroupSendRequest,
    RecallRequest,
    ReceiptRequest,
    SendRequest,
    SignalRequest,
    SyncRequest,
)
from mics.tenants import TenantRuntime
from mics.types import Sender


def send(**kwargs: Any) -> SendRequest:
    return SendRequest.parse((), kwargs)


@pytest_twisted.ensureDeferred
async def test_a_send_is_held_delivered_with_its_seq_and_copied_to_the_senders_other_devices(make_runtime):
    runtime, port, sink = make_runtime()
    phone = online(runtime, "alice", "phone")
    online(runtime, "alice", "laptop")
    online(runtime, "bob")
    ack = await runtime.service.send(phone, send(to_user_id="bob", body={"t": "hi"}, client_msg_id="c1"))
    assert ack["status"] == "SENT" and ack["delivered"] == "online" and ack["seq"] == 1
    [to_bob] = port.to("bob")
    assert to_bob["seq"] == 1 and to_bob["body"] == {"t": "hi"} and to_bob["from_device_id"] == "phone"
    [copy] = [d for d in port.delivered if d[0] == uris.inbox_topic("alice")]
    assert copy[1] == ("alice",) and copy[2] == phone.session_id, "the sending device is excluded"
    assert copy[3]["seq"] == ack["seq"] and copy[3]["msg_id"] == ack["msg_id"]
    held = await runtime.service.sync(Sender("bob", "d1", 1, False), SyncRequest())
    assert [m["msg_id"] for m in held["messages"]] == [ack["msg_id"]] and held["complete"]
    runtime.events.drain()
    [event] = [e for e in sink.events if e.event_type != "CONNECT_ONLINE"]
    assert event.event_type == "SINGLE_CHAT_MSG" and event.msg_id == ack["msg_id"] and event.to_user_id == "bob"


@pytest_twisted.ensureDeferred
async def test_a_send_to_an_offline_user_is_buffered_and_found_by_sync(make_runtime):
    runtime, port, _ = make_runtime()
    alice = online(runtime, "alice")
    ack = await runtime.service.send(alice, send(to_user_id="bob", body="later"))
    assert ack["delivered"] == "buffered" and port.to("bob") == []
    result = await runtime.service.sync(Sender("bob", "d1", 1, False), SyncRequest())
    assert [m["body"] for m in result["messages"]] == ["later"] and result["messages"][0]["seq"] == 1


@pytest_twisted.ensureDeferred
async def test_a_note_to_self_takes_one_seq_and_skips_the_sending_device(make_runtime):
    runtime, port, _ = make_runtime()
    phone = online(runtime, "alice", "phone")
    online(runtime, "alice", "laptop")
    ack = await runtime.service.send(phone, send(to_user_id="alice", body="note"))
    assert ack["seq"] == 1
    [(topic, _ids, exclude, kwargs)] = port.delivered
    assert topic == uris.inbox_topic("alice") and exclude == phone.session_id and kwargs["seq"] == 1
    result = await runtime.service.sync(phone, SyncRequest())
    assert result["last_seq"] == 1


@pytest_twisted.ensureDeferred
async def test_a_system_send_has_no_copy_and_its_ack_carries_the_recipients_seq(make_runtime):
    runtime, port, _ = make_runtime()
    online(runtime, "bob")
    await runtime.service.send(online(runtime, "carol"), send(to_user_id="bob", body="first"))
    ack = await runtime.service.send(system("ops"), send(to_user_id="bob", body="notice", from_user_id="ops"))
    assert ack["seq"] == 2
    assert port.to("bob")[-1]["type"] == "system" and port.to("bob")[-1]["from_device_id"] is None
    assert port.to("ops") == []


@pytest_twisted.ensureDeferred
async def test_a_repeated_client_msg_id_gets_the_first_ack_even_in_flight_and_delivers_once(make_runtime):
    runtime, port, _ = make_runtime()
    alice = online(runtime, "alice")
    online(runtime, "bob")
    port.check_gate = defer.Deferred()
    first = defer.ensureDeferred(runtime.service.send(alice, send(to_user_id="bob", body="x", client_msg_id="k")))
    second = defer.ensureDeferred(runtime.service.send(alice, send(to_user_id="bob", body="x", client_msg_id="k")))
    port.check_gate.callback(None)
    acks = [await first, await second]
    third = await runtime.service.send(alice, send(to_user_id="bob", body="x", client_msg_id="k"))
    assert acks[0] == acks[1] == third
    assert len(port.to("bob")) == 1 and port.hook_calls.count(uris.HOOK_CHECK_MESSAGE) == 1


@pytest_twisted.ensureDeferred
async def test_a_rejected_send_is_neither_delivered_nor_held(make_runtime):
    runtime, port, sink = make_runtime()
    alice = online(runtime, "alice")
    online(runtime, "bob")
    with pytest.raises(SendFailed) as failed:
        await runtime.service.send(alice, send(to_user_id="bob", body="forbidden", client_msg_id="r"))
    assert failed.value.error == errors.REJECTED.uri and failed.value.kwargs["client_msg_id"] == "r"
    assert port.delivered == []
    assert (await runtime.service.sync(Sender("bob", "d1", 1, False), SyncRequest()))["last_seq"] == 0
    runtime.events.drain()
    assert sink.events[-1].event_type == "CONNECT_ONLINE", "no message event"


@pytest_twisted.ensureDeferred
async def test_tenant_limits_refuse_oversize_bodies_and_sends_over_the_rate(make_runtime):
    runtime, _, _ = make_runtime(max_payload_bytes=10, max_message_qps=2, check_message_hook=False)
    alice = online(runtime, "alice")
    with pytest.raises(SendFailed) as big:
        await runtime.service.send(alice, send(to_user_id="bob", body="x" * 20))
    assert big.value.error == errors.PAYLOAD_TOO_LARGE.uri
    for _ in range(2):
        await runtime.service.send(alice, send(to_user_id="bob", body="ok"))
    with pytest.raises(SendFailed) as limited:
        await runtime.service.send(alice, send(to_user_id="bob", body="ok"))
    assert limited.value.error == errors.RATE_LIMITED.uri


@pytest_twisted.ensureDeferred
async def test_a_group_send_is_one_delivery_to_the_members_and_held_for_offline_ones_with_buffering(make_runtime):
    runtime, port, _ = make_runtime(group_buffering=True)
    port.members["g1"] = ["alice", "bob", "carol"]
    alice = online(runtime, "alice")
    online(runtime, "bob")
    ack = await runtime.service.group_send(alice, GroupSendRequest.parse((), {"group_id": "g1", "body": "hey"}))
    assert ack["recipients"] == 3 and ack["delivered"] == "online"
    [(topic, authids, exclude, kwargs)] = port.delivered
    assert topic == uris.group_topic("g1") and set(authids) == {"alice", "bob", "carol"}
    assert exclude == alice.session_id and "seq" not in kwargs
    carol = await runtime.service.sync(Sender("carol", "d1", 1, False), SyncRequest())
    bob = await runtime.service.sync(Sender("bob", "d1", 1, False), SyncRequest())
    assert [m["body"] for m in carol["messages"]] == ["hey"] and bob["messages"] == []


@pytest_twisted.ensureDeferred
async def test_a_group_with_no_members_fails_with_empty_group(make_runtime):
    runtime, port, _ = make_runtime()
    with pytest.raises(SendFailed) as failed:
        await runtime.service.group_send(
            online(runtime, "alice"), GroupSendRequest.parse((), {"group_id": "none", "body": 1})
        )
    assert failed.value.error == errors.EMPTY_GROUP.uri and port.delivered == []


@pytest_twisted.ensureDeferred
async def test_signals_reach_online_devices_only_and_are_never_held(make_runtime):
    runtime, port, _ = make_runtime()
    alice = online(runtime, "alice")
    offline = await runtime.service.signal(alice, SignalRequest.parse((), {"to_user_id": "bob", "body": {"sdp": 1}}))
    assert offline["delivered"] == "offline" and "seq" not in offline
    online(runtime, "bob")
    live = await runtime.service.signal(alice, SignalRequest.parse((), {"to_user_id": "bob", "body": {"sdp": 2}}))
    assert live["delivered"] == "online" and [m["body"] for m in port.to("bob")] == [{"sdp": 2}]
    assert (await runtime.service.sync(Sender("bob", "d1", 1, False), SyncRequest()))["last_seq"] == 0


@pytest_twisted.ensureDeferred
async def test_receipts_take_the_inbox_path_with_a_seq(make_runtime):
    runtime, port, _ = make_runtime()
    bob = online(runtime, "bob")
    online(runtime, "alice")
    req = ReceiptRequest.parse((), {"to_user_id": "alice", "msg_ids": ["m1"], "kind": "read"})
    ack = await runtime.service.receipt(bob, req)
    [receipt] = port.to("alice")
    assert receipt["type"] == "receipt" and receipt["body"] == {"msg_ids": ["m1"], "kind": "read"}
    assert receipt["seq"] == 1 and ack["seq"] == 1


@pytest_twisted.ensureDeferred
async def test_the_runtime_kicks_replaces_and_times_out_sessions_through_its_port(make_runtime, clock):
    runtime, port, _ = make_runtime(heartbeat_timeout_s=5)
    online(runtime, "alice", "phone", session_id=1)
    online(runtime, "alice", "phone", session_id=2)
    assert port.closed == [(1, errors.CLOSE_REPLACED.uri)]
    runtime.session_left(1)
    assert await runtime.kick("alice", None) == 1 and port.closed[-1] == (2, errors.CLOSE_KICKED.uri)
    online(runtime, "bob", session_id=3)
    clock.advance(4)
    runtime.touch(3)
    clock.advance(4)
    assert runtime.close_silent(clock.seconds()) == 1, "alice's session 2 is still tracked until it leaves"
    clock.advance(2)
    assert runtime.close_silent(clock.seconds()) == 1
    assert port.closed[-1] == (3, errors.CLOSE_HEARTBEAT_TIMEOUT.uri)


def test_a_policy_change_keeps_the_hook_and_its_breaker_and_a_transport_change_rebuilds_it(make_runtime):
    runtime, _, _ = make_runtime()
    hook = runtime.hook
    assert hook is not None
    for _ in range(runtime.config.hook_breaker_failure_threshold):
        hook.check_guard.breaker.record_failure()
    assert hook.check_guard.breaker.state == "open"
    runtime.update(runtime.config.merged({"hook_timeout_ms": 300, "hook_breaker_open_ms": 60_000}))
    assert runtime.hook is hook and hook.check_guard.breaker.state == "open"
    assert hook.check_guard._timeout_s == 0.3 and hook.check_guard.breaker.open_s == 60.0
    runtime.update(runtime.config.merged({"hook_transport": "http", "hook_base_url": "http://127.0.0.1:9"}))
    assert runtime.hook is not hook and runtime.hook.check_guard.breaker.state == "closed"


@pytest_twisted.ensureDeferred
async def test_only_backends_list_and_kick_sessions(make_runtime):
    from mics.requests import SessionListRequest

    runtime, _, _ = make_runtime()
    alice = online(runtime, "alice")
    with pytest.raises(MicsError) as refused:
        await runtime.service.session_list(alice, SessionListRequest())
    assert refused.value.error == errors.NOT_AUTHORIZED.uri
    listed = await runtime.service.session_list(system(), SessionListRequest())
    assert [s["user_id"] for s in listed["sessions"]] == ["alice"]


# -- section 11 ---------------------------------------------------------------------------------------
def recall(msg_id: str) -> RecallRequest:
    return RecallRequest.parse((), {"msg_id": msg_id})


def edit(msg_id: str, body: Any, **kwargs: Any) -> EditRequest:
    return EditRequest.parse((), {"msg_id": msg_id, "body": body, **kwargs})


def group(group_id: str, body: Any, **kwargs: Any) -> GroupSendRequest:
    return GroupSendRequest.parse((), {"group_id": group_id, "body": body, **kwargs})


def events_of(runtime: TenantRuntime, sink: RecordingSink, event_type: str) -> list[Event]:
    runtime.events.drain()
    return [e for e in sink.events if e.event_type == event_type]


async def held(runtime: TenantRuntime, user_id: str) -> list[dict[str, Any]]:
    return (await runtime.service.sync(Sender(user_id, "d9", 99, False), SyncRequest()))["messages"]


@pytest_twisted.ensureDeferred
async def test_mentions_and_reply_to_travel_in_the_message_the_hook_the_held_copy_and_the_event(make_runtime):
    runtime, port, sink = make_runtime(group_buffering=True)
    port.members["g1"] = ["alice", "bob"]
    alice = online(runtime, "alice")
    checked: list[dict[str, Any]] = []
    real_call = port.call
    port.call = lambda procedure, **kw: (checked.append(kw), real_call(procedure, **kw))[1]  # type: ignore[method-assign]
    ack = await runtime.service.group_send(alice, group("g1", "hi @bob", mentions=["bob"], reply_to="m0"))
    [(_, _, _, delivered)] = [d for d in port.delivered if d[0] == uris.group_topic("g1")]
    assert delivered["mentions"] == ["bob"] and delivered["reply_to"] == "m0"
    assert next(kw for kw in checked if "body" in kw)["mentions"] == ["bob"]
    assert (await held(runtime, "bob"))[0]["reply_to"] == "m0"
    [event] = events_of(runtime, sink, "GROUP_CHAT_MSG")
    assert event.data["mentions"] == ["bob"] and event.msg_id == ack["msg_id"]
    await runtime.service.send(alice, send(to_user_id="bob", body="re", reply_to=ack["msg_id"]))
    assert (await held(runtime, "bob"))[-1]["reply_to"] == ack["msg_id"]
    plain = await runtime.service.send(alice, send(to_user_id="bob", body="plain"))
    assert not {"mentions", "reply_to", "ref_msg_id"} & set((await held(runtime, "bob"))[-1])
    assert plain["status"] == "SENT"


@pytest_twisted.ensureDeferred
async def test_the_sender_recalls_a_message_its_held_copies_become_tombstones_and_the_recall_goes_where_it_went(
    make_runtime,
):
    runtime, port, sink = make_runtime()
    phone = online(runtime, "alice", "phone")
    online(runtime, "alice", "laptop")
    sent = await runtime.service.send(phone, send(to_user_id="bob", body="oops"))
    ack = await runtime.service.recall(phone, recall(sent["msg_id"]))
    assert ack["status"] == "SENT" and ack["delivered"] == "buffered"
    [tombstone, notice] = await held(runtime, "bob")
    assert (tombstone["msg_id"], tombstone["body"], tombstone["recalled"]) == (sent["msg_id"], None, True)
    assert tombstone["seq"] == 1 and notice["type"] == "recall" and notice["ref_msg_id"] == sent["msg_id"]
    assert notice["body"] is None and notice["seq"] == 2
    [own_copy, own_notice] = await held(runtime, "alice")
    assert own_copy["body"] is None and own_notice["seq"] == ack["seq"]
    laptop = [m for m in port.to("alice") if m.get("type") == "recall"]
    assert len(laptop) == 1, "the sender's other device hears of it"
    [event] = events_of(runtime, sink, "MESSAGE_RECALL")
    assert event.to_user_id == "bob" and event.data["ref_msg_id"] == sent["msg_id"]


@pytest_twisted.ensureDeferred
async def test_recall_and_edit_refuse_another_users_message_unknown_or_old_ones_and_a_window_of_zero(
    make_runtime, clock
):
    runtime, port, _ = make_runtime()
    alice, mallory = online(runtime, "alice"), online(runtime, "mallory")
    sent = await runtime.service.send(alice, send(to_user_id="bob", body="mine"))
    for attempt in (recall(sent["msg_id"]), edit(sent["msg_id"], "hacked")):
        with pytest.raises(SendFailed) as foreign:
            await getattr(runtime.service, "recall" if isinstance(attempt, RecallRequest) else "edit")(mallory, attempt)
        assert foreign.value.error == errors.REJECTED.uri
    assert (await held(runtime, "bob"))[0]["body"] == "mine", "untouched"
    with pytest.raises(SendFailed) as unknown:
        await runtime.service.recall(alice, recall("no-such-message"))
    assert unknown.value.error == errors.NOT_FOUND.uri and unknown.value.kwargs["code"] == 404
    system_sent = await runtime.service.send(
        system("alice"), send(to_user_id="bob", body="notice", from_user_id="alice")
    )
    with pytest.raises(SendFailed) as not_hers:
        await runtime.service.recall(alice, recall(system_sent["msg_id"]))
    assert not_hers.value.error == errors.NOT_FOUND.uri, "a system message named after alice is not hers"
    clock.advance(121)
    with pytest.raises(SendFailed) as old:
        await runtime.service.recall(alice, recall(sent["msg_id"]))
    assert old.value.error == errors.NOT_FOUND.uri
    runtime.update(runtime.config.merged({"recall_window_s": 0}))
    fresh = await runtime.service.send(alice, send(to_user_id="bob", body="new"))
    with pytest.raises(SendFailed) as off:
        await runtime.service.edit(alice, edit(fresh["msg_id"], "x"))
    assert off.value.error == errors.REJECTED.uri
    assert [m for m in port.to("bob") if m["type"] in ("recall", "edit")] == []


@pytest_twisted.ensureDeferred
async def test_an_edit_replaces_the_held_body_passes_the_check_hook_and_a_recalled_message_stays_recalled(
    make_runtime,
):
    runtime, port, sink = make_runtime(max_payload_bytes=50)
    alice = online(runtime, "alice")
    online(runtime, "bob")
    sent = await runtime.service.send(alice, send(to_user_id="bob", body="draft"))
    ack = await runtime.service.edit(alice, edit(sent["msg_id"], {"t": "final"}, content_type="application/json"))
    original = (await held(runtime, "bob"))[0]
    assert original["body"] == {"t": "final"} and original["edited_at"] >= sent["ts"]
    assert original["content_type"] == "application/json" and original["seq"] == 1
    [live] = [m for m in port.to("bob") if m["type"] == "edit"]
    assert live["ref_msg_id"] == sent["msg_id"] and live["body"] == {"t": "final"} and live["msg_id"] == ack["msg_id"]
    with pytest.raises(SendFailed) as refused:
        await runtime.service.edit(alice, edit(sent["msg_id"], "forbidden words"))
    assert refused.value.error == errors.REJECTED.uri
    with pytest.raises(SendFailed) as big:
        await runtime.service.edit(alice, edit(sent["msg_id"], "x" * 60))
    assert big.value.error == errors.PAYLOAD_TOO_LARGE.uri
    assert (await held(runtime, "bob"))[0]["body"] == {"t": "final"}
    await runtime.service.recall(alice, recall(sent["msg_id"]))
    for late in (
        runtime.service.edit(alice, edit(sent["msg_id"], "back")),
        runtime.service.recall(alice, recall(sent["msg_id"])),
    ):
        with pytest.raises(SendFailed) as gone:
            await late
        assert gone.value.error == errors.NOT_FOUND.uri
    assert (await held(runtime, "bob"))[0]["body"] is None
    assert [e.event_type for e in events_of(runtime, sink, "MESSAGE_EDIT")] == ["MESSAGE_EDIT"]


@pytest_twisted.ensureDeferred
async def test_a_group_message_is_recalled_in_the_held_copies_of_offline_members_and_the_recall_reaches_the_group(
    make_runtime,
):
    runtime, port, _ = make_runtime(group_buffering=True)
    port.members["g1"] = ["alice", "bob", "carol"]
    alice = online(runtime, "alice")
    online(runtime, "bob")
    sent = await runtime.service.group_send(alice, group("g1", "to all"))
    ack = await runtime.service.recall(alice, recall(sent["msg_id"]))
    assert ack["recipients"] == 3 and ack["delivered"] == "online"
    [copy, notice] = await held(runtime, "carol")
    assert copy["body"] is None and copy["recalled"] and notice["type"] == "recall"
    on_group = [kw for t, _ids, _ex, kw in port.delivered if t == uris.group_topic("g1")]
    assert [m["type"] for m in on_group] == ["group_chat", "recall"]


@pytest_twisted.ensureDeferred
async def test_group_signals_reach_the_other_members_live_and_non_members_are_refused(make_runtime):
    runtime, port, sink = make_runtime()
    port.members["g1"] = ["alice", "bob"]
    alice, mallory = online(runtime, "alice"), online(runtime, "mallory")
    online(runtime, "bob")
    typing = SignalRequest.parse((), {"group_id": "g1", "body": {"typing": True}})
    ack = await runtime.service.signal(alice, typing)
    assert ack["delivered"] == "online" and "seq" not in ack
    [(topic, authids, exclude, kwargs)] = port.delivered
    assert topic == uris.group_topic("g1") and authids == ("bob",) and exclude == alice.session_id
    assert kwargs["type"] == "signal" and kwargs["group_id"] == "g1"
    with pytest.raises(SendFailed) as outsider:
        await runtime.service.signal(mallory, typing)
    assert outsider.value.error == errors.REJECTED.uri and len(port.delivered) == 1
    assert await held(runtime, "bob") == [] and events_of(runtime, sink, "GROUP_CHAT_MSG") == []


@pytest_twisted.ensureDeferred
async def test_one_users_flood_hits_their_own_limit_and_leaves_the_tenant_budget_to_others(make_runtime):
    from mics import metrics

    runtime, _, _ = make_runtime(max_user_message_qps=3, max_message_qps=5, check_message_hook=False)
    alice, bob = online(runtime, "alice"), online(runtime, "bob")
    outcomes = []
    for _ in range(10):
        try:
            await runtime.service.send(alice, send(to_user_id="bob", body="x"))
            outcomes.append("ok")
        except SendFailed as e:
            outcomes.append(e.kwargs["code"])
    assert outcomes == ["ok"] * 3 + [429] * 7
    for _ in range(2):  # the tenant's 5 minus alice's 3
        await runtime.service.send(bob, send(to_user_id="alice", body="y"))
    with pytest.raises(SendFailed) as tenant_wide:
        await runtime.service.receipt(
            bob, ReceiptRequest.parse((), {"to_user_id": "alice", "msg_ids": ["m"], "kind": "read"})
        )
    assert "tenant" in tenant_wide.value.kwargs["reason"]
    hits = metrics.LIMIT_HITS.labels("tunit", "max_user_message_qps")._value.get()
    assert hits >= 7


@pytest_twisted.ensureDeferred
async def test_an_offline_recipient_triggers_one_push_per_conversation_per_collapse_window(make_runtime, clock):
    runtime, _, sink = make_runtime()
    alice, carol = online(runtime, "alice"), online(runtime, "carol")
    first = await runtime.service.send(alice, send(to_user_id="bob", body="one"))
    await runtime.service.send(alice, send(to_user_id="bob", body="two"))
    await runtime.service.send(carol, send(to_user_id="bob", body="other conversation"))
    pushes = events_of(runtime, sink, "OFFLINE_PUSH")
    assert (pushes[0].user_id, pushes[0].msg_id) == ("bob", first["msg_id"])
    assert [e.data["from_user_id"] for e in pushes] == ["alice", "carol"]
    assert pushes[0].data["seq"] == 1 and pushes[0].data["body"] == "one" and pushes[0].key == "bob"
    clock.advance(11)
    await runtime.service.send(alice, send(to_user_id="bob", body="three"))
    assert len(events_of(runtime, sink, "OFFLINE_PUSH")) == 3
    online(runtime, "bob")
    await runtime.service.send(carol, send(to_user_id="bob", body="bob is here"))
    assert len(events_of(runtime, sink, "OFFLINE_PUSH")) == 3, "online: no push"


@pytest_twisted.ensureDeferred
async def test_a_delayed_push_is_dropped_when_the_user_comes_back_in_time(make_runtime, clock):
    runtime, _, sink = make_runtime(push_delay_s=5, push_collapse_s=0)
    alice = online(runtime, "alice")
    await runtime.service.send(alice, send(to_user_id="bob", body="soon back"))
    await runtime.service.send(alice, send(to_user_id="carol", body="away"))
    assert events_of(runtime, sink, "OFFLINE_PUSH") == []
    online(runtime, "bob")
    clock.advance(5)
    assert [e.user_id for e in events_of(runtime, sink, "OFFLINE_PUSH")] == ["carol"]


@pytest_twisted.ensureDeferred
async def test_a_mention_triggers_a_push_for_offline_members_only(make_runtime):
    runtime, port, sink = make_runtime()
    port.members["g1"] = ["alice", "bob", "carol"]
    alice = online(runtime, "alice")
    online(runtime, "carol")
    await runtime.service.group_send(alice, group("g1", "hey", mentions=["bob", "carol", "stranger", "alice"]))
    [push] = events_of(runtime, sink, "OFFLINE_PUSH")
    assert push.user_id == "bob" and push.group_id == "g1" and push.key == "bob"
    await runtime.service.group_send(alice, group("g1", "no mentions"))
    assert len(events_of(runtime, sink, "OFFLINE_PUSH")) == 1


@pytest_twisted.ensureDeferred
async def test_a_users_device_changes_are_published_on_their_presence_topic_unless_presence_is_off(make_runtime):
    runtime, port, _ = make_runtime()
    online(runtime, "bob", "phone", session_id=11)
    online(runtime, "bob", "phone", session_id=12)  # the same device again: no change
    online(runtime, "bob", "pc", session_id=13)
    runtime.session_left(11)  # replaced already: no change
    runtime.session_left(13)
    seen = [(t, kw["online"], kw["devices"]) for t, kw in port.presence]
    assert seen == [("mics.presence.bob", True, ["phone"]), ("mics.presence.bob", True, ["pc", "phone"]),
                    ("mics.presence.bob", True, ["phone"])]  # fmt: skip
    assert set(port.presence[0][1]) == {"user_id", "online", "devices", "ts"}
    runtime.session_left(12)
    assert port.presence[-1][1]["online"] is False and port.presence[-1][1]["devices"] == []
    runtime.update(runtime.config.merged({"presence_queries": False}))
    online(runtime, "carol")
    assert len(port.presence) == 4
    assert not runtime.may_watch_presence(12)


def test_a_session_may_watch_a_bounded_number_of_users(make_runtime):
    from mics.authz import MAX_PRESENCE_WATCHES

    runtime, port, _ = make_runtime()
    port.watches[5] = MAX_PRESENCE_WATCHES - 1
    assert runtime.may_watch_presence(5)
    port.watches[5] = MAX_PRESENCE_WATCHES
    assert not runtime.may_watch_presence(5) and runtime.may_watch_presence(6)
