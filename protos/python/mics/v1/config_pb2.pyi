from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class TenantConfig(_message.Message):
    __slots__ = ("tenant_id", "secret", "enabled", "hook_transport", "hook_base_url", "hook_encoding", "check_message_hook", "hook_timeout_ms", "hook_auth_timeout_ms", "hook_max_concurrency", "hook_queue_timeout_ms", "hook_breaker_failure_threshold", "hook_breaker_open_ms", "heartbeat_timeout_s", "offline_ttl_s", "replay_window_s", "offline_max_per_user", "offline_max_bytes", "max_connections", "max_connections_per_user", "max_message_qps", "max_payload_bytes", "group_buffering", "presence_queries", "event_sinks", "recall_window_s", "max_user_message_qps", "max_joins_per_ip_per_s", "push_delay_s", "push_collapse_s")
    TENANT_ID_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    ENABLED_FIELD_NUMBER: _ClassVar[int]
    HOOK_TRANSPORT_FIELD_NUMBER: _ClassVar[int]
    HOOK_BASE_URL_FIELD_NUMBER: _ClassVar[int]
    HOOK_ENCODING_FIELD_NUMBER: _ClassVar[int]
    CHECK_MESSAGE_HOOK_FIELD_NUMBER: _ClassVar[int]
    HOOK_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    HOOK_AUTH_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    HOOK_MAX_CONCURRENCY_FIELD_NUMBER: _ClassVar[int]
    HOOK_QUEUE_TIMEOUT_MS_FIELD_NUMBER: _ClassVar[int]
    HOOK_BREAKER_FAILURE_THRESHOLD_FIELD_NUMBER: _ClassVar[int]
    HOOK_BREAKER_OPEN_MS_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_TIMEOUT_S_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_TTL_S_FIELD_NUMBER: _ClassVar[int]
    REPLAY_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_MAX_PER_USER_FIELD_NUMBER: _ClassVar[int]
    OFFLINE_MAX_BYTES_FIELD_NUMBER: _ClassVar[int]
    MAX_CONNECTIONS_FIELD_NUMBER: _ClassVar[int]
    MAX_CONNECTIONS_PER_USER_FIELD_NUMBER: _ClassVar[int]
    MAX_MESSAGE_QPS_FIELD_NUMBER: _ClassVar[int]
    MAX_PAYLOAD_BYTES_FIELD_NUMBER: _ClassVar[int]
    GROUP_BUFFERING_FIELD_NUMBER: _ClassVar[int]
    PRESENCE_QUERIES_FIELD_NUMBER: _ClassVar[int]
    EVENT_SINKS_FIELD_NUMBER: _ClassVar[int]
    RECALL_WINDOW_S_FIELD_NUMBER: _ClassVar[int]
    MAX_USER_MESSAGE_QPS_FIELD_NUMBER: _ClassVar[int]
    MAX_JOINS_PER_IP_PER_S_FIELD_NUMBER: _ClassVar[int]
    PUSH_DELAY_S_FIELD_NUMBER: _ClassVar[int]
    PUSH_COLLAPSE_S_FIELD_NUMBER: _ClassVar[int]
    tenant_id: str
    secret: str
    enabled: bool
    hook_transport: str
    hook_base_url: str
    hook_encoding: str
    check_message_hook: bool
    hook_timeout_ms: int
    hook_auth_timeout_ms: int
    hook_max_concurrency: int
    hook_queue_timeout_ms: int
    hook_breaker_failure_threshold: int
    hook_breaker_open_ms: int
    heartbeat_timeout_s: int
    offline_ttl_s: int
    replay_window_s: int
    offline_max_per_user: int
    offline_max_bytes: int
    max_connections: int
    max_connections_per_user: int
    max_message_qps: int
    max_payload_bytes: int
    group_buffering: bool
    presence_queries: bool
    event_sinks: _containers.RepeatedScalarFieldContainer[str]
    recall_window_s: int
    max_user_message_qps: int
    max_joins_per_ip_per_s: int
    push_delay_s: int
    push_collapse_s: int
    def __init__(self, tenant_id: _Optional[str] = ..., secret: _Optional[str] = ..., enabled: _Optional[bool] = ..., hook_transport: _Optional[str] = ..., hook_base_url: _Optional[str] = ..., hook_encoding: _Optional[str] = ..., check_message_hook: _Optional[bool] = ..., hook_timeout_ms: _Optional[int] = ..., hook_auth_timeout_ms: _Optional[int] = ..., hook_max_concurrency: _Optional[int] = ..., hook_queue_timeout_ms: _Optional[int] = ..., hook_breaker_failure_threshold: _Optional[int] = ..., hook_breaker_open_ms: _Optional[int] = ..., heartbeat_timeout_s: _Optional[int] = ..., offline_ttl_s: _Optional[int] = ..., replay_window_s: _Optional[int] = ..., offline_max_per_user: _Optional[int] = ..., offline_max_bytes: _Optional[int] = ..., max_connections: _Optional[int] = ..., max_connections_per_user: _Optional[int] = ..., max_message_qps: _Optional[int] = ..., max_payload_bytes: _Optional[int] = ..., group_buffering: _Optional[bool] = ..., presence_queries: _Optional[bool] = ..., event_sinks: _Optional[_Iterable[str]] = ..., recall_window_s: _Optional[int] = ..., max_user_message_qps: _Optional[int] = ..., max_joins_per_ip_per_s: _Optional[int] = ..., push_delay_s: _Optional[int] = ..., push_collapse_s: _Optional[int] = ...) -> None: ...
