"""The in-realm WAMP event sink: `mics.event.<type>` for the tenant's backend sessions.

In cluster mode the events also go to the nodes where a backend subscribed to `mics.event.*`
(mics.cluster.relay), so a backend connected to any node gets the events of every node."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Protocol

import msgpack
from autobahn.wamp.types import PublishOptions

from mics import metrics, uris
from mics.events import UNENCODABLE, Drops, Event, EventSink
from mics.router import NoRealmSession


class Publisher(Protocol):
    """The realm, as our component sees it (mics.router.RealmPort)."""

    def publish(self, topic: str, options: PublishOptions, kwargs: dict[str, Any]) -> None: ...


class Elsewhere(Protocol):
    """The other nodes' backends (mics.cluster.relay.WampRelay)."""

    def events_elsewhere(self, batch: Sequence[tuple[str, dict[str, Any]]]) -> None: ...


_BACKENDS_ONLY = PublishOptions(eligible_authrole=[uris.ROLE_BACKEND])


def check_carriable(kwargs: dict[str, Any]) -> None:
    """Raise unless every backend serializer can carry `kwargs`: msgpack (valid Unicode, integers
    within 64 bits) and strict JSON (no NaN/Infinity). The router serializes an event per receiver
    and drops one that fails without telling the publisher, so the sink checks first and counts."""
    msgpack.packb(kwargs)
    json.dumps(kwargs, allow_nan=False, ensure_ascii=False, default=lambda _: "")


class WampSink(EventSink):
    """Publishes each event as kwargs (MqEvent fields, event_data decoded) to backend sessions."""

    name = "wamp"

    def __init__(self, tenant_id: str, realm: Publisher, elsewhere: Elsewhere | None = None) -> None:
        self._realm = realm
        self._elsewhere = elsewhere
        self._ok = metrics.EVENTS.labels(tenant_id, "wamp", "ok")
        self._dropped = metrics.EVENTS.labels(tenant_id, "wamp", "dropped")
        self._drops = Drops(tenant_id, self.name)

    def deliver(self, events: list[Event]) -> None:
        batch: list[tuple[str, dict[str, Any]]] = []
        for event in events:
            kwargs = event.to_dict()
            try:
                check_carriable(kwargs)
            except Exception as e:  # this event only
                self._drops.drop(UNENCODABLE, event, e)
                continue
            batch.append((uris.event_topic(event.event_type), kwargs))
        if self._elsewhere is not None and batch:
            self._elsewhere.events_elsewhere(batch)
        sent = 0
        for at, (topic, kwargs) in enumerate(batch):
            try:
                self._realm.publish(topic, _BACKENDS_ONLY, kwargs)
            except NoRealmSession:  # only before the realm component joined: nobody could subscribe yet
                self._dropped.inc(len(batch) - at)
                break
            sent += 1
        self._ok.inc(sent)
