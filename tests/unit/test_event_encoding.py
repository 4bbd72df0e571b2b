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
                                  "GROUP_MEMBER_CHANGE"])  # fmt: skip
def test_event_type_names_are_the_proto_enum_names(name):
    assert event_pb2.EventType.Name(event_pb2.EventType.Value(name)) == name
    assert event_pb2.EventType.Name(0) == "EVENT_TYPE_UNSPECIFIED"
