"""Events to tenants (protocol.md section 6): connects, disconnects, messages, member changes.

Emission never slows a send: `EventPipeline.emit` appends to a bounded per-tenant queue and
returns; a periodic drain hands batches to the tenant's sinks. An overflow is counted and logged.

A sink encodes each event on its own: one event it cannot carry (a lone surrogate, a number or a
nesting its format refuses) is dropped alone, counted in `mics_events_dropped_total{reason}` and
logged at most once a minute per (tenant, sink, reason), never taking its batch with it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass
from typing import Any

from txaio import make_logger

from mics import metrics
from mics.logs import RateLimitedLog

CONNECT_ONLINE = "CONNECT_ONLINE"
CONNECT_OFFLINE = "CONNECT_OFFLINE"
SINGLE_CHAT_MSG = "SINGLE_CHAT_MSG"
GROUP_CHAT_MSG = "GROUP_CHAT_MSG"
GROUP_MEMBER_CHANGE = "GROUP_MEMBER_CHANGE"
MESSAGE_RECALL = "MESSAGE_RECALL"  # section 11: event_data is the recall Message
MESSAGE_EDIT = "MESSAGE_EDIT"  # section 11: event_data is the edit Message
OFFLINE_PUSH = "OFFLINE_PUSH"  # section 11: user_id had no online device; event_data is the Message
AGENT_CALL = "AGENT_CALL"  # section 12: one agent call; event_data {agent_id, stream_id, outcome, duration_ms, chunks}

_CHANGES = (MESSAGE_RECALL, MESSAGE_EDIT)

QUEUE_MAX = 100_000

# why an event never reached a sink (the `reason` label of mics_events_dropped_total)
UNENCODABLE = "unencodable"  # the sink's format cannot carry this event
WRITE_FAILED = "write_failed"  # the sink could not write the batch (e.g. disk full)
SINK_FAILED = "sink_failed"  # the sink raised on a batch (a bug): the whole batch is lost to it
QUEUE_FULL = "queue_full"  # the tenant's queue was full

log = make_logger()
_limited = RateLimitedLog(log)


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


class Drops:
    """Events one sink of one tenant will never deliver: counted, and logged at most once a minute
    per reason with the event's identity (type, msg_id, trace_id) and the error, never its data."""

    __slots__ = ("_counters", "sink", "tenant_id")

    def __init__(self, tenant_id: str, sink: str) -> None:
        self.tenant_id = tenant_id
        self.sink = sink
        self._counters: dict[str, Any] = {}

    def drop(self, reason: str, event: Event | None, error: BaseException | str, count: int = 1) -> bool:
        """Count `count` dropped events; True when this one was logged (not rate-limited)."""
        counter = self._counters.get(reason)
        if counter is None:
            counter = self._counters[reason] = metrics.EVENTS_DROPPED.labels(self.tenant_id, self.sink, reason)
        counter.inc(count)
        cause = error if isinstance(error, str) else f"{type(error).__name__}: {error}"
        return _limited.warn(
            (self.tenant_id, self.sink, reason),
            "event dropped: tenant_id={tenant_id} sink={sink} reason={reason} count={count} event_type={event_type} "
            "msg_id={msg_id} trace_id={trace_id} cause={cause}",
            tenant_id=self.tenant_id, sink=self.sink, reason=reason, count=count,
            event_type=event.event_type if event else "-", msg_id=(event.msg_id or "-") if event else "-",
            trace_id=(event.trace_id or "-") if event else "-", cause=cause[:200],
        )  # fmt: skip


class EventSink(ABC):
    """Where a tenant's events go. `deliver` must not block the reactor."""

    name: str

    @abstractmethod
    def deliver(self, events: list[Event]) -> None:
        """Take a batch; failures are the sink's to retry, dead-letter and count, event by event
        (`Drops`): one event the sink cannot carry must not cost the others."""

    def close(self) -> None:  # noqa: B027 - optional
        """Flush and release resources."""


class EventQueue:
    """A tenant's bounded queue of events waiting for its sinks."""

    __slots__ = ("_dropped_metric", "_drops", "_length", "_sink_drops", "dropped", "items", "sinks", "tenant_id")

    def __init__(self, tenant_id: str, sinks: list[EventSink]) -> None:
        self.tenant_id = tenant_id
        self.items: deque[Event] = deque()
        self.sinks = sinks
        self.dropped = 0
        self._dropped_metric = metrics.EVENTS.labels(tenant_id, "queue", "dropped")
        self._drops = Drops(tenant_id, "queue")
        self._sink_drops: dict[str, Drops] = {}
        self._length = metrics.EVENT_QUEUE.labels(tenant_id)

    def put(self, event: Event) -> None:
        if not self.sinks:
            return
        if len(self.items) >= QUEUE_MAX:
            self.dropped += 1
            self._dropped_metric.inc()
            self._drops.drop(QUEUE_FULL, event, f"{QUEUE_MAX} events waiting")
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
            except Exception as e:  # a bug in the sink: the batch is lost to it, but counted
                drops = self._sink_drops.get(sink.name)
                if drops is None:
                    drops = self._sink_drops[sink.name] = Drops(self.tenant_id, sink.name)
                if drops.drop(SINK_FAILED, None, e, count=len(batch)):
                    log.failure("event sink {sink} failed: tenant_id={tenant_id}", sink=sink.name,
                                tenant_id=self.tenant_id)  # fmt: skip
