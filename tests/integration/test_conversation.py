"""Section 11 on a real node: mentions and replies, recall and edit, group signals, live presence,
per-user and per-address limits, offline push triggers. Every rule and error of the section, and
that a hostile user's calls never touch another user's messages or watches."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from test_events_sinks import file_events, read_lines
from twisted.internet.defer import DeferredList, ensureDeferred

from harness import Node, http_get
from wamp_clients import JoinRefused, TestSession, sleep


async def refused(call: Any, uri: str, code: int | None = None) -> ApplicationError:
    """Await `call`, which must fail with `uri` (and `code`)."""
    with pytest.raises(ApplicationError) as failed:
        await call
    assert failed.value.error == uri, failed.value
    if code is not None:
        assert failed.value.kwargs["code"] == code
    return failed.value


async def listening(tenant: Any, user_id: str, device_id: str = "d1") -> TestSession:
    session = await tenant.user(user_id, device_id)
    await session.listen(f"mics.inbox.{user_id}")
    return session


def events_path(node: Node, tenant: Any) -> Path:
    return node.data_dir / "events" / f"{tenant.tenant_id}.jsonl"


# -- mentions and replies ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("hooks", "encoding"), [("wamp", "json"), ("http", "json"), ("http", "protobuf")])
@pytest_twisted.ensureDeferred
async def test_mentions_and_reply_to_reach_members_sync_and_the_check_hook(make_tenant, hooks, encoding):
    tenant = await make_tenant(hooks=hooks, encoding=encoding, group_buffering=True)
    tenant.logic.groups["team"] = ["alice", "bob", "carol"]
    alice = await tenant.user("alice")
    bob = await tenant.user("bob")
    await bob.listen("mics.group.team")
    ack = await alice.call("mics.group.send", group_id="team", body="@bob look", mentions=["bob"], reply_to="m-0")
    live = await bob.next_event("mics.group.team")
    assert (live["msg_id"], live["mentions"], live["reply_to"]) == (ack["msg_id"], ["bob"], "m-0")
    checked = tenant.logic.seen_messages[-1]
    assert checked["mentions"] == ["bob"] and checked["reply_to"] == "m-0"
    carol = await tenant.user("carol")
    [held] = (await carol.call("mics.inbox.sync", since_seq=0))["messages"]
    assert held["mentions"] == ["bob"] and held["reply_to"] == "m-0"
    reply = await bob.call("mics.message.send", to_user_id="alice", body="seen", reply_to=ack["msg_id"])
    assert (
        tenant.logic.seen_messages[-1]["reply_to"] == ack["msg_id"] and "mentions" not in tenant.logic.seen_messages[-1]
    )
    assert reply["status"] == "SENT"


@pytest.mark.parametrize(
    ("procedure", "kwargs"),
    [
        ("mics.group.send", {"group_id": "team", "body": 1, "mentions": ["bob", "bob"]}),
        ("mics.group.send", {"group_id": "team", "body": 1, "mentions": [f"u{i}" for i in range(101)]}),
        ("mics.group.send", {"group_id": "team", "body": 1, "mentions": ["a.b"]}),
        ("mics.group.send", {"group_id": "team", "body": 1, "mentions": "bob"}),
        ("mics.group.send", {"group_id": "team", "body": 1, "reply_to": "r" * 129}),
        ("mics.message.send", {"to_user_id": "bob", "body": 1, "reply_to": ["m"]}),
        ("mics.message.send", {"to_user_id": "bob", "body": 1, "mentions": ["bob"]}),
        ("mics.message.recall", {}),
        ("mics.message.recall", {"msg_id": 7}),
        ("mics.message.edit", {"msg_id": "m1"}),
        ("mics.signal.send", {"to_user_id": "bob", "group_id": "team", "body": 1}),
    ],
)
@pytest_twisted.ensureDeferred
async def test_bad_section_11_arguments_are_invalid_messages(make_tenant, procedure, kwargs):
    tenant = await make_tenant()
    tenant.logic.groups["team"] = ["alice", "bob"]
    alice = await tenant.user("alice")
    await refused(alice.call(procedure, **kwargs), "mics.error.invalid_message", 400)
    await refused(alice.call("mics.message.recall", "m1"), "mics.error.invalid_message", 400)


# -- recall and edit ---------------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_a_recall_reaches_the_recipient_and_the_senders_other_device_and_sync_never_returns_the_body(
    make_tenant, mics_node
):
    tenant = await make_tenant(event_sinks=["file"])
    phone = await listening(tenant, "alice", "phone")
    laptop = await listening(tenant, "alice", "laptop")
    bob = await listening(tenant, "bob")
    sent = await phone.call("mics.message.send", to_user_id="bob", body={"text": "wrong chat"})
    assert (await bob.next_event("mics.inbox.bob"))["msg_id"] == sent["msg_id"]
    assert (await laptop.next_event("mics.inbox.alice"))["msg_id"] == sent["msg_id"]
    ack = await laptop.call("mics.message.recall", msg_id=sent["msg_id"])  # any device of the sender
    assert ack["status"] == "SENT" and ack["delivered"] == "online"
    notice = await bob.next_event("mics.inbox.bob")
    assert (notice["type"], notice["ref_msg_id"], notice["body"], notice["seq"]) == ("recall", sent["msg_id"], None, 2)
    assert (await phone.next_event("mics.inbox.alice"))["ref_msg_id"] == sent["msg_id"]
    assert await laptop.no_event("mics.inbox.alice"), "not back to the device that recalled"
    synced = (await bob.call("mics.inbox.sync", since_seq=0))["messages"]
    assert [(m["msg_id"], m["seq"], m["body"], m.get("recalled")) for m in synced] == [
        (sent["msg_id"], 1, None, True),
        (ack["msg_id"], 2, None, None),
    ]
    assert "wrong chat" not in json.dumps(await phone.call("mics.inbox.sync", since_seq=0))
    events = await file_events(events_path(mics_node, tenant), 5)
    [recall] = [e for e in events if e["event_type"] == "MESSAGE_RECALL"]
    assert recall["msg_id"] == ack["msg_id"] and recall["event_data"]["ref_msg_id"] == sent["msg_id"]
    assert recall["to_user_id"] == "bob" and recall["user_id"] == "alice"


@pytest_twisted.ensureDeferred
async def test_an_edit_changes_the_held_body_and_reaches_the_recipient(make_tenant):
    tenant = await make_tenant(hooks="http")
    alice = await tenant.user("alice")
    bob = await listening(tenant, "bob")
    sent = await alice.call("mics.message.send", to_user_id="bob", body="teh typo")
    await bob.next_event("mics.inbox.bob")
    ack = await alice.call("mics.message.edit", msg_id=sent["msg_id"], body="the typo", content_type="text/plain")
    live = await bob.next_event("mics.inbox.bob")
    assert (live["type"], live["ref_msg_id"], live["body"], live["msg_id"]) == (
        "edit", sent["msg_id"], "the typo", ack["msg_id"])  # fmt: skip
    assert tenant.logic.seen_messages[-1]["type"] == "edit", "the check-message hook saw the edit"
    [original, edit] = (await bob.call("mics.inbox.sync", since_seq=0))["messages"]
    assert original["body"] == "the typo" and original["edited_at"] >= sent["ts"] and original["seq"] == 1
    assert original["content_type"] == "text/plain" and edit["seq"] == 2


@pytest_twisted.ensureDeferred
async def test_recall_and_edit_errors_follow_the_contract_and_never_touch_another_users_message(make_tenant):
    tenant = await make_tenant(max_payload_bytes=100)
    alice, mallory = await tenant.user("alice"), await tenant.user("mallory")
    bob = await listening(tenant, "bob")
    sent = await alice.call("mics.message.send", to_user_id="bob", body="keep me")
    await bob.next_event("mics.inbox.bob")
    await refused(mallory.call("mics.message.recall", msg_id=sent["msg_id"]), "mics.error.rejected", 403)
    await refused(mallory.call("mics.message.edit", msg_id=sent["msg_id"], body="pwned"), "mics.error.rejected", 403)
    await refused(alice.call("mics.message.recall", msg_id="0" * 32), "mics.error.not_found", 404)
    hook_no = await refused(
        alice.call("mics.message.edit", msg_id=sent["msg_id"], body="forbidden"), "mics.error.rejected"
    )
    assert hook_no.kwargs["reason"] == "contains a forbidden word"
    await refused(
        alice.call("mics.message.edit", msg_id=sent["msg_id"], body="x" * 200), "mics.error.payload_too_large", 413
    )
    assert await bob.no_event("mics.inbox.bob"), "no refused change was delivered"
    [held] = (await bob.call("mics.inbox.sync", since_seq=0))["messages"]
    assert held["body"] == "keep me" and "edited_at" not in held
    await alice.call("mics.message.recall", msg_id=sent["msg_id"])
    await refused(alice.call("mics.message.recall", msg_id=sent["msg_id"]), "mics.error.not_found", 404)
    await refused(alice.call("mics.message.edit", msg_id=sent["msg_id"], body="back"), "mics.error.not_found", 404)
    await tenant.configure(recall_window_s=0)
    fresh = await alice.call("mics.message.send", to_user_id="bob", body="no take-backs")
    await refused(alice.call("mics.message.recall", msg_id=fresh["msg_id"]), "mics.error.rejected", 403)


@pytest_twisted.ensureDeferred
async def test_a_message_older_than_the_recall_window_is_not_found(make_tenant):
    tenant = await make_tenant(recall_window_s=1)
    alice = await tenant.user("alice")
    sent = await alice.call("mics.message.send", to_user_id="bob", body="too late")
    await sleep(1.3)
    await refused(alice.call("mics.message.edit", msg_id=sent["msg_id"], body="x"), "mics.error.not_found", 404)


@pytest_twisted.ensureDeferred
async def test_a_group_recall_reaches_the_members_and_tombstones_the_copies_held_for_offline_ones(make_tenant):
    tenant = await make_tenant(group_buffering=True)
    tenant.logic.groups["team"] = ["alice", "bob", "carol"]
    alice, bob = await tenant.user("alice"), await tenant.user("bob")
    await bob.listen("mics.group.team")
    sent = await alice.call("mics.group.send", group_id="team", body="spoiler", mentions=["carol"])
    await bob.next_event("mics.group.team")
    ack = await alice.call("mics.message.recall", msg_id=sent["msg_id"])
    assert ack["recipients"] == 3
    notice = await bob.next_event("mics.group.team")
    assert (notice["type"], notice["group_id"], notice["ref_msg_id"]) == ("recall", "team", sent["msg_id"])
    carol = await tenant.user("carol")
    held = (await carol.call("mics.inbox.sync", since_seq=0))["messages"]
    assert [(m["type"], m["body"], m.get("recalled")) for m in held] == [
        ("group_chat", None, True),
        ("recall", None, None),
    ]


# -- group signals ------------------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_a_group_signal_reaches_online_members_live_only_and_outsiders_are_refused(make_tenant, mics_node):
    tenant = await make_tenant(event_sinks=["file"])
    tenant.logic.groups["team"] = ["alice", "bob", "carol"]
    alice, bob, mallory = await tenant.user("alice"), await tenant.user("bob"), await tenant.user("mallory")
    for s in (alice, bob, mallory):
        await s.listen("mics.group.", match="prefix")
    ack = await alice.call("mics.signal.send", group_id="team", body={"typing": True})
    assert ack["delivered"] == "online" and "seq" not in ack
    got = await bob.next_event("mics.group.")
    assert (got["type"], got["group_id"], got["body"], got["from_user_id"]) == (
        "signal",
        "team",
        {"typing": True},
        "alice",
    )
    assert await alice.no_event("mics.group.") and await mallory.no_event("mics.group.")
    await refused(mallory.call("mics.signal.send", group_id="team", body={"typing": True}), "mics.error.rejected", 403)
    assert await bob.no_event("mics.group.")
    carol = await tenant.user("carol")
    assert (await carol.call("mics.inbox.sync", since_seq=0))["messages"] == []
    events = [json.loads(line) for line in read_lines(events_path(mics_node, tenant))]
    assert {e["event_type"] for e in events} == {"CONNECT_ONLINE"}, "signals make no events"


# -- live presence ------------------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_a_watcher_hears_each_change_of_a_users_online_devices(make_tenant):
    tenant = await make_tenant()
    carol = await tenant.user("carol")
    await carol.listen("mics.presence.alice")
    phone = await tenant.user("alice", "phone")
    assert _presence(await carol.next_event("mics.presence.alice")) == ("alice", True, ["phone"])
    laptop = await tenant.user("alice", "laptop")
    assert _presence(await carol.next_event("mics.presence.alice")) == ("alice", True, ["laptop", "phone"])
    await phone.close()
    assert _presence(await carol.next_event("mics.presence.alice")) == ("alice", True, ["laptop"])
    await laptop.close()
    event = await carol.next_event("mics.presence.alice")
    assert _presence(event) == ("alice", False, []) and isinstance(event["ts"], int)
    assert await carol.no_event("mics.presence.alice")


@pytest_twisted.ensureDeferred
async def test_watchers_on_every_serializer_get_the_same_presence_event(make_tenant):
    """One frame is built per serializer and written to each of its watchers (mics.router.frames)."""
    tenant = await make_tenant()
    watchers = [await tenant.user(f"w{i}", serializer=serializer) for i, serializer in
                enumerate(("json", "msgpack", "cbor", "json", "msgpack", "cbor"))]  # fmt: skip
    for watcher in watchers:
        await watcher.listen("mics.presence.al\u00efce")
    await tenant.user("al\u00efce", "t\u00e9l\u00e9phone")
    got = [await w.next_event("mics.presence.al\u00efce") for w in watchers]
    assert all(_presence(e) == ("al\u00efce", True, ["t\u00e9l\u00e9phone"]) for e in got)
    assert len({e["ts"] for e in got}) == 1


def _presence(event: dict[str, Any]) -> tuple[str, bool, list[str]]:
    return event["user_id"], event["online"], event["devices"]


@pytest.mark.parametrize(("topic", "match"), [("mics.presence.", "prefix"), ("mics.presence.al", "prefix"),
                                              ("mics.presence.alice", "prefix"), ("mics..alice", "wildcard"),
                                              ("mics.presence.a.b", None)])  # fmt: skip
@pytest_twisted.ensureDeferred
async def test_presence_is_watched_by_exact_name_only(make_tenant, topic, match):
    tenant = await make_tenant()
    first = await tenant.user("first")
    await first.listen("mics.presence.alice")  # an exact "yes" for this URI first: it must not be cached
    mallory = await tenant.user("mallory")
    await refused(mallory.listen(topic, match=match), "wamp.error.not_authorized")


@pytest_twisted.ensureDeferred
async def test_presence_watches_are_refused_when_presence_queries_are_off(make_tenant):
    tenant = await make_tenant(presence_queries=False)
    carol = await tenant.user("carol")
    await refused(carol.listen("mics.presence.alice"), "wamp.error.not_authorized")
    await tenant.configure(presence_queries=True)
    await carol.listen("mics.presence.alice")
    await tenant.configure(presence_queries=False)
    await tenant.user("alice")
    assert await carol.no_event("mics.presence.alice"), "turned off: no more events either"


@pytest_twisted.ensureDeferred
async def test_one_session_cannot_flood_the_router_with_presence_watches(make_tenant):
    from mics.authz import MAX_PRESENCE_WATCHES

    tenant = await make_tenant()
    mallory = await tenant.user("mallory")
    watches = [ensureDeferred(mallory.listen(f"mics.presence.u{i}")) for i in range(MAX_PRESENCE_WATCHES + 5)]
    results = await DeferredList(watches, consumeErrors=True)
    assert sum(ok for ok, _ in results) == MAX_PRESENCE_WATCHES
    assert all(r.value.error == "wamp.error.not_authorized" for ok, r in results if not ok)
    carol = await tenant.user("carol")
    await carol.listen("mics.presence.u1")  # another session is not affected


# -- limits ----------------------------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_a_users_message_rate_is_limited_across_devices_and_the_hits_are_counted_and_logged_once(
    make_tenant, mics_node
):
    tenant = await make_tenant(max_user_message_qps=5)
    phone, laptop = await tenant.user("alice", "phone"), await tenant.user("alice", "laptop")
    bob = await tenant.user("bob")
    results = await DeferredList(
        [(phone if i % 2 else laptop).call("mics.message.send", to_user_id="bob", body=i) for i in range(12)],
        consumeErrors=True,
    )
    limited = [r.value for ok, r in results if not ok]
    assert len(limited) >= 6 and all(e.error == "mics.error.rate_limited" and e.kwargs["code"] == 429 for e in limited)
    assert (await bob.call("mics.message.send", to_user_id="alice", body="me too"))["status"] == "SENT"
    _status, metrics = http_get(mics_node.http + "/metrics")
    hits = f'mics_limit_hits_total{{limit="max_user_message_qps",tenant="{tenant.tenant_id}"}}'
    assert hits.encode() in metrics
    await sleep(0.2)
    lines = [line for line in mics_node.process.tail(4000).splitlines()
             if "limit hit" in line and tenant.tenant_id in line]  # fmt: skip
    assert 1 <= len(lines) <= 2, lines
    assert re.search(r"limit=max_user_message_qps threshold=5 current=\d+ who=alice", lines[0])


@pytest_twisted.ensureDeferred
async def test_joins_from_one_address_are_limited_before_the_auth_hook(make_tenant, mics_node):
    tenant = await make_tenant(max_joins_per_ip_per_s=3)
    for i in range(3):
        await tenant.user(f"u{i}")
    asked = tenant.logic.calls["auth"]
    with pytest.raises(JoinRefused) as too_many:
        await tenant.user("u9")
    assert too_many.value.reason == "mics.error.connection_limit"
    assert tenant.logic.calls["auth"] == asked, "the hook was not asked"
    await sleep(1.1)
    await tenant.user("u9")
    _status, metrics = http_get(mics_node.http + "/metrics")
    assert (
        f'mics_limit_hits_total{{limit="max_joins_per_ip_per_s",tenant="{tenant.tenant_id}"}} 1.0'.encode() in metrics
    )


# -- offline push ---------------------------------------------------------------------------------------------
@pytest_twisted.ensureDeferred
async def test_an_offline_recipient_gets_one_push_trigger_per_conversation_through_the_wamp_and_file_sinks(
    make_tenant, mics_node
):
    tenant = await make_tenant(event_sinks=["wamp", "file"])
    tenant.logic.groups["team"] = ["alice", "bob", "carol"]
    pushes = await tenant.backend("backend-push")
    await pushes.listen("mics.event.offline_push")
    alice = await tenant.user("alice")
    first = await alice.call("mics.message.send", to_user_id="bob", body="ping")
    await alice.call("mics.message.send", to_user_id="bob", body="ping again")  # collapsed
    mention = await alice.call("mics.group.send", group_id="team", body="@bob", mentions=["bob", "mallory"])
    one = await pushes.next_event("mics.event.offline_push")
    two = await pushes.next_event("mics.event.offline_push")
    assert await pushes.no_event("mics.event.offline_push", 0.5)
    assert (one["user_id"], one["msg_id"], one["event_data"]["seq"]) == ("bob", first["msg_id"], 1)
    assert (two["user_id"], two["group_id"], two["msg_id"]) == ("bob", "team", mention["msg_id"])
    written = [json.loads(line) for line in read_lines(events_path(mics_node, tenant))]
    assert [e["msg_id"] for e in written if e["event_type"] == "OFFLINE_PUSH"] == [first["msg_id"], mention["msg_id"]]
    _status, metrics = http_get(mics_node.http + "/metrics")
    assert f'mics_offline_push_total{{outcome="collapsed",tenant="{tenant.tenant_id}"}} 1.0'.encode() in metrics


@pytest_twisted.ensureDeferred
async def test_a_delayed_push_trigger_is_dropped_when_the_user_comes_back_in_time(make_tenant):
    tenant = await make_tenant(event_sinks=["wamp"], push_delay_s=1, push_collapse_s=0)
    pushes = await tenant.backend("backend-push")
    await pushes.listen("mics.event.offline_push")
    alice = await tenant.user("alice")
    await alice.call("mics.message.send", to_user_id="bob", body="for bob")
    carol_msg = await alice.call("mics.message.send", to_user_id="carol", body="for carol")
    await tenant.user("bob")
    event = await pushes.next_event("mics.event.offline_push", timeout=3)
    assert (event["user_id"], event["msg_id"]) == ("carol", carol_msg["msg_id"])
    assert await pushes.no_event("mics.event.offline_push", 0.5)
