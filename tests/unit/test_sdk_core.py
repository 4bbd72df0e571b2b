"""Pure parts of the Python client SDK: the error table, backoff with jitter, dedupe, value types, hook replies."""

from __future__ import annotations

from typing import Any

import pytest
from autobahn.exception import Disconnected
from autobahn.wamp.exception import ApplicationError, TransportLost
from twisted.internet.defer import ensureDeferred
from twisted.python.failure import Failure

import mics.hooks.codec as node_codec
from mics import errors as node_errors
from mics_client import errors
from mics_client.core import Backoff, RecentIds
from mics_client.hooks import auth_reply, check_reply, codec, members_reply
from mics_client.types import Ack, Message


def test_every_uri_and_code_of_the_node_maps_to_its_typed_sdk_error() -> None:
    for reason in (*node_errors.JOIN_REASONS, *node_errors.CLOSE_REASONS):
        error = errors.from_wamp(reason.uri, "m", joining=True)
        assert (error.uri, error.code) == (reason.uri, reason.code)
        assert type(error) is errors.ERRORS[reason.uri]
    for reason in (*node_errors.CALL_REASONS, node_errors.NOT_AUTHORIZED):
        error = errors.from_wamp(reason.uri, "m", {"code": reason.code, "message": "safe text"})
        assert (type(error), error.code, error.message) == (errors.ERRORS[reason.uri], reason.code, "safe text")


@pytest.mark.parametrize(
    ("uri", "cls", "code"),
    [
        ("mics.error.invalid_token", errors.InvalidToken, 4001),
        ("mics.error.invalid_tenant", errors.InvalidTenant, 4002),
        ("mics.error.connection_limit", errors.ConnectionLimit, 4429),
        ("mics.error.hook_unavailable", errors.HookUnavailable, 4503),
        ("mics.close.kicked", errors.Kicked, 4000),
        ("mics.close.replaced", errors.Replaced, 4009),
        ("mics.close.heartbeat_timeout", errors.HeartbeatTimeout, 4100),
        ("mics.close.shutdown", errors.Shutdown, 1001),
        ("mics.close.tenant_disabled", errors.TenantDisabled, 4002),
    ],
)
def test_join_and_close_reasons_carry_their_mics_code(uri: str, cls: type, code: int) -> None:
    error = errors.from_wamp(uri, "why", joining=True)
    assert isinstance(error, cls) and error.code == code == errors.code_of(uri)


def test_only_kicked_replaced_tenant_disabled_and_bad_credentials_are_final() -> None:
    assert errors.FINAL_CLOSE_REASONS == {"mics.close.kicked", "mics.close.replaced", "mics.close.tenant_disabled"}
    assert errors.InvalidToken.final and errors.InvalidTenant.final
    assert not errors.ConnectionLimit.final and not errors.HookUnavailable.final and not errors.Shutdown.final


def test_an_unknown_uri_is_a_plain_mics_error_keeping_uri_and_kwargs() -> None:
    error = errors.from_wamp("tenant.error.nope", "no", {"x": 1})
    assert type(error) is errors.MicsError and error.uri == "tenant.error.nope" and error.kwargs == {"x": 1}


def test_backoff_grows_exponentially_to_its_cap_with_jitter_in_the_upper_half() -> None:
    low, high = Backoff(0.5, 30.0, rng=lambda: 0.0), Backoff(0.5, 30.0, rng=lambda: 0.999999)
    assert [low.delay(n) for n in range(4)] == [0.25, 0.5, 1.0, 2.0]
    assert high.delay(3) == pytest.approx(4.0) and low.delay(100) == 15.0 and high.delay(100) == pytest.approx(30.0)


def test_recent_ids_drop_repeats_and_stay_bounded() -> None:
    seen = RecentIds(limit=2)
    assert seen.add("a") and not seen.add("a")
    seen.add("b")
    seen.add("c")
    assert "a" not in seen and "b" in seen and "c" in seen


def test_message_and_ack_read_the_wire_kwargs() -> None:
    message = Message.from_kwargs({"msg_id": "m1", "type": "chat", "from_user_id": "a", "body": {"t": 1}, "ts": 5,
                                   "seq": 3, "future_field": True})  # fmt: skip
    ack = Ack.from_result({"msg_id": "m1", "status": "SENT", "ts": 5, "delivered": "buffered", "recipients": 2})
    assert (message.seq, message.extra, message.to_kwargs()["body"]) == (3, {"future_field": True}, {"t": 1})
    assert (ack.delivered, ack.recipients, ack.seq) == ("buffered", 2, None)


def test_hook_replies_are_normalized_to_the_wire_shapes() -> None:
    assert auth_reply("alice") == {"user_id": "alice"}
    assert auth_reply({"user_id": "a", "device_id": None}) == {"user_id": "a"}
    assert check_reply(False) == {"allow": False}
    assert check_reply({"allow": False, "reason": "no"}) == {"allow": False, "reason": "no"}
    assert members_reply(("a", "b")) == members_reply({"members": ["a", "b"]}) == {"members": ["a", "b"]}
    with pytest.raises(TypeError):
        auth_reply(None)


@pytest.mark.parametrize("encoding", ["json", "protobuf"])
def test_the_codec_round_trips_every_hook_both_ways(encoding: str) -> None:
    message = {"msg_id": "m1", "type": "chat", "tenant_id": "acme", "from_user_id": "a", "from_device_id": "d1",
               "to_user_id": "b", "body": {"text": "hi"}, "ts": 7, "trace_id": "m1"}  # fmt: skip
    for hook, fields, reply in [
        ("auth", {"token": "t", "device_id": "d1", "tenant_id": "acme"}, {"user_id": "a", "device_id": "d1"}),
        ("check_message", message, {"allow": False, "reason": "no"}),
        ("group_members", {"group_id": "g", "from_user_id": "a", "tenant_id": "acme"}, {"members": ["a", "b"]}),
    ]:
        body, content_type = codec.encode_request(hook, fields, encoding)
        assert codec.decode_request(hook, body, content_type) == fields
        body, content_type = codec.encode_response(hook, reply, encoding)
        assert codec.decode_response(hook, body, content_type) == reply


def test_the_node_uses_the_sdk_codec() -> None:
    assert node_codec.encode_request is codec.encode_request and node_codec.dumps is codec.dumps


# -- section 11 helpers --------------------------------------------------------------------------------
def _m(msg_id: str, type: str = "chat", **fields: object) -> Message:
    return Message.from_kwargs({"msg_id": msg_id, "type": type, "from_user_id": "alice", "ts": 10, **fields})


def test_a_timeline_folds_recalls_and_edits_into_what_is_shown_whatever_comes_first() -> None:
    from mics_client import Timeline

    timeline = Timeline()
    assert timeline.apply(_m("a", body="teh")).body == "teh"
    edited = timeline.apply(_m("e1", "edit", body="the", ref_msg_id="a", ts=20, content_type="text/plain"))
    assert (edited.msg_id, edited.body, edited.edited_at, edited.content_type) == ("a", "the", 20, "text/plain")
    assert timeline.apply(_m("e0", "edit", body="older", ref_msg_id="a", ts=15)).body == "the", "an older edit loses"
    recalled = timeline.apply(_m("r1", "recall", body=None, ref_msg_id="a", ts=30))
    assert (recalled.body, recalled.recalled) == (None, True)
    assert timeline.apply(_m("e2", "edit", body="back", ref_msg_id="a", ts=40)).body is None, "nothing undoes a recall"
    assert timeline.apply(_m("a", body="teh")) is None, "a repeat of the original changes nothing"
    # a change that overtakes its original waits for it
    assert timeline.apply(_m("r2", "recall", body=None, ref_msg_id="b", ts=50)) is None
    assert timeline.apply(_m("b", body="secret")).recalled
    assert timeline.apply(_m("s", "signal", body={"typing": True})) is None
    assert timeline.apply(_m("c", body=None, recalled=True)).recalled, "a held tombstone from sync"
    assert [m.msg_id for m in timeline] == ["a", "b", "c"] and timeline.get("b").body is None


def test_typing_signals_and_changes_are_recognised() -> None:
    assert _m("s", "signal", body={"typing": True}).typing is True
    assert _m("s", "signal", body={"typing": False}, group_id="g").typing is False
    assert _m("s", "signal", body={"sdp": "x"}).typing is None and _m("c", body={"typing": True}).typing is None
    assert _m("r", "recall", ref_msg_id="a").is_change and not _m("c").is_change
    message = _m("g", "group_chat", mentions=["bob"], reply_to="a", edited_at=5, recalled=False)
    assert (message.mentions, message.reply_to, message.edited_at, message.extra) == (["bob"], "a", 5, {})


def _finish(waitable: Any) -> Any:
    """The result of an SDK call that never waits on anything (the fakes below answer at once)."""
    outcome: list[Any] = []
    ensureDeferred(waitable).addBoth(outcome.append)
    assert outcome, "the call waited"
    if isinstance(outcome[0], Failure):
        outcome[0].raiseException()
    return outcome[0]


class _DroppingSession:
    """An attached session whose connection drops under the next subscribe/unsubscribe."""

    def __init__(self, error: BaseException) -> None:
        self.error = error

    def is_attached(self) -> bool:
        return True

    async def subscribe(self, *args: object, **kwargs: object) -> object:
        raise self.error


class _DroppingSubscription:
    def __init__(self, error: BaseException) -> None:
        self.error = error

    async def unsubscribe(self) -> None:
        raise self.error


@pytest.mark.parametrize(
    "error",
    [Disconnected("gone"), TransportLost(), ApplicationError(errors.TRANSPORT_LOST, "lost")],
    ids=["disconnected", "transport_lost", "transport_lost_error"],
)
def test_a_connection_dropping_under_a_presence_watch_keeps_the_watch_and_raises_nothing_from_autobahn(error) -> None:
    """The watch is renewed on reconnect; Autobahn's own exceptions never reach the app."""
    from mics_client.twisted import MicsClient

    client = MicsClient("ws://127.0.0.1:1/ws", "demo", "token", "phone")
    client._session = _DroppingSession(error)
    seen: list[object] = []
    _finish(client.watch_presence("bob", seen.append))
    assert list(client._watches) == ["bob"] and seen == []
    client._presence_subscriptions["bob"] = _DroppingSubscription(error)
    _finish(client.unwatch_presence("bob"))
    assert client._watches == {} and client._presence_subscriptions == {}
