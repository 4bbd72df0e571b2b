"""Choosing how events reach users: the router's fan-out when embedded, publish() otherwise."""

from mics.delivery import PublishDelivery, RouterDelivery, make_delivery


class NotEmbedded:
    def __init__(self) -> None:
        self.published: list[tuple] = []

    def publish(self, topic, options=None, **kwargs):
        self.published.append((topic, options.eligible_authid, options.exclude, kwargs))


def test_a_session_outside_a_router_delivers_through_publish():
    session = NotEmbedded()
    delivery = make_delivery(session)
    assert isinstance(delivery, PublishDelivery)
    delivery.to_users("mics.inbox.bob", ("bob",), 42, {"x": 1})
    assert session.published == [("mics.inbox.bob", ["bob"], [42], {"x": 1})]


def test_router_delivery_needs_the_router_internals():
    class Router:
        class _broker:
            _subscription_map = object()

        _session_id_to_session: dict = {}

    class Transport:
        _router = Router()

    class Embedded(NotEmbedded):
        _transport = Transport()

    assert isinstance(make_delivery(Embedded()), RouterDelivery)
