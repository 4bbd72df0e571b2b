from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Message(_message.Message):
    __slots__ = ("msg_id", "type", "tenant_id", "from_user_id", "from_device_id", "to_user_id", "group_id", "body_json", "body_bytes", "content_type", "client_msg_id", "seq", "ts", "trace_id", "mentions", "reply_to", "ref_msg_id", "recalled", "edited_at", "stream_id", "chunk_seq")
    MSG_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_USER_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TO_USER_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    BODY_JSON_FIELD_NUMBER: _ClassVar[int]
    BODY_BYTES_FIELD_NUMBER: _ClassVar[int]
    CONTENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MSG_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    MENTIONS_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    REF_MSG_ID_FIELD_NUMBER: _ClassVar[int]
    RECALLED_FIELD_NUMBER: _ClassVar[int]
    EDITED_AT_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    CHUNK_SEQ_FIELD_NUMBER: _ClassVar[int]
    msg_id: str
    type: str
    tenant_id: str
    from_user_id: str
    from_device_id: str
    to_user_id: str
    group_id: str
    body_json: _struct_pb2.Value
    body_bytes: bytes
    content_type: str
    client_msg_id: str
    seq: int
    ts: int
    trace_id: str
    mentions: _containers.RepeatedScalarFieldContainer[str]
    reply_to: str
    ref_msg_id: str
    recalled: bool
    edited_at: int
    stream_id: str
    chunk_seq: int
    def __init__(self, msg_id: _Optional[str] = ..., type: _Optional[str] = ..., tenant_id: _Optional[str] = ..., from_user_id: _Optional[str] = ..., from_device_id: _Optional[str] = ..., to_user_id: _Optional[str] = ..., group_id: _Optional[str] = ..., body_json: _Optional[_Union[_struct_pb2.Value, _Mapping]] = ..., body_bytes: _Optional[bytes] = ..., content_type: _Optional[str] = ..., client_msg_id: _Optional[str] = ..., seq: _Optional[int] = ..., ts: _Optional[int] = ..., trace_id: _Optional[str] = ..., mentions: _Optional[_Iterable[str]] = ..., reply_to: _Optional[str] = ..., ref_msg_id: _Optional[str] = ..., recalled: _Optional[bool] = ..., edited_at: _Optional[int] = ..., stream_id: _Optional[str] = ..., chunk_seq: _Optional[int] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ("msg_id", "status", "ts", "seq", "client_msg_id", "delivered", "recipients")
    MSG_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TS_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CLIENT_MSG_ID_FIELD_NUMBER: _ClassVar[int]
    DELIVERED_FIELD_NUMBER: _ClassVar[int]
    RECIPIENTS_FIELD_NUMBER: _ClassVar[int]
    msg_id: str
    status: str
    ts: int
    seq: int
    client_msg_id: str
    delivered: str
    recipients: int
    def __init__(self, msg_id: _Optional[str] = ..., status: _Optional[str] = ..., ts: _Optional[int] = ..., seq: _Optional[int] = ..., client_msg_id: _Optional[str] = ..., delivered: _Optional[str] = ..., recipients: _Optional[int] = ...) -> None: ...
