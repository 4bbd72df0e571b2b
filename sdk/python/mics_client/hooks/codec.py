"""HTTP hook bodies: JSON (default) or protobuf (hook_encoding: "protobuf"), both ways.

Hooks: auth, check_message, check_messages (the batched check: `{"messages", "timeout_ms"}` ->
`{"verdicts"}`, one verdict or None per message) and group_members.

The canonical codec: the node (mics.hooks.codec) and the hook SDK use these same functions, so router
and receivers can never disagree on a field. protobuf is imported only when a protobuf body is coded.
"""

from __future__ import annotations

import base64
import json
from typing import Any

JSON = "application/json"
PROTOBUF = "application/x-protobuf"

_MESSAGE_STR_FIELDS = (
    "msg_id", "type", "tenant_id", "from_user_id", "from_device_id", "to_user_id", "group_id",
    "content_type", "client_msg_id", "trace_id",
)  # fmt: skip
# section 11-12 fields: absent when unused (proto3 `optional`, so presence survives the round trip)
_MESSAGE_OPTIONAL_FIELDS = ("reply_to", "ref_msg_id", "recalled", "edited_at", "stream_id", "chunk_seq")


def _json_format() -> Any:
    from google.protobuf import json_format

    return json_format


def _hooks_pb2() -> Any:
    from mics_client.v1 import hooks_pb2

    return hooks_pb2


def message_to_proto(message: dict[str, Any]) -> Any:
    """A Message dict -> mics.v1.Message (body as body_bytes or body_json)."""
    from mics_client.v1 import message_pb2

    pb = message_pb2.Message()
    for name in _MESSAGE_STR_FIELDS:
        value = message.get(name)
        if value is not None:
            setattr(pb, name, value)
    pb.seq = message.get("seq") or 0
    pb.ts = message.get("ts") or 0
    if message.get("mentions"):
        pb.mentions.extend(message["mentions"])
    for name in _MESSAGE_OPTIONAL_FIELDS:
        value = message.get(name)
        if value is not None:
            setattr(pb, name, value)
    body = message.get("body")
    if isinstance(body, bytes | bytearray):
        pb.body_bytes = bytes(body)
    else:
        _json_format().ParseDict(body, pb.body_json)
    return pb


def message_from_proto(pb: Any) -> dict[str, Any]:
    out: dict[str, Any] = {name: getattr(pb, name) or None for name in _MESSAGE_STR_FIELDS}
    out = {k: v for k, v in out.items() if v is not None or k == "from_device_id"}
    out["ts"] = pb.ts
    if pb.seq:
        out["seq"] = pb.seq
    if pb.mentions:
        out["mentions"] = list(pb.mentions)
    for name in _MESSAGE_OPTIONAL_FIELDS:
        if pb.HasField(name):
            out[name] = getattr(pb, name)
    which = pb.WhichOneof("body")
    out["body"] = pb.body_bytes if which == "body_bytes" else _json_format().MessageToDict(pb.body_json)
    return out


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode("ascii")
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; bytes become base64 strings."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=_json_default).encode("utf-8")


def _fields(pb: Any) -> dict[str, Any]:
    return _json_format().MessageToDict(  # type: ignore[no-any-return]
        pb, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


# -- requests (router side encodes, SDK side decodes) -------------------------------------------


def encode_request(hook: str, fields: dict[str, Any], encoding: str) -> tuple[bytes, str]:
    """`hook` is auth | check_message | check_messages | group_members; returns (body, content type)."""
    if encoding != "protobuf":
        return dumps(fields), JSON
    hooks_pb2 = _hooks_pb2()
    if hook == "auth":
        pb: Any = hooks_pb2.AuthRequest(**fields)
    elif hook == "check_message":
        pb = hooks_pb2.CheckMessageRequest(message=message_to_proto(fields))
    elif hook == "check_messages":
        pb = hooks_pb2.CheckMessagesRequest(messages=[message_to_proto(m) for m in fields["messages"]],
                                            timeout_ms=fields.get("timeout_ms") or 0)  # fmt: skip
    else:
        pb = hooks_pb2.GroupMembersRequest(**fields)
    return pb.SerializeToString(), PROTOBUF


def decode_request(hook: str, body: bytes, content_type: str) -> dict[str, Any]:
    if not content_type.startswith(PROTOBUF):
        value = json.loads(body)
        if not isinstance(value, dict):
            raise ValueError("hook request body is not a JSON object")
        return value
    hooks_pb2 = _hooks_pb2()
    if hook == "auth":
        return _fields(hooks_pb2.AuthRequest.FromString(body))
    if hook == "check_message":
        return message_from_proto(hooks_pb2.CheckMessageRequest.FromString(body).message)
    if hook == "check_messages":
        batch = hooks_pb2.CheckMessagesRequest.FromString(body)
        return {"messages": [message_from_proto(m) for m in batch.messages], "timeout_ms": batch.timeout_ms}
    return _fields(hooks_pb2.GroupMembersRequest.FromString(body))


# -- responses (SDK side encodes, router side decodes) ------------------------------------------


def encode_response(hook: str, reply: dict[str, Any], encoding: str) -> tuple[bytes, str]:
    if encoding != "protobuf":
        return dumps(reply), JSON
    hooks_pb2 = _hooks_pb2()
    if hook == "auth":
        pb: Any = hooks_pb2.AuthResponse(user_id=reply.get("user_id", ""), device_id=reply.get("device_id") or "")
        if reply.get("config"):
            from google.protobuf import struct_pb2

            s = struct_pb2.Struct()
            s.update(reply["config"])
            pb.config.CopyFrom(s)
    elif hook == "check_message":
        pb = _verdict_to_proto(hooks_pb2, reply)
    elif hook == "check_messages":
        pb = hooks_pb2.CheckMessagesResponse(verdicts=[_verdict_to_proto(hooks_pb2, v) for v in reply["verdicts"]])
    else:
        pb = hooks_pb2.GroupMembersResponse(members=list(reply.get("members", [])))
    return pb.SerializeToString(), PROTOBUF


def _verdict_to_proto(hooks_pb2: Any, verdict: dict[str, Any] | None) -> Any:
    """None (no verdict: the check failed) is `failed: true`."""
    if verdict is None:
        return hooks_pb2.CheckMessageResponse(failed=True)
    return hooks_pb2.CheckMessageResponse(allow=bool(verdict.get("allow")), reason=verdict.get("reason") or "")


def _verdict_from_proto(pb: Any) -> dict[str, Any] | None:
    return None if pb.failed else {"allow": pb.allow, "reason": pb.reason or None}


def _int_config(config: dict[str, Any]) -> dict[str, Any]:
    """Struct numbers arrive as floats; config ints are whole numbers."""
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in config.items()}


def decode_response(hook: str, body: bytes, content_type: str) -> Any:
    if not content_type.startswith(PROTOBUF):
        return json.loads(body)
    hooks_pb2 = _hooks_pb2()
    if hook == "auth":
        pb = hooks_pb2.AuthResponse.FromString(body)
        out: dict[str, Any] = {"user_id": pb.user_id, "device_id": pb.device_id or None}
        if pb.HasField("config"):
            out["config"] = _int_config(_json_format().MessageToDict(pb.config))
        return out
    if hook == "check_message":
        return _verdict_from_proto(hooks_pb2.CheckMessageResponse.FromString(body))
    if hook == "check_messages":
        batch = hooks_pb2.CheckMessagesResponse.FromString(body)
        return {"verdicts": [_verdict_from_proto(v) for v in batch.verdicts]}
    return {"members": list(hooks_pb2.GroupMembersResponse.FromString(body).members)}
