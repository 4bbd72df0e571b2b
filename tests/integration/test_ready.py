"""`/ready` reports each dependency: 503 while Redis is unreachable in cluster mode (a real
redis-server stopped and started again on the same port), open hook breakers per tenant (never
fatal for the node)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted

from harness import ManagedProcess, Node, free_port, http_get, start_node, start_redis
from wamp_clients import JoinRefused, sleep, user


def ready(node: Node) -> tuple[int, dict[str, Any]]:
    status, body = http_get(f"{node.http}/ready")
    return status, json.loads(body)


def wait_ready_status(node: Node, status: int, timeout: float = 10.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        got, body = ready(node)
        if got == status:
            return body
        assert time.monotonic() < deadline, f"/ready still {got} {body}"
        time.sleep(0.1)


class RedisOnOnePort:
    """A redis-server that can be stopped and started again on the same port."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.process: ManagedProcess | None = None
        self.url = ""

    def start(self) -> None:
        self.process, self.url = start_redis(self.tmp, self.port)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None


@pytest.fixture(scope="module")
def redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisOnOnePort]:
    server = RedisOnOnePort(tmp_path_factory.mktemp("redis-outage"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster_node(tmp_path_factory: pytest.TempPathFactory, redis: RedisOnOnePort) -> Iterator[Node]:
    node = start_node(tmp_path_factory.mktemp("readynode"), "ready", env={"MICS_REDIS_URL": redis.url})
    yield node
    node.process.stop()


def test_a_single_node_is_ready_with_no_redis_or_kafka(node):
    status, body = ready(node)
    assert status == 200
    assert body["status"] == "ready" and body["node_id"] == node.node_id
    assert body["redis"] == "off" and body["kafka"] == "off"


def test_ready_turns_503_while_redis_is_unreachable_and_200_when_it_is_back(cluster_node, redis):
    status, body = ready(cluster_node)
    assert status == 200 and body["redis"] == "up"
    redis.stop()
    try:
        down = wait_ready_status(cluster_node, 503)
        assert down["status"] == "unavailable" and down["redis"] == "down"
        assert down["node_id"] == cluster_node.node_id and down["tenants"] >= 1
        assert http_get(f"{cluster_node.http}/health")[0] == 200, "liveness is not readiness: no restart for this"
    finally:
        redis.start()
    back = wait_ready_status(cluster_node, 200, timeout=20)
    assert back["status"] == "ready" and back["redis"] == "up"


@pytest_twisted.ensureDeferred
async def test_ready_names_open_hook_breakers_per_tenant_and_stays_200(make_tenant):
    dead = f"http://127.0.0.1:{free_port()}/hooks"  # nothing listens: every auth hook call fails
    tenant = await make_tenant(hooks="http", hook_breaker_failure_threshold=1, hook_breaker_open_ms=60_000)
    await tenant.configure(hook_base_url=dead)
    with pytest.raises(JoinRefused):
        await user(tenant.node.url, tenant.tenant_id, "tok-alice", "d1")
    await sleep(0)
    status, body = ready(tenant.node)
    assert status == 200, "one tenant's hook outage does not take the node out of the load balancer"
    assert body["hook_breakers"][tenant.tenant_id] == {"auth": "open"}
    await tenant.configure(hook_base_url=tenant.http.base_url)  # a config change starts the hooks afresh
    _, body = ready(tenant.node)
    assert tenant.tenant_id not in body["hook_breakers"]
