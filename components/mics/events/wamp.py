"""The in-realm WAMP event sink: `mics.event.<type>` for the tenant's backend sessions."""

from __future__ import annotations

import json
from typing import Any, Protocol

import msgpack
from autobahn.wamp.types import PublishOptions

from mics import metrics, uris
from mics.events import UNENCODABLE, Drops, Event, EventSink
from mics.router import NoRealmSession


class Publisher(Protocol):
    """The realm, as our component sees it (mics.router.RealmPort)."""

    def publish(self, topic: str, options: PublishOptions, kwargs: dict[str, Any]) -> None: ...


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

    def __init__(self, tenant_id: str, realm: Publisher) -> None:
        self._realm = realm
        self._ok = metrics.EVENTS.labels(tenant_id, "wamp", "ok")
        self._dropped = metrics.EVENTS.labels(tenant_id, "wamp", "dropped")
        self._drops = Drops(tenant_id, self.name)

    def deliver(self, events: list[Event]) -> None:
        sent = 0
        for at, event in enumerate(events):
            kwargs = event.to_dict()
            try:
                check_carriable(kwargs)
            except Exception as e:  # this event only
                self._drops.drop(UNENCODABLE, event, e)
                continue
            try:
                self._realm.publish(uris.event_topic(event.event_type), _BACKENDS_ONLY, kwargs)
            except NoRealmSession:  # only before the realm component joined: nobody could subscribe yet
                self._dropped.inc(len(events) - at)
                break
            sent += 1
        self._ok.inc(sent)
