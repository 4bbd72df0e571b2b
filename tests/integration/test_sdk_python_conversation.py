"""The Python SDK's section 11 helpers against a real node: mentions and replies on send, recall and
edit folded into a Timeline, throttled typing, presence watches with callbacks, typed errors."""

from __future__ import annotations

from typing import Any

import pytest
import pytest_twisted
from sdk_devices import Devices

from mics_client import PresenceChange, Timeline, errors
from wamp_clients import sleep


@pytest_twisted.ensureDeferred
async def test_mentions_and_replies_are_sent_and_received_typed(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant()
    tenant.logic.groups["team"] = ["alice", "bob"]
    alice, bob = await device(tenant, "alice"), await device(tenant, "bob")
    await bob.client.subscribe_group("team")
    ack = await alice.client.send_group("team", "hi @bob", mentions=["bob"], reply_to="m-0")
    got = await bob.next_message()
    assert (got.msg_id, got.mentions, got.reply_to) == (ack.msg_id, ["bob"], "m-0")
    reply = await bob.client.send("alice", "hi", reply_to=got.msg_id)
    back = await alice.next_message()
    assert (back.msg_id, back.reply_to, back.mentions) == (reply.msg_id, got.msg_id, None)


@pytest_twisted.ensureDeferred
async def test_a_timeline_shows_edits_and_recalls_live_and_after_a_sync(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant()
    alice, bob = await device(tenant, "alice"), await device(tenant, "bob")
    timeline = Timeline()
    recalls, edits = [], []
    bob.client.on_recall(recalls.append)
    bob.client.on_edit(edits.append)
    first = await alice.client.send("bob", "frist")
    second = await alice.client.send("bob", "oops")
    for _ in range(2):
        timeline.apply(await bob.next_message())
    await alice.client.edit(first.msg_id, "first")
    await alice.client.recall(second.msg_id)
    for _ in range(2):
        timeline.apply(await bob.next_message())
    shown = {m.msg_id: m for m in timeline}
    assert shown[first.msg_id].body == "first" and shown[first.msg_id].edited_at
    assert shown[second.msg_id].body is None and shown[second.msg_id].recalled
    assert [m.ref_msg_id for m in edits] == [first.msg_id] and [m.ref_msg_id for m in recalls] == [second.msg_id]
    # a device that syncs later gets the held tombstone and the edited body, then the changes themselves
    late = await device(tenant, "bob", "tablet")
    fresh = Timeline()
    for message in list(late.messages):
        fresh.apply(message)
    assert [(m.msg_id, m.body, m.recalled) for m in fresh] == [
        (first.msg_id, "first", None),
        (second.msg_id, None, True),
    ]


@pytest_twisted.ensureDeferred
async def test_recall_and_edit_errors_are_typed(make_tenant: Any, device: Devices) -> None:
    tenant = await make_tenant()
    alice, mallory = await device(tenant, "alice"), await device(tenant, "mallory")
    sent = await alice.client.send("bob", "mine")
    with pytest.raises(errors.Rejected) as foreign:
        await mallory.client.recall(sent.msg_id)
    assert foreign.value.code == 403
    with pytest.raises(errors.NotFound) as unknown:
        await alice.client.edit("0" * 32, "x")
    assert unknown.value.code == 404
    with pytest.raises(errors.Rejected) as hook:
        await alice.client.edit(sent.msg_id, "forbidden")
    assert hook.value.reason == "contains a forbidden word"


@pytest_twisted.ensureDeferred
async def test_typing_is_throttled_per_conversation_and_arrives_as_typing_callbacks(
    make_tenant: Any, device: Devices
) -> None:
    tenant = await make_tenant()
    tenant.logic.groups["team"] = ["alice", "bob"]
    alice = await device(tenant, "alice", typing_interval_s=0.5)
    bob = await device(tenant, "bob")
    await bob.client.subscribe_group("team")
    typing: list[Any] = []
    bob.client.on_typing(typing.append)
    assert await alice.client.typing(to_user_id="bob") is not None
    assert await alice.client.typing(to_user_id="bob") is None, "throttled"
    assert await alice.client.typing(group_id="team") is not None, "another conversation"
    assert await alice.client.typing(to_user_id="bob", active=False) is not None, "stopping is never throttled"
    assert await alice.client.typing(to_user_id="bob", active=False) is None, "nothing more to stop"
    await sleep(0.6)
    assert await alice.client.typing(to_user_id="bob") is not None
    await sleep(0.3)
    assert [(m.typing, m.group_id) for m in typing] == [(True, None), (True, "team"), (False, None), (True, None)]
    with pytest.raises(ValueError):
        await alice.client.typing()


@pytest_twisted.ensureDeferred
async def test_a_presence_watch_gets_the_current_state_then_every_change_and_survives_a_reconnect(
    make_tenant: Any, device: Devices
) -> None:
    tenant = await make_tenant()
    carol = await device(tenant, "carol", backoff_initial_s=0.05)
    seen: list[PresenceChange] = []
    await carol.client.watch_presence("alice", seen.append)
    assert [(c.online, c.snapshot) for c in seen] == [(False, True)]
    alice = await device(tenant, "alice", "phone")
    await sleep(0.3)
    assert (seen[-1].online, seen[-1].devices, seen[-1].snapshot) == (True, ["phone"], False)
    reconnected = carol.next_connect()
    carol.client._session._transport.dropConnection(abort=True)
    await alice.client.close()  # while carol is away: her snapshot after the reconnect says so
    await reconnected
    await sleep(0.3)
    assert (seen[-1].online, seen[-1].snapshot) == (False, True)
    await device(tenant, "alice", "laptop")  # and the watch is live again
    await sleep(0.3)
    assert (seen[-1].online, seen[-1].devices, seen[-1].snapshot) == (True, ["laptop"], False)
    await carol.client.unwatch_presence("alice")
    count = len(seen)
    await device(tenant, "alice", "tablet")
    await sleep(0.3)
    assert len(seen) == count, "unwatched"


@pytest_twisted.ensureDeferred
async def test_a_presence_watch_is_refused_with_a_typed_error_when_presence_is_off(
    make_tenant: Any, device: Devices
) -> None:
    tenant = await make_tenant(presence_queries=False)
    carol = await device(tenant, "carol")
    with pytest.raises(errors.NotAuthorized):
        await carol.client.watch_presence("alice", lambda change: None)
