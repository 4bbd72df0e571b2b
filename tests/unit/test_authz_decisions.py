"""The user authorizer's decisions, and which of them may be cached (never per-user ones)."""

import pytest

from mics.authz import decide


@pytest.mark.parametrize(
    ("uri", "action", "match", "allow", "cache"),
    [
        ("mics.message.send", "call", None, True, True),
        ("mics.inbox.sync", "call", None, True, True),
        ("tenant.org.tree", "call", None, True, False),
        ("mics.session.kick", "call", None, False, True),
        ("wamp.session.kill", "call", None, False, True),
        ("mics.inbox.alice", "subscribe", "exact", True, False),
        ("mics.inbox.alice", "subscribe", None, True, False),
        ("mics.inbox.alice", "subscribe", "prefix", False, False),
        ("mics.inbox.bob", "subscribe", "exact", False, False),
        ("mics.inbox.", "subscribe", "prefix", False, False),
        ("mics..", "subscribe", "wildcard", False, False),
        ("mics.group.g1", "subscribe", "exact", True, True),
        ("mics.group.", "subscribe", "prefix", True, True),
        ("tenant.news", "subscribe", "exact", True, True),
        ("mics.event.", "subscribe", "prefix", False, False),
        ("mics.inbox.alice", "publish", None, False, True),
        ("tenant.news", "publish", None, False, True),
        ("tenant.x", "register", None, False, True),
    ],
)
def test_user_decisions(uri, action, match, allow, cache):
    decision = decide("alice", uri, action, match)
    assert decision["allow"] is allow and decision["cache"] is cache


@pytest.mark.parametrize(
    ("uri", "match", "presence", "allow"),
    [
        ("mics.presence.bob", "exact", True, True),
        ("mics.presence.bob", None, True, True),
        ("mics.presence.alice", None, True, True),
        ("mics.presence.bob", "prefix", True, False),
        ("mics.presence.bob", "wildcard", True, False),
        ("mics.presence.", "prefix", True, False),
        ("mics.presence.", "exact", True, False),
        ("mics.presence.b.b", "exact", True, False),
        ("mics.presence.bob", "exact", False, False),
        ("mics.presence..", "wildcard", True, False),
        ("mics.", "prefix", True, False),
    ],
)
def test_presence_watches_are_exact_and_never_cached(uri, match, presence, allow):
    """Crossbar's cache key has no match policy: a cached exact "yes" would also let a prefix
    subscription on the same URI through, and presence_queries or the watch cap may change."""
    decision = decide("alice", uri, "subscribe", match, presence)
    assert decision["allow"] is allow and decision["cache"] is False


def test_recall_and_edit_are_user_procedures():
    for uri in ("mics.message.recall", "mics.message.edit"):
        assert decide("alice", uri, "call", None) == {"allow": True, "disclose": True, "cache": True}


def test_allowed_calls_disclose_the_caller():
    assert decide("alice", "mics.message.send", "call", None)["disclose"] is True
    assert decide("alice", "tenant.x", "call", None)["disclose"] is True
