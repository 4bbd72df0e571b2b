"""The send service with no node: a tenant runtime on the memory engine, a recording realm port
and hooks answered in process. The same pipeline the WAMP adapter calls on a real node."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer, task

from mics import errors, uris
from mics.config import NodeSettings, TenantConfig
from mics.engine.memory import MemoryEngines
from mics.errors import MicsError, SendFailed
from mics.events import Event, EventSink
from mics.requests import GroupSendRequest, ReceiptRequest, SendRequest, SignalRequest, SyncRequest
from mics.tenants import TenantRuntime
from mics.types import MsgIdFactory, Sender


class FakePort:
    """A realm as the runtime sees it: records deliveries and closes, answers hook calls."""

    def __init__(self) -> None:
        self.delivered: list[tuple[str, tuple[str, ...], int | None, dict[str, Any]]] = []
        self.closed: list[tuple[int, str]] = []
        self.members: dict[str, list[str]] = {}
        self.refuse_word = "forbidden"
        self.hook_calls: list[str] = []
        self.check_gate: defer.Deferred[None] | None = None

    def deliver(self, topic: str, authids: Any, exclude: int | None, kwargs: dict[str, Any]) -> None:
        self.delivered.append((topic, tuple(authids), exclude, dict(kwargs)))

    def close_session(self, session_id: int, reason: errors.Reason, message: str) -> None:
        self.closed.append((session_id, reason.uri))

    def call(self, procedure: str, **kwargs: Any) -> defer.Deferred[Any]:
        self.hook_calls.append(procedure)
        if procedure == uris.HOOK_GROUP_MEMBERS:
            return defer.succeed({"members": self.members.get(kwargs["group_id"], [])})
        if procedure == uris.HOOK_CHECK_MESSAGE:
            verdict = {"allow": self.refuse_word not in str(kwargs.get("body"))}
            if self.check_gate is not None:
                return self.check_gate.addCallback(lambda _: verdict)
            return defer.succeed(verdict)
        raise AssertionError(procedure)

    def publish(self, topic: str, options: Any, kwargs: dict[str, Any]) -> None:
        raise AssertionError("no wamp sink in these tests")

    def to(self, user_id: str) -> list[dict[str, Any]]:
        """What was delivered on `user_id`'s inbox."""
        return [kw for topic, _ids, _ex, kw in self.delivered if topic == uris.inbox_topic(user_id)]


class RecordingSink(EventSink):
    name = "recording"

    def __init__(self) -> None:
        self.events: list[Event] = []

    def deliver(self, events: list[Event]) -> None:
        self.events.extend(events)


@pytest.fixture
def clock() -> task.Clock:
    clock = task.Clock()
    clock.advance(1000)
    return clock


@pytest.fixture
def make_runtime(clock, tmp_path):
    def make(**config: Any) -> tuple[TenantRuntime, FakePort, RecordingSink]:
        settings = NodeSettings(node_id="unit", data_dir=str(tmp_path))
        tenant_config = TenantConfig.parse("tunit", {"secret": "unit-secret-123", "event_sinks": [], **config})
        port = FakePort()
        runtime = TenantRuntime(tenant_config, settings, clock, MemoryEngines("unit"), MsgIdFactory("unit"), port)
        sink = RecordingSink()
        runtime.events.sinks = [sink]
        return runtime, port, sink

    return make


def online(runtime: TenantRuntime, user_id: str, device_id: str = "d1", session_id: int | None = None) -> Sender:
    """A joined device of `user_id`; returns it as a sender."""
    session_id = session_id or abs(hash((user_id, device_id))) % 10**9 + 1
    info = runtime.session_joined(session_id, user_id, device_id)
    assert info is not None
    return Sender(user_id, device_id, session_id, False)


def system(user_id: str = "backend") -> Sender:
    return Sender(user_id, None, 7, True)


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
