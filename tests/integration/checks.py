"""What the abuse, isolation and fault tests check after each attempt: a control pair of users still
gets every message, and the node's own counters (from /metrics) say what it did.

`in_thread` runs a blocking raw-socket step (tests/raw_ws.py) off the reactor, so the test's own
WAMP sessions (hook backends, the control pair) keep answering while it waits.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from typing import Any, TypeVar

import psutil
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet import threads
from twisted.internet.defer import Deferred

from harness import Node, http_get

T = TypeVar("T")

# what the abuse, isolation and fault tests tried, per area; printed at the end of the run
# (tests/integration/conftest.py pytest_terminal_summary)
RUN_COUNTS: defaultdict[str, Counter[str]] = defaultdict(Counter)


def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> Deferred[T]:
    return threads.deferToThread(fn, *args, **kwargs)


def metric(node: Node, name: str, **labels: str) -> float:
    """The value of one sample on the node's /metrics (0 when absent)."""
    _, body = http_get(f"{node.http}/metrics")
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return 0.0


def worker_rss(node: Node) -> int:
    """Resident memory of the node's router worker (the controller's biggest child)."""
    children = psutil.Process(node.process.proc.pid).children(recursive=True)
    return max(c.memory_info().rss for c in children)


async def control_pair(tenant: Any, messages: int = 10, tag: str = "ctl") -> int:
    """Two fresh users of `tenant`: every message from one must reach the other, in order. Returns
    how many messages were checked (for the run's printed counts)."""
    alice = await tenant.user(f"{tag}-alice", "ctl")
    bob = await tenant.user(f"{tag}-bob", "ctl")
    await bob.listen(f"mics.inbox.{tag}-bob")
    acks = [await alice.call("mics.message.send", to_user_id=f"{tag}-bob", body={"n": n}) for n in range(messages)]
    got = [await bob.next_event(f"mics.inbox.{tag}-bob") for _ in acks]
    assert [g["msg_id"] for g in got] == [a["msg_id"] for a in acks], "the control pair lost or reordered a message"
    await alice.close()
    await bob.close()
    return messages


# a body just under the largest max_payload_bytes a tenant may set (512 KiB, as compact JSON)
NEAR_MAX_BODY = "x" * (512 * 1024 - 64)


async def fill_inbox(sender: Any, to_user_id: str, count: int) -> list[str]:
    """A hostile `sender` fills an offline user's inbox with `count` near-max-size messages (the
    tenant allows max_payload_bytes 512 KiB and that many sends a second); returns their msg_ids."""
    acks = [await sender.call("mics.message.send", to_user_id=to_user_id, body=NEAR_MAX_BODY) for _ in range(count)]
    assert all(a["delivered"] == "buffered" for a in acks)
    return [a["msg_id"] for a in acks]


async def sync_pages(session: Any, strict: bool = True) -> tuple[list[dict[str, Any]], int]:
    """Sync from the start, page after page while `more`, as the SDKs do; returns the messages and
    how many pages. `strict`: every page is complete, non-empty and ends (`last_seq`) at its last
    message, and a sync after the last page finds nothing."""
    got: list[dict[str, Any]] = []
    pages, since, epoch = 0, 0, None
    while True:
        page = await session.call("mics.inbox.sync", since_seq=since, epoch=epoch)
        pages += 1
        got.extend(page["messages"])
        since, epoch = page["last_seq"], page["epoch"]
        if strict:
            assert page["complete"] is True and page["messages"], page["last_seq"]
            assert since == page["messages"][-1]["seq"]
        if not page["more"]:
            break
    if strict:
        assert (await session.call("mics.inbox.sync", since_seq=since, epoch=epoch))["messages"] == []
    return got, pages
