"""What a user and a backend may do (protocol.md section 3): every forbidden action is refused,
and nothing published, registered or called in one tenant realm is visible in another."""

import pytest
import pytest_twisted
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import SubscribeOptions

NOT_AUTHORIZED = "wamp.error.not_authorized"


async def refused(call) -> str:
    with pytest.raises(ApplicationError) as err:
        await call
    return err.value.error


@pytest_twisted.ensureDeferred
async def test_user_may_subscribe_to_own_inbox_but_not_to_anothers(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    await alice.listen("mics.inbox.alice")
    assert await refused(alice.subscribe(lambda **kw: None, "mics.inbox.bob")) == NOT_AUTHORIZED


@pytest_twisted.ensureDeferred
async def test_allowed_inbox_subscription_of_one_user_is_not_cached_for_another(make_tenant):
    tenant = await make_tenant()
    bob = await tenant.user("bob")
    await bob.listen("mics.inbox.bob")
    mallory = await tenant.user("mallory")
    assert await refused(mallory.subscribe(lambda **kw: None, "mics.inbox.bob")) == NOT_AUTHORIZED


@pytest.mark.parametrize(
    ("topic", "match"),
    [
        ("mics.inbox.", "prefix"),
        ("mics.inbox.alice", "prefix"),
        ("mics..", "wildcard"),
        ("mics.", "prefix"),
        ("mics.event.", "prefix"),
        ("", "prefix"),
    ],
)
@pytest_twisted.ensureDeferred
async def test_user_may_not_subscribe_with_patterns_that_reach_other_inboxes(make_tenant, topic, match):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    options = SubscribeOptions(match=match)
    assert await refused(alice.subscribe(lambda **kw: None, topic, options=options)) == NOT_AUTHORIZED


@pytest_twisted.ensureDeferred
async def test_user_may_subscribe_to_group_topics_exactly_or_by_prefix(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    await alice.listen("mics.group.g1")
    await alice.listen("mics.group.", match="prefix")
    await alice.listen("tenant.news")


@pytest.mark.parametrize(
    "topic", ["mics.inbox.bob", "mics.inbox.alice", "mics.group.g1", "mics.event.x", "tenant.news"]
)
@pytest_twisted.ensureDeferred
async def test_user_may_not_publish_anything(make_tenant, topic):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    bob = await tenant.user("bob")
    await bob.listen("mics.inbox.bob")
    from autobahn.wamp.types import PublishOptions

    assert await refused(alice.publish(topic, text="spoof", options=PublishOptions(acknowledge=True))) == NOT_AUTHORIZED
    assert await bob.no_event("mics.inbox.bob")


@pytest.mark.parametrize("procedure", ["mics.message.new", "tenant.mine", "mics.hook.other", "anything"])
@pytest_twisted.ensureDeferred
async def test_user_may_not_register_procedures(make_tenant, procedure):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    assert await refused(alice.register(lambda: None, procedure)) == NOT_AUTHORIZED


@pytest_twisted.ensureDeferred
async def test_nobody_can_take_over_a_mics_procedure(make_tenant):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    backend = await tenant.backend("backend-z")
    for session in (alice, backend):
        assert await refused(session.register(lambda **kw: None, "mics.message.send")) in (
            NOT_AUTHORIZED,
            "wamp.error.procedure_already_exists",
        )
    ack = await alice.call("mics.message.send", to_user_id="bob", body="still ours")
    assert ack["status"] == "SENT"


@pytest.mark.parametrize(
    "procedure",
    [
        "mics.session.list",
        "mics.session.kick",
        "mics.group.members_changed",
        "mics.hook.auth",
        "mics.authorize",
        "wamp.session.kill",
        "wamp.session.list",
        "mics.admin.tenant.list",
    ],
)
@pytest_twisted.ensureDeferred
async def test_user_may_not_call_backend_admin_or_meta_procedures(make_tenant, procedure):
    tenant = await make_tenant()
    alice = await tenant.user("alice")
    assert await refused(alice.call(procedure)) == NOT_AUTHORIZED


@pytest_twisted.ensureDeferred
async def test_user_calls_a_tenant_procedure_and_the_backend_sees_user_and_device(make_tenant):
    tenant = await make_tenant()
    backend = await tenant.backend("backend-org")
    from autobahn.wamp.types import RegisterOptions

    async def org_tree(details=None):
        caller = await backend.call("wamp.session.get", details.caller)
        return {"user": details.caller_authid, "device": caller["authextra"]["device_id"]}

    await backend.register(org_tree, "tenant.org.tree", options=RegisterOptions(details_arg="details"))
    alice = await tenant.user("alice", "laptop")
    assert await alice.call("tenant.org.tree") == {"user": "alice", "device": "laptop"}


@pytest_twisted.ensureDeferred
async def test_backend_publishes_tenant_topics_that_users_receive(make_tenant):
    tenant = await make_tenant()
    backend = await tenant.backend("backend-news")
    alice = await tenant.user("alice")
    await alice.listen("tenant.news")
    from autobahn.wamp.types import PublishOptions

    await backend.publish("tenant.news", headline="hello", options=PublishOptions(acknowledge=True))
    assert (await alice.next_event("tenant.news")) == {"headline": "hello"}


@pytest.mark.parametrize("topic", ["mics.inbox.alice", "mics.group.g1"])
@pytest_twisted.ensureDeferred
async def test_backend_may_not_publish_to_mics_topics(make_tenant, topic):
    tenant = await make_tenant()
    backend = await tenant.backend("backend-x")
    from autobahn.wamp.types import PublishOptions

    assert await refused(backend.publish(topic, x=1, options=PublishOptions(acknowledge=True))) == NOT_AUTHORIZED


@pytest_twisted.ensureDeferred
async def test_backend_may_not_register_mics_procedures_other_than_hooks(make_tenant):
    tenant = await make_tenant()
    backend = await tenant.backend("backend-y")
    assert await refused(backend.register(lambda: None, "mics.message.other")) == NOT_AUTHORIZED


@pytest.mark.parametrize("procedure", ["wamp.session.kill", "mics.authorize", "mics.admin.stats", "wamp.session.list"])
@pytest_twisted.ensureDeferred
async def test_backend_may_not_call_kill_the_authorizer_or_admin_procedures(make_tenant, procedure):
    tenant = await make_tenant()
    backend = await tenant.backend("backend-y")
    assert await refused(backend.call(procedure)) == NOT_AUTHORIZED


@pytest_twisted.ensureDeferred
async def test_messages_never_cross_tenants_even_for_the_same_user_id(make_tenant):
    one = await make_tenant()
    two = await make_tenant()
    bob_one = await one.user("bob")
    bob_two = await two.user("bob")
    await bob_one.listen("mics.inbox.bob")
    await bob_two.listen("mics.inbox.bob")
    alice_one = await one.user("alice")
    await alice_one.call("mics.message.send", to_user_id="bob", body="for tenant one")
    assert (await bob_one.next_event("mics.inbox.bob"))["body"] == "for tenant one"
    assert await bob_two.no_event("mics.inbox.bob")
    synced = await bob_two.call("mics.inbox.sync", since_seq=0)
    assert synced["messages"] == []


@pytest_twisted.ensureDeferred
async def test_a_tenant_procedure_is_not_callable_from_another_tenant(make_tenant):
    one = await make_tenant()
    two = await make_tenant()
    backend = await one.backend("backend-p")
    await backend.register(lambda: "secret data", "tenant.private")
    alice_two = await two.user("alice")
    with pytest.raises(ApplicationError) as err:
        await alice_two.call("tenant.private")
    assert err.value.error == "wamp.error.no_such_procedure"


@pytest_twisted.ensureDeferred
async def test_presence_queries_are_refused_when_the_tenant_disables_them(make_tenant):
    tenant = await make_tenant(presence_queries=False)
    alice = await tenant.user("alice")
    assert await refused(alice.call("mics.presence.get", user_ids=["bob"])) == NOT_AUTHORIZED
    backend = await tenant.backend("backend-presence")
    assert (await backend.call("mics.presence.get", user_ids=["alice"]))["alice"]["online"] is True
