"""Section 4's input rules on a real node: no value a client sends may stop another client from
receiving or syncing. Each poison value is refused with mics.error.invalid_message (never a
runtime error, never a hang), and a recipient on every serializer still receives and syncs."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from twisted.internet.defer import TimeoutError

SERIALIZERS = ("json", "msgpack", "cbor")


def nested(depth: int) -> Any:
    """`depth - 1` lists around a string."""
    value: Any = "leaf"
    for _ in range(depth - 1):
        value = [value]
    return value


# (sender's serializer, send kwargs): each one some serializer or client can't carry
POISON = [
    ("json-escaping", {"to_user_id": "bob", "body": "x", "content_type": "text/\udfff"}),
    ("json-escaping", {"to_user_id": "bob", "body": "x", "client_msg_id": "c\udfff"}),
    ("json-escaping", {"to_user_id": "bob", "body": "lone \ud800 surrogate"}),
    ("json-escaping", {"to_user_id": "bob", "body": {"text": "\udfff"}}),
    ("json-escaping", {"to_user_id": "bob", "body": {"k\udfff": 1}}),
    ("json-escaping", {"to_user_id": "b\udfffb", "body": "x"}),
    ("json", {"to_user_id": "bob", "body": {"n": 2**64}}),
    ("json", {"to_user_id": "bob", "body": -(2**63) - 1}),
    ("cbor", {"to_user_id": "bob", "body": [2**70]}),
    ("json", {"to_user_id": "bob", "body": {"x": float("nan")}}),
    ("json", {"to_user_id": "bob", "body": float("inf")}),
    ("msgpack", {"to_user_id": "bob", "body": nested(390)}),  # CBOR clients decode at most 400 levels
    ("json", {"to_user_id": "bob", "body": {"deep": nested(395)}}),
    ("msgpack", {"to_user_id": "bob", "body": nested(34)}),  # 33 containers deep
    ("msgpack", {"to_user_id": "bob", "body": "\x00 looks like bytes to JSON clients"}),
    ("cbor", {"to_user_id": "bob", "body": {"a": ["\x00AAAA"]}}),
    ("cbor", {"to_user_id": "bob", "body": {1: "int key"}}),
    ("msgpack", {"to_user_id": "bob", "body": {"nested": b"bytes only as the whole body"}}),
    ("msgpack", {"to_user_id": "bob\x01", "body": "control character in an id"}),
]


@pytest.mark.parametrize("serializer,kwargs", POISON, ids=[f"{s}-{i}" for i, (s, _k) in enumerate(POISON)])
@pytest_twisted.ensureDeferred
async def test_a_value_some_client_cant_carry_is_refused_and_every_recipient_still_syncs(make_tenant, serializer,
                                                                                         kwargs):  # fmt: skip
    tenant = await make_tenant(check_message_hook=False)
    mallory = await tenant.user("mallory", serializer=serializer)
    with pytest.raises(ApplicationError) as refused:
        await mallory.call("mics.message.send", **kwargs)
    assert refused.value.error == "mics.error.invalid_message" and refused.value.kwargs["code"] == 400
    assert "client_msg_id" not in refused.value.kwargs or refused.value.kwargs["client_msg_id"].isprintable()
    # the node still serves everyone: bob on every serializer gets alice's message and syncs
    alice = await tenant.user("alice")
    for n, ser in enumerate(SERIALIZERS):
        bob = await tenant.user("bob", f"dev{n}", serializer=ser)
        await bob.listen("mics.inbox.bob")
        ack = await alice.call("mics.message.send", to_user_id="bob", body={"n": n})
        assert (await bob.next_event("mics.inbox.bob"))["msg_id"] == ack["msg_id"]
        synced = await bob.call("mics.inbox.sync", since_seq=0)
        assert synced["messages"][-1]["msg_id"] == ack["msg_id"] and synced["complete"]


@pytest.mark.parametrize("serializer", SERIALIZERS)
@pytest_twisted.ensureDeferred
async def test_the_widest_values_every_serializer_carries_are_accepted_and_arrive_intact(make_tenant, serializer):
    tenant = await make_tenant(check_message_hook=False)
    alice = await tenant.user("alice", serializer=serializer)
    body = {"max": 2**64 - 1, "min": -(2**63), "f": 1.5, "deep": nested(30), "text": "\u00e9\U0001f600",
            "mid\u0000nul": "a\u0000b"}  # fmt: skip
    for n, ser in enumerate(SERIALIZERS):
        bob = await tenant.user("bob", f"dev{n}", serializer=ser)
        await bob.listen("mics.inbox.bob")
        await alice.call("mics.message.send", to_user_id="bob", body=body, content_type="\u00e9/x")
        event = await bob.next_event("mics.inbox.bob")
        assert event["body"] == body and event["content_type"] == "\u00e9/x"
        await bob.close()


@pytest.mark.parametrize(
    "procedure,args",
    [
        ("mics.message.send", ("bob", "hi")),
        ("mics.group.send", ("g1", "hi")),
        ("mics.inbox.sync", (0,)),
        ("mics.message.receipt", ("bob", ["m1"], "read")),
        ("mics.signal.send", ("bob", {})),
        ("mics.presence.get", (["bob"],)),
        ("mics.ping", (1,)),
    ],
)
@pytest_twisted.ensureDeferred
async def test_positional_arguments_are_invalid_message_not_a_python_error(make_tenant, procedure, args):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    with pytest.raises(ApplicationError) as refused:
        await alice.call(procedure, *args)
    assert refused.value.error == "mics.error.invalid_message"
    assert "positional" in refused.value.kwargs["message"] and "TypeError" not in str(refused.value)


@pytest_twisted.ensureDeferred
async def test_backend_and_admin_procedures_refuse_positional_arguments_too(make_tenant):
    tenant = await make_tenant()
    backend = await tenant.backend()
    for procedure, args in (("mics.session.list", ("bob",)), ("mics.group.members_changed", ("g", ["a"]))):
        with pytest.raises(ApplicationError) as refused:
            await backend.call(procedure, *args)
        assert refused.value.error == "mics.error.invalid_message"
    for procedure, args in (("mics.admin.tenant.get", (tenant.tenant_id,)), ("mics.admin.stats", ("x",))):
        with pytest.raises(ApplicationError) as refused:
            await tenant.admin.call(procedure, *args)
        assert refused.value.error == "mics.error.invalid_message"


@pytest_twisted.ensureDeferred
async def test_invalid_strings_in_receipts_sync_and_presence_are_refused(make_tenant):
    tenant = await make_tenant()
    mallory = await tenant.user("mallory", serializer="json-escaping")
    for procedure, kwargs in (
        ("mics.message.receipt", {"to_user_id": "bob", "msg_ids": ["m\udfff"], "kind": "read"}),
        ("mics.inbox.sync", {"since_seq": 0, "epoch": "e\udfff"}),
        ("mics.presence.get", {"user_ids": ["b\udfff"]}),
        ("mics.group.send", {"group_id": "g\udfff", "body": "x"}),
        ("mics.signal.send", {"to_user_id": "bob", "body": "\ud800"}),
    ):
        with pytest.raises(ApplicationError) as refused:
            await mallory.call(procedure, **kwargs)
        assert refused.value.error == "mics.error.invalid_message", procedure
    assert (await mallory.call("mics.ping"))["ts"] > 0, "the session is still fine"


@pytest_twisted.ensureDeferred
async def test_a_refused_value_is_never_delivered_live(make_tenant):
    tenant = await make_tenant(check_message_hook=False)
    bob = await tenant.user("bob")
    await bob.listen("mics.inbox.bob")
    mallory = await tenant.user("mallory", serializer="msgpack")
    with pytest.raises(ApplicationError):
        await mallory.call("mics.message.send", to_user_id="bob", body="\x00AAAA")
    with pytest.raises(TimeoutError):
        await bob.next_event("mics.inbox.bob", timeout=0.3)


@pytest_twisted.ensureDeferred
async def test_a_frame_the_routers_decoder_refuses_closes_only_that_connection_and_holds_nothing(make_tenant):
    tenant = await make_tenant(check_message_hook=False)
    bob = await tenant.user("bob")
    mallory = await tenant.user("mallory", serializer="cbor")
    with pytest.raises(ApplicationError):  # cbor2 refuses 400+ levels: the router drops the connection
        await mallory.call("mics.message.send", to_user_id="bob", body=nested(400))
    await mallory.left
    assert (await bob.call("mics.inbox.sync", since_seq=0))["last_seq"] == 0
