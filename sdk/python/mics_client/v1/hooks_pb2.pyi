from google.protobuf import struct_pb2 as _struct_pb2
from mics_client.v1 import message_pb2 as _message_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class AuthRequest(_message.Message):
    __slots__ = ("token", "device_id", "tenant_id")
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    token: str
    device_id: str
    tenant_id: str
    def __init__(self, token: _Optional[str] = ..., device_id: _Optional[str] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class AuthResponse(_message.Message):
    __slots__ = ("user_id", "device_id", "config")
    USER_ID_FIELD_NUMBER: _ClassVar[int]
    DEVICE_ID_FIELD_NUMBER: _ClassVar[int]
    CONFIG_FIELD_NUMBER: _ClassVar[int]
    user_id: str
    device_id: str
    config: _struct_pb2.Struct
    def __init__(self, user_id: _Optional[str] = ..., device_id: _Optional[str] = ..., config: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class CheckMessageRequest(_message.Message):
    __slots__ = ("message",)
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    message: _message_pb2.Message
    def __init__(self, message: _Optional[_Union[_message_pb2.Message, _Mapping]] = ...) -> None: ...

class CheckMessageResponse(_message.Message):
    __slots__ = ("allow", "reason", "failed")
    ALLOW_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    FAILED_FIELD_NUMBER: _ClassVar[int]
    allow: bool
    reason: str
    failed: bool
    def __init__(self, allow: _Optional[bool] = ..., reason: _Optional[str] = ..., failed: _Optional[bool] = ...) -> None: ...

class CheckMessagesRequest(_message.Message):
    __slots__ = ("messages", "timeout_ms")
    MESSAGES_FIELD_NUMBER: _ClassVar[int]
    TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    messages: _containers.RepeatedCompositeFieldContainer[_message_pb2.Message]
    timeout_ms: int
    def __init__(self, messages: _Optional[_Iterable[_Union[_message_pb2.Message, _Mapping]]] = ..., timeout_ms: _Optional[int] = ...) -> None: ...

class CheckMessagesResponse(_message.Message):
    __slots__ = ("verdicts",)
    VERDICTS_FIELD_NUMBER: _ClassVar[int]
    verdicts: _containers.RepeatedCompositeFieldContainer[CheckMessageResponse]
    def __init__(self, verdicts: _Optional[_Iterable[_Union[CheckMessageResponse, _Mapping]]] = ...) -> None: ...

class GroupMembersRequest(_message.Message):
    __slots__ = ("group_id", "from_user_id", "tenant_id")
    GROUP_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_USER_ID_FIELD_NUMBER: _ClassVar[int]
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    group_id: str
    from_user_id: str
    tenant_id: str
    def __init__(self, group_id: _Optional[str] = ..., from_user_id: _Optional[str] = ..., tenant_id: _Optional[str] = ...) -> None: ...

class GroupMembersResponse(_message.Message):
    __slots__ = ("members",)
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    members: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, members: _Optional[_Iterable[str]] = ...) -> None: ...
