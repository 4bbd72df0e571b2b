"""The batched check-message hook (tenant config hook_batch_max > 1) behind GuardedHook.check_message:
gathering by size and by time, one verdict per message, and the single check's policy per batch call
and per message (timeout, failure, bulkhead, breaker, degrade to allow). The hook is the real WAMP
transport (mics.hooks.wamp) over a realm that answers like a tenant backend, on a fake clock."""

from __future__ import annotations

import itertools
from typing import Any

import msgpack
import pytest
from autobahn.wamp.exception import ApplicationError
from twisted.internet import defer, task

from mics import metrics, uris
from mics.config import TenantConfig
from mics.hooks import HookFailure, parse_members_reply, parse_verdicts_reply
from mics.hooks.batch import MAX_BATCH_BYTES, UNSUPPORTED_RETRY_S
from mics.hooks.policy import GuardedHook
from mics.hooks.wamp import WampHook
from mics.types import CheckVerdict

_tenants = itertools.count(1)


class Backend:
    """The tenant realm as the hook sees it: answers mics.hook.check_message(s) like a backend would."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self.batch_hook = True
        self.fail = False
        self.gate: defer.Deferred[None] | None = None  # hold the answers until the test opens it
        self.reply: Any = None  # a canned batch reply instead of the verdicts
        self.broken: Exception | None = None  # what the call raises, as a transport might

    def call(self, procedure: str, **kwargs: Any) -> defer.Deferred[Any]:
        self.calls.append((procedure, kwargs))
        if procedure == uris.HOOK_CHECK_MESSAGES and not self.batch_hook:
            return defer.fail(ApplicationError(ApplicationError.NO_SUCH_PROCEDURE, "no such procedure"))
        if self.fail:
            return defer.fail(ApplicationError("tenant.error.broken", "broken"))
        if self.broken is not None:
            return defer.fail(self.broken)
        if procedure == uris.HOOK_CHECK_MESSAGES:
            reply = self.reply or {"verdicts": [self._verdict(m) for m in kwargs["messages"]]}
        else:
            reply = self._verdict(kwargs)
        if self.gate is not None:
            return self.gate.addCallback(lambda _: reply)
        return defer.succeed(reply)

    @staticmethod
    def _verdict(message: dict[str, Any]) -> dict[str, Any] | None:
        body = str(message.get("body"))
        if "crash" in body:
            return None  # what the SDKs answer for a message whose check raised
        if "forbidden" in body:
            return {"allow": False, "reason": f"no: {message['msg_id']}"}
        return {"allow": True}

    @property
    def batches(self) -> list[list[str]]:
        return [[m["msg_id"] for m in kw["messages"]] for p, kw in self.calls if p == uris.HOOK_CHECK_MESSAGES]

    @property
    def singles(self) -> list[str]:
        return [kw["msg_id"] for p, kw in self.calls if p == uris.HOOK_CHECK_MESSAGE]


@pytest.fixture
def clock() -> task.Clock:
    clock = task.Clock()
    clock.advance(1000)
    return clock


def _guarded(clock: task.Clock, backend: Backend, **config: Any) -> GuardedHook:
    settings = {"secret": "unit-secret-123", "hook_batch_max": 4, "hook_batch_wait_ms": 5, **config}
    tenant_id = f"batch{next(_tenants)}"
    return GuardedHook(tenant_id, WampHook(tenant_id, backend), TenantConfig.parse(tenant_id, settings), clock)


def _send(hook: GuardedHook, *bodies: str) -> list[defer.Deferred[CheckVerdict]]:
    return [defer.Deferred.fromCoroutine(hook.check_message({"msg_id": f"m{i}", "body": b})) for i, b in
            enumerate(bodies)]  # fmt: skip


def _results(checks: list[defer.Deferred[CheckVerdict]]) -> list[CheckVerdict | None]:
    out: list[CheckVerdict | None] = []
    for d in checks:
        got: list[CheckVerdict] = []

        def keep(result: CheckVerdict, got: list[CheckVerdict] = got) -> CheckVerdict:
            got.append(result)
            return result  # the Deferred keeps it for a later look

        d.addCallback(keep)
        out.append(got[0] if got else None)
    return out


def _count(hook: GuardedHook, name: str, outcome: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "mics_hook_calls_total", {"tenant": hook.tenant_id, "hook": name, "outcome": outcome}
    )
    return value or 0.0


def test_checks_within_the_wait_go_out_as_one_call_with_a_verdict_each_in_order(clock):
    backend = Backend()
    hook = _guarded(clock, backend)
    checks = _send(hook, "hi", "forbidden", "hello")
    assert backend.calls == [] and _results(checks) == [None, None, None], "still gathering"
    clock.advance(0.005)
    assert backend.batches == [["m0", "m1", "m2"]]
    assert backend.calls[0][1]["timeout_ms"] == 150, "the backend learns how long the node waits"
    assert _results(checks) == [CheckVerdict(True), CheckVerdict(False, "no: m1"), CheckVerdict(True)]
    assert _count(hook, "check_message", "ok") == 3 and _count(hook, "check_messages", "ok") == 1
    sizes = metrics.REGISTRY.get_sample_value("mics_hook_batch_messages_count", {"tenant": hook.tenant_id})
    assert sizes == 1


def test_a_full_batch_leaves_at_once_and_the_rest_waits_for_the_next(clock):
    backend = Backend()
    hook = _guarded(clock, backend, hook_batch_max=2)
    checks = _send(hook, "a", "b", "c")
    assert backend.batches == [["m0", "m1"]], "no wait for a full batch"
    clock.advance(0.005)
    assert backend.batches == [["m0", "m1"], ["m2"]]
    assert all(r == CheckVerdict(True) for r in _results(checks))


def test_a_zero_wait_gathers_what_arrives_in_the_same_reactor_turn(clock):
    backend = Backend()
    hook = _guarded(clock, backend, hook_batch_wait_ms=0)
    checks = _send(hook, "a", "b")
    clock.advance(0)
    checks += _send(hook, "c")
    clock.advance(0)
    assert backend.batches == [["m0", "m1"], ["m0"]]
    assert len([r for r in _results(checks) if r == CheckVerdict(True)]) == 3


def test_hook_batch_max_1_checks_each_message_alone(clock):
    backend = Backend()
    hook = _guarded(clock, backend, hook_batch_max=1)
    checks = _send(hook, "a", "forbidden")
    assert backend.singles == ["m0", "m1"] and backend.batches == []
    assert _results(checks) == [CheckVerdict(True), CheckVerdict(False, "no: m1")]


def test_a_message_without_a_verdict_alone_degrades_to_allow(clock):
    backend = Backend()
    hook = _guarded(clock, backend)
    checks = _send(hook, "crash me", "forbidden", "fine")
    clock.advance(0.005)
    assert _results(checks) == [CheckVerdict(True), CheckVerdict(False, "no: m1"), CheckVerdict(True)]
    assert _count(hook, "check_message", "failure") == 1 and _count(hook, "check_message", "ok") == 2


def test_a_failed_batch_allows_each_of_its_messages_and_counts_each(clock):
    backend = Backend()
    backend.fail = True
    hook = _guarded(clock, backend)
    checks = _send(hook, "forbidden", "forbidden")
    clock.advance(0.005)
    assert _results(checks) == [CheckVerdict(True), CheckVerdict(True)], "degrade to allow, as a single check"
    assert _count(hook, "check_message", "failure") == 2 and _count(hook, "check_messages", "failure") == 1


def test_an_unexpected_error_of_the_batch_call_still_answers_every_message(clock):
    backend = Backend()
    backend.broken = RuntimeError("the transport broke in an unforeseen way")
    hook = _guarded(clock, backend)
    checks = _send(hook, "forbidden", "b")
    clock.advance(0.005)
    assert _results(checks) == [CheckVerdict(True), CheckVerdict(True)], "nobody waits forever"
    assert _count(hook, "check_message", "failure") == 2


@pytest.mark.parametrize("reply", [{"verdicts": [{"allow": False}]}, {"verdicts": "no"}, ["x"], None])
def test_a_reply_without_one_verdict_per_message_fails_the_whole_batch(clock, reply):
    backend = Backend()
    backend.reply = reply if reply is not None else {"nothing": 1}
    hook = _guarded(clock, backend)
    checks = _send(hook, "forbidden", "forbidden")
    clock.advance(0.005)
    assert _results(checks) == [CheckVerdict(True), CheckVerdict(True)]
    assert _count(hook, "check_messages", "failure") == 1


def test_a_batch_that_times_out_allows_its_messages_as_timeouts(clock):
    backend = Backend()
    backend.gate = defer.Deferred()
    hook = _guarded(clock, backend, hook_timeout_ms=100)
    checks = _send(hook, "forbidden", "b")
    clock.advance(0.005)
    clock.advance(0.1)
    assert _results(checks) == [CheckVerdict(True), CheckVerdict(True)]
    assert _count(hook, "check_message", "timeout") == 2 and _count(hook, "check_messages", "timeout") == 1


def test_failed_batches_open_the_breaker_and_later_batches_skip_the_hook(clock):
    backend = Backend()
    backend.fail = True
    hook = _guarded(clock, backend, hook_breaker_failure_threshold=2, hook_breaker_open_ms=1000)
    for _ in range(2):
        _send(hook, "x")
        clock.advance(0.005)
    calls = len(backend.calls)
    checks = _send(hook, "forbidden")
    clock.advance(0.005)
    assert len(backend.calls) == calls, "the open breaker asks nobody"
    assert _results(checks) == [CheckVerdict(True)]
    assert _count(hook, "check_message", "breaker_open") == 1
    backend.fail = False
    clock.advance(1.0)
    checks = _send(hook, "forbidden")
    clock.advance(0.005)
    assert _results(checks) == [CheckVerdict(False, "no: m0")], "a trial batch after open_ms closes it"


def test_batches_beyond_the_bulkhead_degrade_without_asking_the_hook(clock):
    backend = Backend()
    backend.gate = defer.Deferred()
    hook = _guarded(clock, backend, hook_batch_max=2, hook_max_concurrency=1, hook_queue_timeout_ms=0)
    first = _send(hook, "a", "b")  # in flight, held by the gate
    second = _send(hook, "forbidden", "forbidden")
    assert backend.batches == [["m0", "m1"]]
    assert _results(second) == [CheckVerdict(True), CheckVerdict(True)]
    assert _count(hook, "check_message", "queue_full") == 2
    backend.gate.callback(None)
    assert _results(first) == [CheckVerdict(True), CheckVerdict(True)]


def test_a_backend_without_the_batch_hook_gets_single_checks_until_it_is_tried_again(clock):
    backend = Backend()
    backend.batch_hook = False
    hook = _guarded(clock, backend)
    checks = _send(hook, "forbidden", "ok")
    clock.advance(0.005)
    assert backend.batches == [["m0", "m1"]] and backend.singles == ["m0", "m1"]
    assert _results(checks) == [CheckVerdict(False, "no: m0"), CheckVerdict(True)], "checked, not waved through"
    checks = _send(hook, "forbidden")
    assert backend.singles == ["m0", "m1", "m0"] and len(backend.batches) == 1, "no batch tried meanwhile"
    assert _results(checks) == [CheckVerdict(False, "no: m0")]
    backend.batch_hook = True
    clock.advance(UNSUPPORTED_RETRY_S)
    _send(hook, "a")
    clock.advance(0.005)
    assert backend.batches[-1] == ["m0"], "batches again once the backend may have been upgraded"


def test_a_live_config_change_resizes_the_batches_and_keeps_what_gathered(clock):
    backend = Backend()
    hook = _guarded(clock, backend, hook_batch_max=10, hook_batch_wait_ms=50)
    checks = _send(hook, "a", "b", "c")
    smaller = TenantConfig.parse(hook.tenant_id, {"secret": "unit-secret-123", "hook_batch_max": 2})
    hook.configure(smaller)
    assert backend.batches == [["m0", "m1"], ["m2"]], "what had gathered leaves in batches of the new size"
    assert len([r for r in _results(checks) if r == CheckVerdict(True)]) == 3
    off = TenantConfig.parse(hook.tenant_id, {"secret": "unit-secret-123", "hook_batch_max": 1})
    hook.configure(off)
    _send(hook, "d")
    assert backend.singles == ["m0"]


def test_one_senders_large_messages_never_push_a_batch_over_its_byte_budget(clock):
    backend = Backend()
    hook = _guarded(clock, backend, hook_batch_max=64)
    big = "x" * (MAX_BATCH_BYTES // 3)
    checks = _send(hook, "hi", big, big, "forbidden", big, "hello")
    clock.advance(0.005)
    assert backend.batches == [["m0", "m1", "m2", "m3"], ["m4", "m5"]], "split before the budget is crossed"
    for batch in backend.calls:
        assert len(msgpack.packb(batch[1]["messages"])) <= MAX_BATCH_BYTES
    assert _results(checks)[3] == CheckVerdict(False, "no: m3"), "the small ones are still checked"
    huge = _send(hook, "x" * (MAX_BATCH_BYTES * 2))
    assert backend.batches[-1] == ["m0"], "a message over the budget goes alone, at once"
    assert _results(huge) == [CheckVerdict(True)]


def test_closing_the_hook_sends_what_has_gathered(clock):
    backend = Backend()
    hook = _guarded(clock, backend)
    checks = _send(hook, "forbidden")
    hook.close()
    assert backend.batches == [["m0"]]
    assert _results(checks) == [CheckVerdict(False, "no: m0")]


def test_verdict_lists_are_parsed_one_entry_per_message():
    assert parse_verdicts_reply({"verdicts": [{"allow": True}, None, {"allow": False, "reason": "r"}, 3]}, 4) == [
        (True, None), None, (False, "r"), None]  # fmt: skip
    for bad in ({"verdicts": [{"allow": True}]}, {"verdicts": None}, [], "x"):
        with pytest.raises(HookFailure):
            parse_verdicts_reply(bad, 2)


@pytest.mark.parametrize("members", [["a", 1], ["a", ""], ["a", None], "ab", None, ["a", ["b"]], ["a", b"b"]])
def test_a_member_list_with_anything_but_non_empty_user_ids_is_a_hook_failure(members):
    with pytest.raises(HookFailure):
        parse_members_reply({"members": members})
    assert parse_members_reply({"members": ["a", "b"]}) == ["a", "b"]
    assert parse_members_reply({"members": []}) == []
