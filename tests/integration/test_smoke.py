"""A first end-to-end check: two users of a fresh tenant exchange a message."""

import pytest_twisted


@pytest_twisted.ensureDeferred
async def test_message_from_alice_reaches_bobs_inbox(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    bob = await tenant.user("bob")
    await bob.listen("mics.inbox.bob")
    ack = await alice.call("mics.message.send", to_user_id="bob", body={"text": "hi"})
    event = await bob.next_event("mics.inbox.bob")
    assert ack["status"] == "SENT" and ack["delivered"] == "online"
    assert event["msg_id"] == ack["msg_id"] and event["body"] == {"text": "hi"}
    assert event["from_user_id"] == "alice" and event["from_device_id"] == "d1" and event["seq"] == 1
