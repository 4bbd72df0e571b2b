"""Per-test tenants on the shared node: each test gets a fresh tenant id, its own hooks and clients."""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import AsyncIterator, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from sdk_devices import Devices
from twisted.internet.utils import getProcessOutputAndValue

from harness import ADMIN_SECRET, Node, start_nodes
from hook_servers import HookLogic, HttpHookServer, wamp_backend
from wamp_clients import TestSession, admin, backend, user

_counter = itertools.count(1)


@dataclass
class Tenant:
    """A tenant created for one test, with its hook logic and every session it opened."""

    node: Node
    tenant_id: str
    secret: str
    logic: HookLogic
    admin: TestSession
    http: HttpHookServer | None = None
    sessions: list[TestSession] = field(default_factory=list)

    async def user(self, user_id: str, device_id: str | None = "d1", **kw: Any) -> TestSession:
        """Join as `user_id` (token tok-<user_id>)."""
        session = await user(self.node.url, self.tenant_id, f"tok-{user_id}", device_id, **kw)
        self.sessions.append(session)
        return session

    async def raw_user(self, token: str, device_id: str | None = "d1", **kw: Any) -> TestSession:
        session = await user(self.node.url, self.tenant_id, token, device_id, **kw)
        self.sessions.append(session)
        return session

    async def backend(self, authid: str = "backend", **kw: Any) -> TestSession:
        session = await backend(self.node.url, self.tenant_id, self.secret, authid, **kw)
        self.sessions.append(session)
        return session

    async def configure(self, **config: Any) -> dict[str, Any]:
        result: dict[str, Any] = await self.admin.call(
            "mics.admin.tenant.upsert", tenant_id=self.tenant_id, config=config
        )
        return result


class TenantFactory:
    def __init__(self, node: Node) -> None:
        self.node = node
        self.tenants: list[Tenant] = []

    async def __call__(self, hooks: str = "wamp", encoding: str = "json", batch_hook: bool = True,
                       **config: Any) -> Tenant:  # fmt: skip
        """`batch_hook=False`: the backend serves no batched check (as before hook_batch_max)."""
        tenant_id = f"t{os.getpid() % 10000}x{next(_counter)}"
        secret = f"secret-{tenant_id}-0123456789"
        logic = HookLogic(batch_hook=batch_hook)
        adm = await admin(self.node.url, ADMIN_SECRET)
        http = None
        cfg: dict[str, Any] = {"secret": secret, "hook_transport": hooks, **config}
        if hooks == "http":
            http = HttpHookServer(secret, logic, encoding)
            cfg.update(hook_base_url=http.base_url, hook_encoding=encoding)
        await adm.call("mics.admin.tenant.upsert", tenant_id=tenant_id, config=cfg)
        tenant = Tenant(self.node, tenant_id, secret, logic, adm, http, [adm])
        if hooks == "wamp":
            tenant.sessions.append(await wamp_backend(self.node.url, tenant_id, secret, logic))
        self.tenants.append(tenant)
        return tenant

    async def close(self) -> None:
        for tenant in self.tenants:
            for session in reversed(tenant.sessions):
                await session.close()
            if tenant.http is not None:
                await tenant.http.stop()


@dataclass(frozen=True)
class CliRun:
    code: int
    out: str
    err: str


async def run_mics(*args: str, env: Mapping[str, str] | None = None, secret: str | None = ADMIN_SECRET) -> CliRun:
    """The `mics` command as a subprocess (without blocking the reactor the test's sessions run on)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("MICS_")}
    if secret is not None:
        base["MICS_ADMIN_SECRET"] = secret
    mics = str(Path(sys.executable).with_name("mics"))
    out, err, code = await getProcessOutputAndValue(mics, list(args), env={**base, **(env or {})})
    return CliRun(code, out.decode(), err.decode())


@pytest_twisted.async_yield_fixture()
async def make_tenant(mics_node: Node) -> AsyncIterator[TenantFactory]:
    factory = TenantFactory(mics_node)
    yield factory
    await factory.close()


@pytest.fixture
def node(mics_node: Node) -> Node:
    return mics_node


@pytest_twisted.async_yield_fixture()
async def device(mics_node: Node) -> AsyncIterator[Devices]:
    """Python SDK clients on the shared node, all closed after the test: `await device(tenant, "alice")`."""
    devices = Devices(mics_node.url)
    yield devices
    await devices.close()


@pytest.fixture(scope="session")
def cluster_nodes(tmp_path_factory: pytest.TempPathFactory, redis_url: str) -> Iterator[tuple[Node, Node]]:
    """Two cluster members sharing the session's redis-server (tests isolate themselves by tenant)."""
    a, b = start_nodes(tmp_path_factory.mktemp("cluster"), ["ca", "cb"], {"MICS_REDIS_URL": redis_url})
    yield a, b
    for n in (a, b):
        n.process.stop()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    """What the abuse, isolation and fault tests tried, in the run log."""
    from checks import RUN_COUNTS

    for area, counts in sorted(RUN_COUNTS.items()):
        terminalreporter.write_line(f"{area}: " + ", ".join(f"{k} = {v}" for k, v in counts.items()))
