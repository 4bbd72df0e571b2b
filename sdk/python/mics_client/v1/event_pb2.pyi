from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class EventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_TYPE_UNSPECIFIED: _ClassVar[EventType]
    CONNECT_ONLINE: _ClassVar[EventType]
    CONNECT_OFFLINE: _ClassVar[EventType]
    SINGLE_CHAT_MSG: _ClassVar[EventType]
    GROUP_CHAT_MSG: _ClassVar[EventType]
    GROUP_MEMBER_CHANGE: _ClassVar[EventType]
    MESSAGE_RECALL: _ClassVar[EventType]
    MESSAGE_EDIT: _ClassVar[EventType]
    OFFLINE_PUSH: _ClassVar[EventType]
    AGENT_CALL: _ClassVar[EventType]
EVENT_TYPE_UNSPECIFIED: EventType
CONNECT_ONLINE: EventType
CONNECT_OFFLINE: EventType
SINGLE_CHAT_MSG: EventType
GROUP_CHAT_MSG: EventType
GROUP_MEMBER_CHANGE: EventType
MESSAGE_RECALL: EventType
MESSAGE_EDIT: EventType
OFFLINE_PUSH: EventType
AGENT_CALL: EventType

class MqEvent(_message.Message):
    __slots__ = ("tenant_id", "event_type", "msg_id", "user_id", "device_id", "to_user_id", "group_id", "event_data", "timestamp", "node_id", "trace_id")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    MSG_ID_FIELD_NUMBER: _ClassVar[int]
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TO_USER_ID_FIELD_NUMBER: _ClassVar[int]
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    EVENT_DATA_FIELD_NUMBER: _ClassVar[int]
    TIMESTAMP_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    TRACE_ID_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    event_type: EventType
    msg_id: str
    user_id: str
    device_id: str
    to_user_id: str
    group_id: str
    event_data: bytes
    timestamp: int
    node_id: str
    trace_id: str
    def __init__(self, tenant_id: _Optional[str] = ..., event_type: _Optional[_Union[EventType, str]] = ..., msg_id: _Optional[str] = ..., user_id: _Optional[str] = ..., device_id: _Optional[str] = ..., to_user_id: _Optional[str] = ..., group_id: _Optional[str] = ..., event_data: _Optional[bytes] = ..., timestamp: _Optional[int] = ..., node_id: _Optional[str] = ..., trace_id: _Optional[str] = ...) -> None: ...

class GroupMemberChange(_message.Message):
    __slots__ = ("group_id", "added", "removed")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    ADDED_FIELD_NUMBER: _ClassVar[int]
    REMOVED_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    added: _containers.RepeatedScalarFieldContainer[str]
    removed: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, group_id: _Optional[str] = ..., added: _Optional[_Iterable[str]] = ..., removed: _Optional[_Iterable[str]] = ...) -> None: ...

class ConnectionChange(_message.Message):
    __slots__ = ("user_id", "device_id", "node_id", "session_id", "online_at", "reason")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    ONLINE_AT_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    device_id: str
    node_id: str
    session_id: int
    online_at: int
    reason: str
    def __init__(self, user_id: _Optional[str] = ..., device_id: _Optional[str] = ..., node_id: _Optional[str] = ..., session_id: _Optional[int] = ..., online_at: _Optional[int] = ..., reason: _Optional[str] = ...) -> None: ...

class AgentCall(_message.Message):
    __slots__ = ("agent_id", "stream_id", "outcome", "duration_ms", "chunks")
    AGENT_ID_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    DURATION_MS_FIELD_NUMBER: _ClassVar[int]
    CHUNKS_FIELD_NUMBER: _ClassVar[int]
    agent_id: str
    stream_id: str
    outcome: str
    duration_ms: int
    chunks: int
    def __init__(self, agent_id: _Optional[str] = ..., stream_id: _Optional[str] = ..., outcome: _Optional[str] = ..., duration_ms: _Optional[int] = ..., chunks: _Optional[int] = ...) -> None: ...
