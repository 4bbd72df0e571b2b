"""The in-realm WAMP event sink: `mics.event.<type>` for the tenant's backend sessions."""

from __future__ import annotations

from typing import Any, Protocol

from autobahn.wamp.types import PublishOptions

from mics import metrics, uris
from mics.events import Event, EventSink


class Publisher(Protocol):
    def publish(self, topic: str, *args: Any, **kwargs: Any) -> Any: ...


_BACKENDS_ONLY = PublishOptions(eligible_authrole=[uris.ROLE_BACKEND])


class WampSink(EventSink):
    """Publishes each event as kwargs (MqEvent fields, event_data decoded) to backend sessions."""

    name = "wamp"

    def __init__(self, tenant_id: str, session: Publisher) -> None:
        self._session = session
        self._ok = metrics.EVENTS.labels(tenant_id, "wamp", "ok")

    def deliver(self, events: list[Event]) -> None:
        for event in events:
            self._session.publish(uris.event_topic(event.event_type), options=_BACKENDS_ONLY, **event.to_dict())
        self._ok.inc(len(events))
