"""Property-based fuzzing of every user and backend procedure on a real node, over json, msgpack and
cbor clients, with a control pair whose messages must all arrive (protocol.md sections 0-4).

Hypothesis generates the calls (argument names the procedures know plus unknown ones, values of
every shape a serializer may carry: huge and negative integers, NaN, lone surrogates through a JSON
client that writes escapes, NUL-led strings, bytes, deep nesting, positional arguments). Every call
must be answered with a result or a contract error (`mics.error.*`, `wamp.error.not_authorized`):
never a runtime error, never a hang, never a dropped connection. Meanwhile alice sends to bob and
every acknowledged message must reach bob live and through sync, on every serializer.

Set MICS_FUZZ_EXAMPLES (default 150 per client) and MICS_FUZZ_SEED to go further by hand.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import pytest_twisted
from autobahn.wamp.exception import ApplicationError, SerializationError
from checks import RUN_COUNTS, sync_pages
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st
from twisted.internet.defer import TimeoutError

from wamp_clients import TestSession

EXAMPLES = int(os.environ.get("MICS_FUZZ_EXAMPLES", "150"))
SEED = int(os.environ.get("MICS_FUZZ_SEED", "20261130"))

USER_PROCEDURES = {
    "mics.message.send": [
        "to_user_id",
        "body",
        "client_msg_id",
        "content_type",
        "from_user_id",
        "reply_to",
        "mentions",
    ],
    "mics.group.send": ["group_id", "body", "client_msg_id", "content_type", "reply_to", "mentions"],
    "mics.inbox.sync": ["since_seq", "epoch"],
    "mics.message.receipt": ["to_user_id", "msg_ids", "kind"],
    "mics.signal.send": ["to_user_id", "group_id", "body"],
    "mics.ping": [],
    "mics.presence.get": ["user_ids"],
    "mics.message.recall": ["msg_id"],
    "mics.message.edit": ["msg_id", "body", "content_type"],
}
BACKEND_PROCEDURES = {
    "mics.message.send": ["to_user_id", "body", "from_user_id", "client_msg_id", "content_type"],
    "mics.group.send": ["group_id", "body", "from_user_id"],
    "mics.session.list": ["user_id"],
    "mics.session.kick": ["user_id", "device_id"],
    "mics.group.members_changed": ["group_id", "added", "removed"],
    "mics.presence.get": ["user_ids"],
}
CONTRACT = ("mics.error.", "wamp.error.not_authorized")

# text a hostile client may send: lone surrogates and NUL-led strings included
texts = st.one_of(
    st.text(max_size=12),
    st.sampled_from(["bob", "alice", "g1", "read", "delivered", "", "x" * 200, "b.b", "\x00AA", "\udfff", "a\ud800"]),
)
scalars = st.one_of(
    st.none(), st.booleans(), texts, st.binary(max_size=8),
    st.integers(min_value=-(2**70), max_value=2**70), st.sampled_from([2**64 - 1, 2**64, -(2**63), -(2**63) - 1]),
    st.floats(allow_nan=True, allow_infinity=True),
)  # fmt: skip
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(texts, inner, max_size=4)),
    max_leaves=12,
)


def deep(depth: int) -> Any:
    value: Any = 0
    for _ in range(depth):
        value = [value]
    return value


# values a real client would send for each argument, so that many calls get past the edge too
users = st.sampled_from(["bob", "alice", "mallory", "nobody"])
PLAUSIBLE: dict[str, st.SearchStrategy[Any]] = {
    "to_user_id": users, "user_id": users, "from_user_id": users, "device_id": st.sampled_from(["d1", "phone"]),
    "group_id": st.sampled_from(["g1", "empty"]), "body": values, "client_msg_id": st.text(min_size=1, max_size=8),
    "content_type": st.sampled_from(["text/plain", "application/json"]), "since_seq": st.integers(0, 50),
    "epoch": st.text(max_size=12), "msg_ids": st.lists(st.text(min_size=1, max_size=8), min_size=1, max_size=3),
    "kind": st.sampled_from(["read", "delivered"]), "user_ids": st.lists(users, max_size=3),
    "added": st.lists(users, max_size=2), "removed": st.lists(users, max_size=2),
    "reply_to": st.text(min_size=1, max_size=8), "mentions": st.lists(users, max_size=3),
    "msg_id": st.text(max_size=33),
}  # fmt: skip


def calls(procedures: dict[str, list[str]]) -> st.SearchStrategy[tuple[str, list[Any], dict[str, Any]]]:
    @st.composite
    def one(draw: Any) -> tuple[str, list[Any], dict[str, Any]]:
        procedure = draw(st.sampled_from(sorted(procedures)))
        names = procedures[procedure] + ["extra", "details"]
        keys = draw(st.lists(st.sampled_from(names), unique=True, max_size=len(names)))
        hostile = st.one_of(values, st.just(deep(draw(st.integers(30, 40)))))
        kwargs = {k: draw(st.one_of(PLAUSIBLE[k], hostile) if k in PLAUSIBLE else hostile) for k in keys}
        args = draw(st.one_of(st.just([]), st.just([]), st.lists(scalars, min_size=1, max_size=2)))
        return procedure, args, kwargs

    return one()


def generate(procedures: dict[str, list[str]], salt: int) -> list[tuple[str, list[Any], dict[str, Any]]]:
    """Hypothesis draws the calls up front (reproducible with the seed); the node is driven after."""
    drawn: list[tuple[str, list[Any], dict[str, Any]]] = []

    @seed(SEED + salt)
    @settings(max_examples=EXAMPLES, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))  # fmt: skip
    @given(calls(procedures))
    def collect(case: tuple[str, list[Any], dict[str, Any]]) -> None:
        drawn.append(case)

    collect()
    # the backend may kick anyone: not the control pair, whose messages are checked
    return [c for c in drawn if not (c[0] == "mics.session.kick" and c[2].get("user_id") in ("alice", "bob"))]


def nul_led(value: Any) -> bool:
    """A string JSON clients write for bytes ("\\u0000" + base64): malformed base64 is a bad frame."""
    if isinstance(value, str):
        return value.startswith("\x00")
    if isinstance(value, list):
        return any(nul_led(v) for v in value)
    if isinstance(value, dict):
        return any(nul_led(k) or nul_led(v) for k, v in value.items())
    return False


async def fire(
    connect: Callable[[], Awaitable[TestSession]], json: bool, cases: list[tuple[str, list[Any], dict[str, Any]]],
    tally: Counter[str],
) -> None:  # fmt: skip
    session = await connect()
    for procedure, args, kwargs in cases:
        try:
            result = await session.call(procedure, *args, **kwargs)
        except (SerializationError, UnicodeEncodeError, OverflowError, ValueError, TypeError):
            tally["unsendable by this client's serializer"] += 1
            continue
        except ApplicationError as e:
            if e.error == "wamp.close.transport_lost" and json and nul_led([args, kwargs]):
                tally["bad binary string: the router closed the sender's connection"] += 1
                session = await connect()
                continue
            assert e.error.startswith(CONTRACT), (procedure, args, kwargs, e.error, e.args)
            assert "Traceback" not in str(e.args) and "Error(" not in str(e.args), (procedure, e.args)
            tally[e.error] += 1
            continue
        except TimeoutError:
            raise AssertionError(f"no answer: {procedure} {args} {kwargs}") from None
        assert isinstance(result, dict), (procedure, result)
        tally["answered"] += 1
    assert session.is_attached(), "the fuzzing session must still be connected"


@pytest_twisted.ensureDeferred
async def test_fuzzed_calls_get_contract_answers_and_the_control_pair_loses_nothing(make_tenant):
    tenant = await make_tenant(check_message_hook=False, max_message_qps=100_000, heartbeat_timeout_s=3600)
    tenant.logic.groups["g1"] = ["alice", "bob", "mallory"]
    alice = await tenant.user("alice", "phone", serializer="msgpack")
    bobs = [await tenant.user("bob", f"dev-{s}", serializer=s) for s in ("json", "msgpack", "cbor")]
    for bob in bobs:
        await bob.listen("mics.inbox.bob")
    tally: Counter[str] = Counter()
    acked: list[str] = []
    for n, serializer in enumerate(("json-escaping", "msgpack", "cbor")):
        json = serializer.startswith("json")
        await fire(lambda s=serializer: tenant.user("mallory", f"m-{s}", serializer=s), json,
                   generate(USER_PROCEDURES, n), tally)  # fmt: skip
        await fire(lambda s=serializer: tenant.backend(serializer=s), json, generate(BACKEND_PROCEDURES, 10 + n),
                   tally)  # fmt: skip
        for i in range(10):  # the control pair, between every round
            acked.append((await alice.call("mics.message.send", to_user_id="bob", body={"n": n, "i": i}))["msg_id"])
    for bob in bobs:
        live = set()
        while True:
            try:
                event = await bob.next_event("mics.inbox.bob", timeout=2)
            except TimeoutError:
                break
            live.add(event["msg_id"])
        assert set(acked) <= live, f"{len(set(acked) - live)} control messages lost live on {bob}"
        synced, _pages = await sync_pages(bob, strict=False)
        assert set(acked) <= {m["msg_id"] for m in synced}, "lost from sync"
    total = sum(tally.values())
    RUN_COUNTS["fuzz"].update({"calls": total, **tally, "control acked": len(acked),
                               "deliveries checked": len(acked) * len(bobs), "lost": 0})  # fmt: skip
    print(f"\nfuzz: {total} calls, {dict(tally)}; control: {len(acked)} acked, "
          f"{len(acked) * len(bobs)} deliveries checked live and by sync, lost 0")  # fmt: skip
    assert tally["answered"] > 0 and tally["mics.error.invalid_message"] > 0
