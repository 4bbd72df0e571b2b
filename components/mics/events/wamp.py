"""The in-realm WAMP event sink: `mics.event.<type>` for the tenant's backend sessions."""

from __future__ import annotations

from typing import Any, Protocol

from autobahn.wamp.types import PublishOptions

from mics import metrics, uris
from mics.events import Event, EventSink
from mics.router import NoRealmSession


class Publisher(Protocol):
    """The realm, as our component sees it (mics.router.RealmPort)."""

    def publish(self, topic: str, options: PublishOptions, kwargs: dict[str, Any]) -> None: ...


_BACKENDS_ONLY = PublishOptions(eligible_authrole=[uris.ROLE_BACKEND])


class WampSink(EventSink):
    """Publishes each event as kwargs (MqEvent fields, event_data decoded) to backend sessions."""

    name = "wamp"

    def __init__(self, tenant_id: str, realm: Publisher) -> None:
        self._realm = realm
        self._ok = metrics.EVENTS.labels(tenant_id, "wamp", "ok")
        self._dropped = metrics.EVENTS.labels(tenant_id, "wamp", "dropped")

    def deliver(self, events: list[Event]) -> None:
        try:
            for event in events:
                self._realm.publish(uris.event_topic(event.event_type), _BACKENDS_ONLY, event.to_dict())
        except NoRealmSession:  # only before the realm component joined: nobody could subscribe yet
            self._dropped.inc(len(events))
            return
        self._ok.inc(len(events))
