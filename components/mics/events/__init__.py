"""Events to tenants (protocol.md section 6): connects, disconnects, messages, member changes.

Emission never slows a send: `EventPipeline.emit` appends to a bounded per-tenant queue and
returns; a periodic drain hands batches to the tenant's sinks. An overflow is counted and logged.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any

from txaio import make_logger

from mics import metrics

CONNECT_ONLINE = "CONNECT_ONLINE"
CONNECT_OFFLINE = "CONNECT_OFFLINE"
SINGLE_CHAT_MSG = "SINGLE_CHAT_MSG"
GROUP_CHAT_MSG = "GROUP_CHAT_MSG"
GROUP_MEMBER_CHANGE = "GROUP_MEMBER_CHANGE"
MESSAGE_RECALL = "MESSAGE_RECALL"  # section 11: event_data is the recall Message
MESSAGE_EDIT = "MESSAGE_EDIT"  # section 11: event_data is the edit Message
OFFLINE_PUSH = "OFFLINE_PUSH"  # section 11: user_id had no online device; event_data is the Message

_CHANGES = (MESSAGE_RECALL, MESSAGE_EDIT)

QUEUE_MAX = 100_000
log = make_logger()


@dataclass(frozen=True, slots=True)
class Event:
    """An MqEvent before encoding; `data` is the decoded event_data (a Message dict, ...)."""

    tenant_id: str
    event_type: str
    timestamp: int
    node_id: str
    data: dict[str, Any]
    msg_id: str = ""
    user_id: str = ""
    device_id: str = ""
    to_user_id: str = ""
    group_id: str = ""
    trace_id: str = ""

    @property
    def key(self) -> str:
        """Partition key: per-conversation order (to_user for 1:1, group, else user); a push per
        recipient (user)."""
        if self.event_type == OFFLINE_PUSH:
            return self.user_id
        if self.event_type == SINGLE_CHAT_MSG or (self.to_user_id and self.event_type in _CHANGES):
            return self.to_user_id
        if self.group_id:
            return self.group_id
        return self.user_id

    def to_dict(self) -> dict[str, Any]:
        """MqEvent fields with event_data as the decoded object (file and WAMP sinks)."""
        return {
            "tenant_id": self.tenant_id,
            "event_type": self.event_type,
            "msg_id": self.msg_id,
            "user_id": self.user_id,
            "device_id": self.device_id,
            "to_user_id": self.to_user_id,
            "group_id": self.group_id,
            "event_data": self.data,
            "timestamp": self.timestamp,
            "node_id": self.node_id,
            "trace_id": self.trace_id,
        }


class EventSink(ABC):
    """Where a tenant's events go. `deliver` must not block the reactor."""

    name: str

    @abstractmethod
    def deliver(self, events: list[Event]) -> None:
        """Take a batch; failures are the sink's to retry, dead-letter and count."""

    def close(self) -> None:  # noqa: B027 - optional
        """Flush and release resources."""


class EventQueue:
    """A tenant's bounded queue of events waiting for its sinks."""

    __slots__ = ("_dropped_metric", "_length", "dropped", "items", "sinks", "tenant_id")

    def __init__(self, tenant_id: str, sinks: list[EventSink]) -> None:
        self.tenant_id = tenant_id
        self.items: deque[Event] = deque()
        self.sinks = sinks
        self.dropped = 0
        self._dropped_metric = metrics.EVENTS.labels(tenant_id, "queue", "dropped")
        self._length = metrics.EVENT_QUEUE.labels(tenant_id)

    def put(self, event: Event) -> None:
        if not self.sinks:
            return
        if len(self.items) >= QUEUE_MAX:
            self.dropped += 1
            self._dropped_metric.inc()
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warn(
                    "event queue full, event dropped: tenant_id={tenant_id} dropped={dropped}",
                    tenant_id=self.tenant_id,
                    dropped=self.dropped,
                )
            return
        self.items.append(event)

    def drain(self) -> None:
        if not self.items:
            self._length.set(0)
            return
        batch = list(self.items)
        self.items.clear()
        self._length.set(0)
        for sink in self.sinks:
            try:
                sink.deliver(batch)
            except Exception:
                log.failure("event sink {sink} failed: tenant_id={tenant_id}", sink=sink.name, tenant_id=self.tenant_id)
