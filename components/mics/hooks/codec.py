"""HTTP hook bodies: JSON (default) or protobuf (hook_encoding: "protobuf"), both ways.

The hook SDKs use the same functions, so router and receivers can never disagree on a field.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from google.protobuf import json_format, struct_pb2

from mics.v1 import hooks_pb2, message_pb2

JSON = "application/json"
PROTOBUF = "application/x-protobuf"

_MESSAGE_STR_FIELDS = (
    "msg_id", "type", "tenant_id", "from_user_id", "from_device_id", "to_user_id", "group_id",
    "content_type", "client_msg_id", "trace_id",
)  # fmt: skip


def message_to_proto(message: dict[str, Any]) -> message_pb2.Message:
    pb = message_pb2.Message()
    for name in _MESSAGE_STR_FIELDS:
        value = message.get(name)
        if value is not None:
            setattr(pb, name, value)
    pb.seq = message.get("seq") or 0
    pb.ts = message.get("ts") or 0
    body = message.get("body")
    if isinstance(body, bytes | bytearray):
        pb.body_bytes = bytes(body)
    else:
        json_format.ParseDict(body, pb.body_json)
    return pb


def message_from_proto(pb: message_pb2.Message) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(pb, name) or None for name in _MESSAGE_STR_FIELDS}
    out = {k: v for k, v in out.items() if v is not None or k == "from_device_id"}
    out["ts"] = pb.ts
    if pb.seq:
        out["seq"] = pb.seq
    which = pb.WhichOneof("body")
    out["body"] = pb.body_bytes if which == "body_bytes" else json_format.MessageToDict(pb.body_json)
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode("utf-8")


# -- requests (router side encodes, SDK side decodes) -------------------------------------------


def encode_request(hook: str, fields: dict[str, Any], encoding: str) -> tuple[bytes, str]:
    """`hook` is auth | check_message | group_members; returns (body, content type)."""
    if encoding != "protobuf":
        return dumps(fields), JSON
    if hook == "auth":
        pb: Any = hooks_pb2.AuthRequest(**fields)
    elif hook == "check_message":
        pb = hooks_pb2.CheckMessageRequest(message=message_to_proto(fields))
    else:
        pb = hooks_pb2.GroupMembersRequest(**fields)
    return pb.SerializeToString(), PROTOBUF


def decode_request(hook: str, body: bytes, content_type: str) -> dict[str, Any]:
    if not content_type.startswith(PROTOBUF):
        value = json.loads(body)
        if not isinstance(value, dict):
            raise ValueError("hook request body is not a JSON object")
        return value
    if hook == "auth":
        return json_format.MessageToDict(
            hooks_pb2.AuthRequest.FromString(body),
            preserving_proto_field_name=True,
            always_print_fields_with_no_presence=True,
        )
    if hook == "check_message":
        return message_from_proto(hooks_pb2.CheckMessageRequest.FromString(body).message)
    return json_format.MessageToDict(
        hooks_pb2.GroupMembersRequest.FromString(body),
        preserving_proto_field_name=True,
        always_print_fields_with_no_presence=True,
    )


# -- responses (SDK side encodes, router side decodes) ------------------------------------------


def encode_response(hook: str, reply: dict[str, Any], encoding: str) -> tuple[bytes, str]:
    if encoding != "protobuf":
        return dumps(reply), JSON
    if hook == "auth":
        pb: Any = hooks_pb2.AuthResponse(user_id=reply.get("user_id", ""), device_id=reply.get("device_id") or "")
        if reply.get("config"):
            s = struct_pb2.Struct()
            s.update(reply["config"])
            pb.config.CopyFrom(s)
    elif hook == "check_message":
        pb = hooks_pb2.CheckMessageResponse(allow=bool(reply.get("allow")), reason=reply.get("reason") or "")
    else:
        pb = hooks_pb2.GroupMembersResponse(members=list(reply.get("members", [])))
    return pb.SerializeToString(), PROTOBUF


def _int_config(config: dict[str, Any]) -> dict[str, Any]:
    """Struct numbers arrive as floats; config ints are whole numbers."""
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in config.items()}


def decode_response(hook: str, body: bytes, content_type: str) -> Any:
    if not content_type.startswith(PROTOBUF):
        return json.loads(body)
    if hook == "auth":
        pb = hooks_pb2.AuthResponse.FromString(body)
        out: dict[str, Any] = {"user_id": pb.user_id, "device_id": pb.device_id or None}
        if pb.HasField("config"):
            out["config"] = _int_config(json_format.MessageToDict(pb.config))
        return out
    if hook == "check_message":
        pb2 = hooks_pb2.CheckMessageResponse.FromString(body)
        return {"allow": pb2.allow, "reason": pb2.reason or None}
    return {"members": list(hooks_pb2.GroupMembersResponse.FromString(body).members)}
