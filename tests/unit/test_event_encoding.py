"""MqEvent encoding: every event type round-trips through the protobuf schema; the signature is the spec's."""

from __future__ import annotations

import hashlib
import hmac

import pytest
import txaio

txaio.use_twisted()

from mics.events import Event  # noqa: E402
from mics.events.encode import decode, encode, headers, signature, topic, verify  # noqa: E402
from mics_client.v1 import event_pb2, message_pb2  # noqa: E402

MESSAGE = {
    "msg_id": "m-1",
    "type": "text",
    "tenant_id": "acme",
    "from_user_id": "alice",
    "from_device_id": "d1",
    "to_user_id": "bob",
    "body": {"text": "hi", "n": 2},
    "ts": 1700000000123,
    "content_type": "text/plain",
}


def event(event_type: str, data: dict, **fields: str) -> Event:
    return Event(tenant_id="acme", event_type=event_type, timestamp=1700000000123, node_id="n1", data=data, **fields)


def test_a_single_chat_event_carries_the_message_encoded_with_message_proto():
    value = encode(event("SINGLE_CHAT_MSG", MESSAGE, msg_id="m-1", user_id="alice", to_user_id="bob", trace_id="t"))
    pb = event_pb2.MqEvent.FromString(value)
    assert pb.event_type == event_pb2.SINGLE_CHAT_MSG and (pb.msg_id, pb.to_user_id, pb.trace_id) == ("m-1", "bob", "t")
    assert pb.timestamp == 1700000000123 and pb.node_id == "n1" and pb.tenant_id == "acme"
    message = message_pb2.Message.FromString(pb.event_data)
    assert (message.msg_id, message.from_user_id, message.to_user_id) == ("m-1", "alice", "bob")
    decoded = decode(value)
    assert decoded["event_type"] == "SINGLE_CHAT_MSG" and decoded["event_data"]["body"] == {"text": "hi", "n": 2}


def test_connection_and_member_change_events_carry_their_own_messages():
    online = {"session_id": 42, "user_id": "alice", "device_id": "d1", "node_id": "n1", "online_at": 1700000000000}
    offline = decode(encode(event("CONNECT_OFFLINE", {**online, "reason": "kicked"}, user_id="alice")))
    assert offline["event_data"] == {**online, "reason": "kicked"}
    change = event_pb2.GroupMemberChange.FromString(
        event_pb2.MqEvent.FromString(
            encode(event("GROUP_MEMBER_CHANGE", {"group_id": "g", "added": ["a"], "removed": ["b", "c"]}, group_id="g"))
        ).event_data
    )
    assert (change.group_id, list(change.added), list(change.removed)) == ("g", ["a"], ["b", "c"])


def test_signature_is_lowercase_hex_hmac_sha256_of_the_value_with_the_utf8_secret():
    value = encode(event("GROUP_CHAT_MSG", {**MESSAGE, "to_user_id": None, "group_id": "g"}, group_id="g"))
    expected = hmac.new("sécret".encode(), value, hashlib.sha256).hexdigest()
    assert signature("sécret", value) == expected
    assert dict(headers("acme", "GROUP_CHAT_MSG", "sécret", value)) == {
        "x-mics-signature": expected.encode(),
        "x-mics-tenant": b"acme",
        "x-mics-event-type": b"GROUP_CHAT_MSG",
    }
    assert verify("sécret", value, expected.upper().encode()) and not verify("other", value, expected)
    assert not verify("sécret", value + b"x", expected) and not verify("sécret", value, None)
    assert topic("acme") == "im-mics-acme-event"


@pytest.mark.parametrize("name", ["CONNECT_ONLINE", "CONNECT_OFFLINE", "SINGLE_CHAT_MSG", "GROUP_CHAT_MSG",
                                  "GROUP_MEMBER_CHANGE", "MESSAGE_RECALL", "MESSAGE_EDIT", "OFFLINE_PUSH",
                                  "AGENT_CALL"])  # fmt: skip
def test_event_type_names_are_the_proto_enum_names(name):
    assert event_pb2.EventType.Name(event_pb2.EventType.Value(name)) == name
    assert event_pb2.EventType.Name(0) == "EVENT_TYPE_UNSPECIFIED"


def test_recall_edit_and_push_events_carry_the_message_with_its_section_11_fields():
    recall = {**MESSAGE, "msg_id": "m-2", "type": "recall", "body": None, "ref_msg_id": "m-1"}
    decoded = decode(encode(event("MESSAGE_RECALL", recall, msg_id="m-2", to_user_id="bob")))
    assert decoded["event_type"] == "MESSAGE_RECALL" and decoded["event_data"]["ref_msg_id"] == "m-1"
    assert decoded["event_data"]["body"] is None and "reply_to" not in decoded["event_data"]
    group = {**MESSAGE, "to_user_id": None, "group_id": "g", "type": "group_chat", "mentions": ["bob"],
             "reply_to": "m-0", "seq": 7}  # fmt: skip
    pushed = decode(encode(event("OFFLINE_PUSH", group, msg_id="m-1", user_id="bob", group_id="g")))
    assert pushed["user_id"] == "bob" and pushed["event_data"]["mentions"] == ["bob"]
    assert pushed["event_data"]["reply_to"] == "m-0" and pushed["event_data"]["seq"] == 7
    edited = {**MESSAGE, "edited_at": 1700000000999, "recalled": False}
    data = decode(encode(event("MESSAGE_EDIT", edited)))["event_data"]
    assert data["edited_at"] == 1700000000999 and data["recalled"] is False


def test_kafka_keys_keep_a_conversation_in_order_and_a_push_by_recipient():
    assert event("MESSAGE_EDIT", MESSAGE, to_user_id="bob", user_id="alice").key == "bob"
    assert event("MESSAGE_RECALL", MESSAGE, group_id="g", user_id="alice").key == "g"
    assert event("OFFLINE_PUSH", MESSAGE, user_id="bob", to_user_id="bob", group_id="g").key == "bob"


def test_an_agent_call_event_carries_its_outcome_and_the_messages_carry_the_stream_fields():
    data = {"agent_id": "helper", "stream_id": "s-1", "outcome": "timeout", "duration_ms": 10_000, "chunks": 3}
    decoded = decode(encode(event("AGENT_CALL", data, msg_id="m-1", user_id="alice", to_user_id="helper")))
    assert decoded["event_type"] == "AGENT_CALL" and decoded["event_data"] == data
    limited = {"agent_id": "helper", "stream_id": "", "outcome": "rate_limited", "duration_ms": 0, "chunks": 0}
    assert decode(encode(event("AGENT_CALL", limited)))["event_data"] == limited
    final = {**MESSAGE, "from_user_id": "helper", "stream_id": "s-1", "reply_to": "m-1"}
    assert decode(encode(event("SINGLE_CHAT_MSG", final)))["event_data"]["stream_id"] == "s-1"
    assert event("AGENT_CALL", data, user_id="alice", group_id="g").key == "g"
    assert event("AGENT_CALL", data, user_id="alice", to_user_id="helper").key == "alice"
