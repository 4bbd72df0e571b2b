"""MICS Python SDK: user-device clients (Twisted: `mics_client.twisted`, asyncio: `mics_client.asyncio`)
and tenant hook helpers (`mics_client.hooks`). Errors live in `mics_client.errors`.
"""

from mics_client.errors import (
    ConnectionClosed,
    ConnectionLimit,
    EmptyGroup,
    HeartbeatTimeout,
    HookUnavailable,
    Internal,
    InvalidMessage,
    InvalidTenant,
    InvalidToken,
    Kicked,
    MicsError,
    NotAuthorized,
    NotConnected,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Rejected,
    Replaced,
    Shutdown,
    SlowConsumer,
    TenantDisabled,
    Unavailable,
)
from mics_client.streams import AgentStream
from mics_client.timeline import Timeline
from mics_client.types import Ack, AgentCall, Message, Presence, PresenceChange, SyncGap, SyncResult, Welcome

__version__ = "0.1.0"

__all__ = [
    "Ack", "AgentCall", "AgentStream", "ConnectionClosed", "ConnectionLimit", "EmptyGroup", "HeartbeatTimeout",
    "HookUnavailable", "Internal", "InvalidMessage", "InvalidTenant", "InvalidToken", "Kicked", "Message", "MicsError",
    "NotAuthorized", "NotConnected", "NotFound", "PayloadTooLarge", "Presence", "PresenceChange", "RateLimited",
    "Rejected", "Replaced", "Shutdown", "SlowConsumer", "SyncGap", "SyncResult", "TenantDisabled", "Timeline",
    "Unavailable", "Welcome",
]  # fmt: skip
