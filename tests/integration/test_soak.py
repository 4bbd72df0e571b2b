"""A bounded soak: mixed traffic on a node of its own, with devices dropping and reconnecting and
the check-message hook slowing down, through the Python SDK (reconnect, sync, dedup by msg_id).

At the end every acknowledged message must have reached every device of its recipient exactly
once, in order per sender, and the router worker's memory must be back near its baseline once
the devices are gone and the held messages expired. Short in CI (MICS_SOAK_S, default 8 s); run
it long by hand: `MICS_SOAK_S=600 scripts/test -k soak -s`.
"""

from __future__ import annotations

import os
import random
from collections import defaultdict
from collections.abc import AsyncIterator
from typing import Any

import psutil
import pytest_twisted
from checks import RUN_COUNTS
from integration.conftest import TenantFactory
from twisted.internet import reactor, task
from twisted.internet.defer import ensureDeferred

from harness import Node, start_node
from mics_client import errors
from mics_client.twisted import MicsClient, connect

SOAK_S = float(os.environ.get("MICS_SOAK_S", "8"))
USERS = [f"u{i}" for i in range(6)]
SERIALIZERS = ("json", "msgpack", "cbor")
RETRYABLE = (errors.NotConnected, errors.TransportFailed, errors.Unavailable, errors.ConnectionClosed)
MEMORY_SLACK_MB = 8.0


def worker_rss_mb(node: Node) -> float:
    """RSS of the router worker: the controller's biggest child (it holds the realms)."""
    workers = psutil.Process(node.process.proc.pid).children(recursive=True)
    return max(p.memory_info().rss for p in workers) / 2**20


def sleep(seconds: float) -> Any:
    return task.deferLater(reactor, seconds, lambda: None)


@pytest_twisted.async_yield_fixture()
async def soak_node(tmp_path) -> AsyncIterator[Node]:
    node = start_node(tmp_path, "soak")
    yield node
    node.process.stop()


class Device:
    """One device through the SDK; records what the app would show, in order."""

    def __init__(self, user_id: str, n: int) -> None:
        self.user_id = user_id
        self.name = f"{user_id}/d{n}"
        self.serializer = SERIALIZERS[n % len(SERIALIZERS)]
        self.got: list[Any] = []
        self.client: MicsClient | None = None

    async def open(self, node: Node, tenant_id: str) -> None:
        self.client = await connect(node.url, tenant_id, f"tok-{self.user_id}", self.name.replace("/", "-"),
                                    self.serializer, on_message=self.got.append, backoff_initial_s=0.05,
                                    backoff_max_s=0.5)  # fmt: skip

    def drop(self) -> None:
        """The network goes away under the device (no GOODBYE): the SDK reconnects and syncs."""
        session = self.client._session if self.client else None
        transport = getattr(session, "_transport", None)
        if transport is not None:
            transport.dropConnection(abort=True)


@pytest_twisted.ensureDeferred
async def test_a_soak_with_reconnects_and_hook_faults_delivers_every_acked_message_once_in_order(soak_node):
    factory = TenantFactory(soak_node)
    tenant = await factory(check_message_hook=True, heartbeat_timeout_s=60, replay_window_s=5, offline_ttl_s=30,
                           max_message_qps=100_000, max_user_message_qps=100_000)  # fmt: skip
    rng = random.Random(int(os.environ.get("MICS_SOAK_SEED", "1130")))
    devices = {u: [Device(u, n) for n in range(2)] for u in USERS}
    for device in (d for ds in devices.values() for d in ds):
        await device.open(soak_node, tenant.tenant_id)
    await sleep(1.0)
    baseline = worker_rss_mb(soak_node)
    acked: dict[str, list[tuple[str, str]]] = defaultdict(list)  # sender -> [(msg_id, recipient)] in order
    counts = defaultdict(int)
    running = True

    async def sender(user_id: str) -> None:
        client = devices[user_id][0].client
        assert client is not None
        n = 0
        while running:
            to = rng.choice([u for u in USERS if u != user_id])
            cmid = f"{user_id}-{n}"
            give_up = reactor.seconds() + 15
            while True:  # a send that failed may have reached the node: retry with the same client_msg_id
                try:
                    ack = await client.send(to, {"from": user_id, "n": n}, client_msg_id=cmid)
                    break
                except RETRYABLE:
                    counts["retried sends"] += 1
                    assert reactor.seconds() < give_up, f"{user_id} could not send for 15 s ({client.state})"
                    await sleep(0.05)
            acked[user_id].append((ack.msg_id, to))
            n += 1
            await sleep(rng.uniform(0.005, 0.03))

    async def faults() -> None:
        while running:
            await sleep(rng.uniform(0.2, 0.6))
            if rng.random() < 0.7:
                rng.choice([d for ds in devices.values() for d in ds]).drop()
                counts["dropped connections"] += 1
            else:
                tenant.logic.check_delay = 0.0 if tenant.logic.check_delay else 0.3  # past hook_timeout_ms
                counts["check-hook slowdowns toggled"] += 1

    work = [ensureDeferred(sender(u)) for u in USERS] + [ensureDeferred(faults())]
    await sleep(SOAK_S)
    running = False
    for d in work:
        await d
    tenant.logic.check_delay = 0.0
    expected = {(msg_id, to) for sent in acked.values() for msg_id, to in sent}
    deadline = reactor.seconds() + 20
    while reactor.seconds() < deadline:  # let every device reconnect and sync
        missing = [d for to, ds in devices.items() for d in ds
                   if not {m for m, r in expected if r == to} <= {msg.msg_id for msg in d.got}]  # fmt: skip
        if not missing:
            break
        for d in missing:
            if d.client is not None and d.client.is_connected:
                await d.client.sync()
        await sleep(0.2)
    checked = 0
    for to, ds in devices.items():
        want = [m for m, r in expected if r == to]
        for d in ds:
            got = [msg.msg_id for msg in d.got if msg.type == "chat" and msg.to_user_id == to]
            assert len(got) == len(set(got)), f"{d.name}: a message was delivered twice"
            assert set(want) <= set(got), f"{d.name}: {len(set(want) - set(got))} acknowledged messages lost"
            for sender_id, sent in acked.items():
                order = [msg_id for msg_id, r in sent if r == to]
                seen = [m for m in got if m in set(order)]
                assert seen == order, f"{d.name}: messages of {sender_id} out of order"
            checked += len(want)
    for d in (d for ds in devices.values() for d in ds):
        if d.client is not None:
            await d.client.close()
    await factory.close()
    await sleep(7.0)  # the replay window (5 s) passes and the expiry tick runs
    after = worker_rss_mb(soak_node)
    RUN_COUNTS["soak"].update({"seconds": round(SOAK_S), "messages acked": len(expected), "deliveries checked": checked,
                               "lost": 0, "duplicates": 0, "out of order": 0, **counts,
                               "worker RSS growth KB": round((after - baseline) * 1024)})  # fmt: skip
    print(f"\nsoak: {SOAK_S:.0f} s, {len(expected)} messages acked, {checked} deliveries checked, lost 0, "
          f"duplicates 0, out of order 0; {dict(counts)}; worker RSS {baseline:.1f} MB -> {after:.1f} MB")  # fmt: skip
    assert len(expected) > 0 and counts["dropped connections"] > 0
    assert after - baseline < MEMORY_SLACK_MB, f"worker memory grew {after - baseline:.1f} MB"
