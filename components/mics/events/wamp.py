"""The in-realm WAMP event sink: `mics.event.<type>` for the tenant's backend sessions.

In cluster mode the events also go to the nodes where a backend subscribed to `mics.event.*`
(mics.cluster.relay), so a backend connected to any node gets the events of every node."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from autobahn.wamp.types import PublishOptions

from mics import metrics, uris
from mics.events import Event, EventSink
from mics.router import NoRealmSession


class Publisher(Protocol):
    """The realm, as our component sees it (mics.router.RealmPort)."""

    def publish(self, topic: str, options: PublishOptions, kwargs: dict[str, Any]) -> None: ...


class Elsewhere(Protocol):
    """The other nodes' backends (mics.cluster.relay.WampRelay)."""

    def events_elsewhere(self, batch: Sequence[tuple[str, dict[str, Any]]]) -> None: ...


_BACKENDS_ONLY = PublishOptions(eligible_authrole=[uris.ROLE_BACKEND])


class WampSink(EventSink):
    """Publishes each event as kwargs (MqEvent fields, event_data decoded) to backend sessions."""

    name = "wamp"

    def __init__(self, tenant_id: str, realm: Publisher, elsewhere: Elsewhere | None = None) -> None:
        self._realm = realm
        self._elsewhere = elsewhere
        self._ok = metrics.EVENTS.labels(tenant_id, "wamp", "ok")
        self._dropped = metrics.EVENTS.labels(tenant_id, "wamp", "dropped")

    def deliver(self, events: list[Event]) -> None:
        batch = [(uris.event_topic(event.event_type), event.to_dict()) for event in events]
        if self._elsewhere is not None:
            self._elsewhere.events_elsewhere(batch)
        try:
            for topic, kwargs in batch:
                self._realm.publish(topic, _BACKENDS_ONLY, kwargs)
        except NoRealmSession:  # only before the realm component joined: nobody could subscribe yet
            self._dropped.inc(len(events))
            return
        self._ok.inc(len(events))
