"""Catch-up: seq, epoch, complete, TTLs and caps of the held inbox (protocol.md section 4)."""

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from checks import NEAR_MAX_BODY, fill_inbox, sync_pages

from wamp_clients import sleep


@pytest_twisted.ensureDeferred
async def test_offline_user_gets_everything_sent_meanwhile_by_sync(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    acks = [await alice.call("mics.message.send", to_user_id="bob", body=f"m{i}") for i in range(5)]
    assert all(a["delivered"] == "buffered" for a in acks)
    bob = await tenant.user("bob")
    synced = await bob.call("mics.inbox.sync", since_seq=0)
    assert [m["msg_id"] for m in synced["messages"]] == [a["msg_id"] for a in acks]
    assert [m["seq"] for m in synced["messages"]] == [1, 2, 3, 4, 5]
    assert synced["last_seq"] == 5 and synced["complete"] is True and isinstance(synced["epoch"], str)


@pytest_twisted.ensureDeferred
async def test_sync_since_a_seq_returns_only_newer_messages(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    for i in range(4):
        await alice.call("mics.message.send", to_user_id="bob", body=i)
    bob = await tenant.user("bob")
    first = await bob.call("mics.inbox.sync", since_seq=0)
    later = await bob.call("mics.inbox.sync", since_seq=2, epoch=first["epoch"])
    assert [m["body"] for m in later["messages"]] == [2, 3] and later["complete"] is True
    assert (await bob.call("mics.inbox.sync", since_seq=4, epoch=first["epoch"]))["messages"] == []


@pytest_twisted.ensureDeferred
async def test_empty_inbox_reports_last_seq_zero_and_complete(make_tenant):
    tenant = await make_tenant()
    bob = await tenant.user("bob")
    synced = await bob.call("mics.inbox.sync")
    assert synced["messages"] == [] and synced["last_seq"] == 0 and synced["complete"] is True


@pytest_twisted.ensureDeferred
async def test_seqs_are_consecutive_across_chats_copies_and_receipts(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    bob = await tenant.user("bob")
    await bob.listen("mics.inbox.bob")
    a1 = await alice.call("mics.message.send", to_user_id="bob", body="hi")  # bob 1, alice copy 1
    await bob.next_event("mics.inbox.bob")
    await bob.call(
        "mics.message.receipt", to_user_id="alice", msg_ids=[a1["msg_id"]], kind="delivered"
    )  # alice 2, bob copy 2
    b1 = await bob.call("mics.message.send", to_user_id="alice", body="yo")  # alice 3, bob copy 3
    await alice.call("mics.signal.send", to_user_id="bob", body={"ice": 1})  # no seq
    a2 = await alice.call("mics.message.send", to_user_id="bob", body="again")  # bob 4, alice copy 4
    assert (a1["seq"], b1["seq"], a2["seq"]) == (1, 3, 4)
    synced = await alice.call("mics.inbox.sync", since_seq=0)
    assert [m["seq"] for m in synced["messages"]] == [1, 2, 3, 4]
    assert [m["type"] for m in synced["messages"]] == ["chat", "receipt", "chat", "chat"]


@pytest_twisted.ensureDeferred
async def test_a_reconnecting_device_misses_nothing_within_the_replay_window(make_tenant):
    tenant = await make_tenant(replay_window_s=60)
    alice = await tenant.user("alice")
    bob = await tenant.user("bob")
    await bob.listen("mics.inbox.bob")
    await alice.call("mics.message.send", to_user_id="bob", body="seen live")
    live = await bob.next_event("mics.inbox.bob")
    await bob.close()
    missed = await alice.call("mics.message.send", to_user_id="bob", body="while reconnecting")
    bob_again = await tenant.user("bob")
    synced = await bob_again.call("mics.inbox.sync", since_seq=live["seq"], epoch=None)
    assert [m["msg_id"] for m in synced["messages"]] == [missed["msg_id"]] and synced["complete"]


@pytest_twisted.ensureDeferred
async def test_messages_older_than_offline_ttl_are_gone_and_sync_says_incomplete(make_tenant):
    tenant = await make_tenant(offline_ttl_s=1)
    alice = await tenant.user("alice")
    await alice.call("mics.message.send", to_user_id="bob", body="old")
    await sleep(1.2)
    fresh = await alice.call("mics.message.send", to_user_id="bob", body="new")
    bob = await tenant.user("bob")
    synced = await bob.call("mics.inbox.sync", since_seq=0)
    assert [m["msg_id"] for m in synced["messages"]] == [fresh["msg_id"]]
    assert synced["complete"] is False and synced["last_seq"] == 2


@pytest_twisted.ensureDeferred
async def test_per_user_cap_evicts_the_oldest_and_sync_says_incomplete(make_tenant):
    tenant = await make_tenant(offline_max_per_user=3, check_message_hook=False)
    alice = await tenant.user("alice")
    for i in range(5):
        await alice.call("mics.message.send", to_user_id="bob", body=i)
    bob = await tenant.user("bob")
    synced = await bob.call("mics.inbox.sync", since_seq=0)
    assert [m["body"] for m in synced["messages"]] == [2, 3, 4] and synced["complete"] is False
    since_held = await bob.call("mics.inbox.sync", since_seq=2, epoch=synced["epoch"])
    assert since_held["complete"] is True


@pytest_twisted.ensureDeferred
async def test_tenant_byte_cap_evicts_the_oldest_across_users(make_tenant):
    tenant = await make_tenant(offline_max_bytes=2048, check_message_hook=False)
    alice = await tenant.user("alice")
    for i in range(8):
        await alice.call("mics.message.send", to_user_id=f"u{i % 2}", body="x" * 200)
    u0 = await tenant.user("u0")
    synced = await u0.call("mics.inbox.sync", since_seq=0)
    assert synced["complete"] is False and synced["last_seq"] == 4
    assert 0 < len(synced["messages"]) < 4
    stats = await tenant.admin.call("mics.admin.stats", tenant_id=tenant.tenant_id)
    assert stats["tenants"][tenant.tenant_id]["buffer_held_bytes"] <= 2048
    assert stats["tenants"][tenant.tenant_id]["buffer_evicted"] > 0


@pytest_twisted.ensureDeferred
async def test_sync_with_another_epoch_returns_what_is_held_as_incomplete(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    ack = await alice.call("mics.message.send", to_user_id="bob", body="x")
    bob = await tenant.user("bob")
    synced = await bob.call("mics.inbox.sync", since_seq=7, epoch="an-old-epoch")
    assert [m["msg_id"] for m in synced["messages"]] == [ack["msg_id"]] and synced["complete"] is False


@pytest_twisted.ensureDeferred
async def test_sync_from_a_seq_beyond_the_stream_says_incomplete(make_tenant):
    tenant = await make_tenant()
    bob = await tenant.user("bob")
    current = await bob.call("mics.inbox.sync")
    synced = await bob.call("mics.inbox.sync", since_seq=50, epoch=current["epoch"])
    assert synced["complete"] is False


@pytest.mark.parametrize("kwargs", [{"since_seq": -1}, {"since_seq": "3"}, {"since_seq": True}, {"epoch": 5}])
@pytest_twisted.ensureDeferred
async def test_bad_sync_arguments_fail_with_invalid_message(make_tenant, kwargs):
    tenant = await make_tenant()
    bob = await tenant.user("bob")
    with pytest.raises(ApplicationError) as err:
        await bob.call("mics.inbox.sync", **kwargs)
    assert err.value.error == "mics.error.invalid_message"


@pytest_twisted.ensureDeferred
async def test_users_only_ever_sync_their_own_inbox(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    await alice.call("mics.message.send", to_user_id="bob", body="private")
    mallory = await tenant.user("mallory")
    synced = await mallory.call("mics.inbox.sync", since_seq=0, user_id="bob")
    assert synced["messages"] == []


@pytest.mark.parametrize("serializer", ["json", "msgpack", "cbor"])
@pytest_twisted.ensureDeferred
async def test_an_inbox_full_of_max_size_messages_still_syncs_in_pages_with_every_serializer(make_tenant, serializer):
    """Poisoning through sync size: 40 messages of ~512 KiB held for bob are 20 MiB, far over the router's
    1 MiB frame cap; each sync answers one page under it (`more`), and bob gets every message in order."""
    tenant = await make_tenant(max_payload_bytes=512 * 1024, max_user_message_qps=1000)
    sent = await fill_inbox(await tenant.user("mallory"), "bob", 40)
    bob = await tenant.user("bob", serializer=serializer)
    got, pages = await sync_pages(bob)
    assert [m["msg_id"] for m in got] == sent and [m["seq"] for m in got] == list(range(1, 41))
    assert all(m["body"] == NEAR_MAX_BODY for m in got) and pages == 40  # one near-max message a page
