"""MqEvent on the wire (protocol.md section 6): protobuf bytes, Kafka headers and their signature.

The Kafka sink, the dead-letter spool, the example consumer and the tests all use these functions,
so producer and consumer can never disagree on a field or on what is signed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from typing import Any

from google.protobuf import json_format

from mics.events import AGENT_CALL, CONNECT_OFFLINE, CONNECT_ONLINE, GROUP_MEMBER_CHANGE, Event
from mics.hooks.codec import message_from_proto, message_to_proto
from mics_client.v1 import event_pb2, message_pb2

HEADER_SIGNATURE = "x-mics-signature"
HEADER_TENANT = "x-mics-tenant"
HEADER_EVENT_TYPE = "x-mics-event-type"

_CONNECTION_TYPES = (CONNECT_ONLINE, CONNECT_OFFLINE)


def topic(tenant_id: str) -> str:
    return f"im-mics-{tenant_id}-event"


def signature(secret: str, value: bytes) -> str:
    """Lowercase hex HMAC-SHA256 with the UTF-8 tenant secret over the record value."""
    return hmac.new(secret.encode("utf-8"), value, hashlib.sha256).hexdigest()


def verify(secret: str, value: bytes, given: str | bytes | None) -> bool:
    """True when `given` (the x-mics-signature header) signs `value` with `secret`."""
    if given is None:
        return False
    if isinstance(given, bytes):
        given = given.decode("ascii", "replace")
    return hmac.compare_digest(signature(secret, value), given.lower())


def _event_data(event: Event) -> bytes:
    data = event.data
    if event.event_type in _CONNECTION_TYPES:
        pb: Any = event_pb2.ConnectionChange(
            user_id=data.get("user_id") or "",
            device_id=data.get("device_id") or "",
            node_id=data.get("node_id") or "",
            session_id=data.get("session_id") or 0,
            online_at=data.get("online_at") or 0,
            reason=data.get("reason") or "",
        )
    elif event.event_type == GROUP_MEMBER_CHANGE:
        pb = event_pb2.GroupMemberChange(
            group_id=data.get("group_id") or "", added=data.get("added") or [], removed=data.get("removed") or []
        )
    elif event.event_type == AGENT_CALL:
        pb = event_pb2.AgentCall(**data)
    else:
        _check_finite(data.get("body"))
        pb = message_to_proto(data)
    return bytes(pb.SerializeToString())


def _check_finite(body: Any) -> None:
    """protobuf's Struct takes NaN and Infinity but its JSON mapping cannot give them back, so a
    consumer (and `decode`) would fail on the record: refuse them here, for this event only."""
    if not isinstance(body, bytes | bytearray | str | int):
        json.dumps(body, allow_nan=False, default=lambda _: None)


def encode(event: Event) -> bytes:
    """The MqEvent protobuf bytes of one event (the Kafka record value)."""
    return bytes(
        event_pb2.MqEvent(
            tenant_id=event.tenant_id,
            event_type=event_pb2.EventType.Value(event.event_type),
            msg_id=event.msg_id,
            user_id=event.user_id,
            device_id=event.device_id,
            to_user_id=event.to_user_id,
            group_id=event.group_id,
            event_data=_event_data(event),
            timestamp=event.timestamp,
            node_id=event.node_id,
            trace_id=event.trace_id,
        ).SerializeToString()
    )


def headers(tenant_id: str, event_type: str, secret: str, value: bytes) -> list[tuple[str, bytes]]:
    return [
        (HEADER_SIGNATURE, signature(secret, value).encode("ascii")),
        (HEADER_TENANT, tenant_id.encode("utf-8")),
        (HEADER_EVENT_TYPE, event_type.encode("ascii")),
    ]


def decode(value: bytes) -> dict[str, Any]:
    """MqEvent bytes -> its fields, `event_type` as its name and `event_data` decoded by type."""
    pb = event_pb2.MqEvent.FromString(value)
    event_type = event_pb2.EventType.Name(pb.event_type)
    data: Any
    if event_type in _CONNECTION_TYPES:
        data = _to_dict(event_pb2.ConnectionChange.FromString(pb.event_data))
    elif event_type == GROUP_MEMBER_CHANGE:
        data = _to_dict(event_pb2.GroupMemberChange.FromString(pb.event_data))
    elif event_type == AGENT_CALL:
        data = _to_dict(event_pb2.AgentCall.FromString(pb.event_data))
    else:
        data = message_from_proto(message_pb2.Message.FromString(pb.event_data))
    out = _to_dict(pb)
    out["event_type"] = event_type
    out["timestamp"] = pb.timestamp
    out["event_data"] = data
    return out


def _to_dict(pb: Any) -> dict[str, Any]:
    out: dict[str, Any] = json_format.MessageToDict(
        pb, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )
    for name in ("session_id", "online_at", "duration_ms", "chunks"):  # int64 arrive as strings in proto JSON
        if name in out:
            out[name] = int(out[name])
    return out
