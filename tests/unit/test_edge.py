"""The edge of every procedure: what every serializer can carry (mics.values), requests parsed
once (mics.requests), and errors mapped to the contract (mics.procedures)."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from twisted.internet import defer

from mics import errors
from mics.errors import MicsError, SendFailed
from mics.procedures import expose
from mics.requests import EditRequest, GroupSendRequest, RecallRequest, SendRequest, SignalRequest, SyncRequest
from mics.values import InvalidValue, body_size, is_text


def deep(containers: int) -> Any:
    value: Any = 1
    for _ in range(containers):
        value = {"k": value}
    return value


@pytest.mark.parametrize(
    "body",
    ["t\udfff", {"a": "\ud800"}, {"\udfff": 1}, 2**64, -(2**63) - 1, [2**64], float("nan"), {"x": float("-inf")},
     deep(33), "\x00abc", ["\x00"], {"\x00k": 1}, {1: "x"}, {"b": b"x"}, {1.5}, object()],
)  # fmt: skip
def test_values_some_serializer_or_client_cant_carry_are_refused(body):
    with pytest.raises(InvalidValue):
        body_size(body)


@pytest.mark.parametrize(
    "body,size",
    [("hi", 4), ("\u00e9", 4), (b"\x00\x01", 2), ({"a": 1}, 7), ([2**64 - 1], 22), (-(2**63), 20), (None, 4),
     (deep(32), 32 * 6 + 1), ("a\x00b", 5), ({"t": "x\x00"}, 15)],
)  # fmt: skip
def test_values_every_serializer_carries_are_measured_as_compact_json(body, size):
    assert body_size(body) == size


def test_a_body_that_fits_compact_json_but_not_one_msgpack_or_cbor_message_is_refused():
    """Floats take 9 bytes in msgpack/CBOR and as few as 4 in JSON: ~450 KiB of JSON floats would be
    over the 1 MiB frame there, so msgpack and CBOR recipients could neither receive nor sync it."""
    import cbor2
    import msgpack

    from mics.values import MAX_WIRE_BODY

    floats = [1.0] * 120_000  # 480,001 bytes of JSON
    assert len(msgpack.packb(floats)) > MAX_WIRE_BODY and len(cbor2.dumps(floats)) > MAX_WIRE_BODY
    with pytest.raises(InvalidValue, match="msgpack/CBOR"):
        body_size(floats, 512 * 1024)
    words = ["word"] * 80_000  # 560,001 bytes of JSON, smaller in msgpack: fine
    assert body_size(words, 1024 * 1024) == 560_001
    assert body_size(floats, 1000) == 480_001  # over the tenant's limit: measured, refused as too large


def test_text_is_valid_unicode_not_led_by_nul():
    assert is_text("ok") and is_text("\u00e9\U0001f600") and is_text("a\x00")
    assert not is_text("\x00a") and not is_text("\udfff") and not is_text(b"x") and not is_text(None)


def test_requests_take_keywords_only_and_echo_only_a_valid_client_msg_id():
    with pytest.raises(SendFailed) as positional:
        SendRequest.parse(("bob", "hi"), {})
    assert positional.value.error == errors.INVALID_MESSAGE.uri and "keyword" in positional.value.kwargs["message"]
    with pytest.raises(SendFailed) as bad:
        SendRequest.parse((), {"to_user_id": "b.b", "body": 1, "client_msg_id": "c-1"})
    assert bad.value.kwargs["client_msg_id"] == "c-1"
    with pytest.raises(SendFailed) as poisoned:
        GroupSendRequest.parse((), {"group_id": "g", "body": 1, "client_msg_id": "c\udfff"})
    assert "client_msg_id" not in poisoned.value.kwargs
    assert SyncRequest.parse((), {"since_seq": None}) == SyncRequest(0, None)
    with pytest.raises(SendFailed):
        SyncRequest.parse((), {"since_seq": 2**63})


async def _call(fn: Any, *args: Any, **kwargs: Any) -> Any:
    return await defer.ensureDeferred(fn(*args, **kwargs))


def _parse(args: Any, kwargs: Any) -> Any:
    return SendRequest.parse(args, kwargs)


@pytest_twisted.ensureDeferred
async def test_an_unexpected_fault_answers_internal_with_a_trace_id_and_no_python_text():
    def broken(request: Any, details: Any) -> Any:
        raise KeyError("secret internal detail")

    call = expose("mics.message.send", _parse, broken, "tunit")
    with pytest.raises(MicsError) as failed:
        await _call(call, to_user_id="bob", body=1)
    assert failed.value.error == errors.INTERNAL.uri and failed.value.kwargs["code"] == 500
    assert len(failed.value.kwargs["trace_id"]) == 16 and "secret" not in str(failed.value.args)


@pytest_twisted.ensureDeferred
async def test_contract_errors_pass_and_transient_store_errors_answer_unavailable_with_the_client_msg_id():
    class StoreDown(Exception):
        pass

    def down(request: Any, details: Any) -> Any:
        raise StoreDown()

    def limited(request: Any, details: Any) -> Any:
        raise SendFailed(errors.RATE_LIMITED, "slow down", request.client_msg_id)

    with pytest.raises(SendFailed) as unavailable:
        await _call(expose("p", _parse, down, "tunit", (StoreDown,)), to_user_id="b", body=1, client_msg_id="c9")
    assert unavailable.value.error == errors.UNAVAILABLE.uri and unavailable.value.kwargs["client_msg_id"] == "c9"
    with pytest.raises(SendFailed) as passed:
        await _call(expose("p", _parse, limited, "tunit"), to_user_id="b", body=1, client_msg_id="c9")
    assert passed.value.error == errors.RATE_LIMITED.uri
    with pytest.raises(SendFailed) as positional:
        await _call(expose("p", _parse, limited, "tunit"), "b", 1)
    assert positional.value.error == errors.INVALID_MESSAGE.uri


# -- section 11 arguments -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"mentions": "bob"},
        {"mentions": ["bob", "bob"]},
        {"mentions": ["b.b"]},
        {"mentions": ["x\udfff"]},
        {"mentions": [f"u{i}" for i in range(101)]},
        {"mentions": [1]},
        {"reply_to": ""},
        {"reply_to": "m" * 129},
        {"reply_to": 5},
        {"reply_to": "\x00m"},
        {"reply_to": "m\udfff"},
    ],
)
def test_mentions_and_reply_to_that_break_the_rules_are_invalid_messages(kwargs):
    with pytest.raises(SendFailed) as failed:
        GroupSendRequest.parse((), {"group_id": "g", "body": 1, **kwargs})
    assert failed.value.error == errors.INVALID_MESSAGE.uri


def test_mentions_are_for_group_sends_and_reply_to_for_both():
    req = GroupSendRequest.parse((), {"group_id": "g", "body": 1, "mentions": ["bob", "carol"], "reply_to": "m1"})
    assert (req.mentions, req.reply_to) == (["bob", "carol"], "m1")
    assert GroupSendRequest.parse((), {"group_id": "g", "body": 1, "mentions": []}).mentions is None
    assert SendRequest.parse((), {"to_user_id": "bob", "body": 1, "reply_to": "m1"}).reply_to == "m1"
    with pytest.raises(SendFailed) as one_to_one:
        SendRequest.parse((), {"to_user_id": "bob", "body": 1, "mentions": ["carol"]})
    assert one_to_one.value.error == errors.INVALID_MESSAGE.uri and "group" in one_to_one.value.kwargs["message"]


@pytest.mark.parametrize(
    ("parse", "kwargs"),
    [
        (RecallRequest.parse, {}),
        (RecallRequest.parse, {"msg_id": ""}),
        (RecallRequest.parse, {"msg_id": ["m1"]}),
        (RecallRequest.parse, {"msg_id": "m" * 129}),
        (RecallRequest.parse, {"msg_id": "m\udfff"}),
        (EditRequest.parse, {"msg_id": "m1"}),
        (EditRequest.parse, {"msg_id": "m1", "body": float("nan")}),
        (EditRequest.parse, {"msg_id": "m1", "body": "x", "content_type": 3}),
        (SignalRequest.parse, {"body": 1}),
        (SignalRequest.parse, {"to_user_id": "bob", "group_id": "g", "body": 1}),
        (SignalRequest.parse, {"group_id": "g.x", "body": 1}),
        (SignalRequest.parse, {"group_id": "g"}),
    ],
)
def test_recall_edit_and_signal_arguments_are_checked_at_the_edge(parse, kwargs):
    with pytest.raises(SendFailed) as failed:
        parse((), kwargs)
    assert failed.value.error == errors.INVALID_MESSAGE.uri


def test_a_signal_goes_to_one_user_or_to_a_group():
    assert SignalRequest.parse((), {"group_id": "g", "body": {"typing": True}}).group_id == "g"
    one = SignalRequest.parse((), {"to_user_id": "bob", "body": 1})
    assert (one.to_user_id, one.group_id) == ("bob", None)
    edit = EditRequest.parse((), {"msg_id": "m1", "body": {"t": "x"}, "content_type": "text/plain"})
    assert (edit.msg_id, edit.body, edit.size, edit.content_type) == ("m1", {"t": "x"}, 9, "text/plain")


def test_a_body_over_the_limit_is_measured_but_not_walked():
    hostile = [[0] * 10 for _ in range(1000)] + [2**64]  # invalid, but refused as too large first
    size = body_size(hostile, max_size=100)
    assert size > 100, "the caller refuses it by size; the walk that would find 2**64 never runs"
    with pytest.raises(InvalidValue):
        body_size(hostile, max_size=None)


def test_nesting_past_the_c_encoders_limit_is_invalid_not_a_crash():
    with pytest.raises(InvalidValue):
        body_size(deep(5000))
