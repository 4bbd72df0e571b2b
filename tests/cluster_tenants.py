"""Tenants for cluster tests: created on one node, used on any; polling helpers for state that
settles through Redis.

A `ClusterTenant` has its hooks over HTTP (one hook server answers every node) or over WAMP (a
backend session on one node answers for the whole cluster, as mics.cluster.relay promises).
"""

from __future__ import annotations

import itertools
import os
import time
from typing import Any

from autobahn.wamp.exception import ApplicationError

from harness import ADMIN_SECRET, Node
from hook_servers import HookLogic, HttpHookServer, wamp_backend
from wamp_clients import JoinRefused, TestSession, admin, backend, sleep, user

_ids = itertools.count(1)


class ClusterTenant:
    """A tenant created on one node; users join whichever node a test names."""

    def __init__(
        self, tenant_id: str, secret: str, logic: HookLogic, hooks: HttpHookServer | None, transport: str = "http"
    ) -> None:
        self.tenant_id = tenant_id
        self.secret = secret
        self.logic = logic
        self.hooks = hooks
        self.transport = transport
        self.sessions: list[TestSession] = []

    @classmethod
    async def create(cls, node: Node, transport: str = "http", prefix: str = "cl", **config: Any) -> ClusterTenant:
        """A new tenant upserted through `node`'s admin API; with WAMP hooks, its hook backend joins `node`."""
        tenant_id = f"{prefix}{os.getpid() % 10000}x{next(_ids)}"
        secret = f"secret-{tenant_id}-0123456789"
        logic = HookLogic()
        hooks = HttpHookServer(secret, logic, "json") if transport == "http" else None
        tenant = cls(tenant_id, secret, logic, hooks, transport)
        adm = await tenant.admin(node)
        settings: dict[str, Any] = {"secret": secret, "hook_transport": transport, **config}
        if hooks is not None:
            settings["hook_base_url"] = hooks.base_url
        await adm.call("mics.admin.tenant.upsert", tenant_id=tenant_id, config=settings)
        if transport == "wamp":
            tenant.sessions.append(await wamp_backend(node.url, tenant_id, secret, logic))
        return tenant

    async def hooks_reach(self, node: Node) -> None:
        """With WAMP hooks: wait until `node` knows the hook backend's registrations (each node
        announces what its backends serve through Redis, a few ms after they register)."""
        if self.transport != "wamp":
            return

        async def probe() -> bool:
            try:
                session = await user(node.url, self.tenant_id, "tok-probe", "probe")
            except JoinRefused as e:
                if e.reason != "mics.error.hook_unavailable":
                    raise
                return False
            await session.close()
            return True

        assert await eventually(probe), f"the hooks never reached {node.node_id}"

    async def user(self, node: Node, user_id: str, device_id: str = "d1", **kw: Any) -> TestSession:
        session = await user(node.url, self.tenant_id, f"tok-{user_id}", device_id, **kw)
        await session.listen(f"mics.inbox.{user_id}")
        self.sessions.append(session)
        return session

    async def pair(self, a: Node, b: Node) -> tuple[TestSession, TestSession]:
        """alice on node A and bob on node B, once A sees bob online."""
        alice, bob = await self.user(a, "alice"), await self.user(b, "bob")
        assert await online(alice, "bob")
        return alice, bob

    async def backend(self, node: Node, authid: str = "backend") -> TestSession:
        session = await backend(node.url, self.tenant_id, self.secret, authid)
        self.sessions.append(session)
        return session

    async def admin(self, node: Node) -> TestSession:
        session = await admin(node.url, ADMIN_SECRET)
        self.sessions.append(session)
        return session

    async def close(self) -> None:
        for session in reversed(self.sessions):
            await session.close()
        if self.hooks is not None:
            await self.hooks.stop()


class TenantMaker:
    """Creates tenants through one node for a test and closes them all afterwards (a fixture's body)."""

    def __init__(self, node: Node, prefix: str) -> None:
        self.node, self.prefix = node, prefix
        self.made: list[ClusterTenant] = []

    async def __call__(self, transport: str = "http", **config: Any) -> ClusterTenant:
        self.made.append(await ClusterTenant.create(self.node, transport, prefix=self.prefix, **config))
        return self.made[-1]

    async def close(self) -> None:
        for tenant in self.made:
            await tenant.close()


async def eventually(probe: Any, timeout: float = 5.0) -> Any:
    """Poll an async probe until it returns something truthy (cluster state settles through Redis)."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value or time.monotonic() > deadline:
            return value
        await sleep(0.05)


async def blast(session: TestSession, to: str, seconds: float) -> tuple[int, int]:
    """Send as fast as one client can for `seconds`: (accepted, rate_limited)."""
    accepted = limited = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            await session.call("mics.message.send", to_user_id=to, body="x")
            accepted += 1
        except ApplicationError as e:
            assert e.error == "mics.error.rate_limited", e.error
            limited += 1
    return accepted, limited


async def online(session: TestSession, user_id: str, want: bool = True) -> bool:
    async def probe() -> bool:
        got = await session.call("mics.presence.get", user_ids=[user_id])
        return bool(got[user_id]["online"] == want)

    return bool(await eventually(probe))


class SteadySender:
    """Sends `to` a numbered message every `interval` s until stopped; a send refused with
    mics.error.unavailable is tried again with the same client_msg_id (as the SDKs advise), so
    every number is acknowledged once in the end. Records each attempt (start, end, error or None)."""

    def __init__(self, session: TestSession, to: str, interval: float = 0.02, prefix: str = "m") -> None:
        self.session, self.to, self.interval, self.prefix = session, to, interval, prefix
        self.acks: dict[str, dict[str, Any]] = {}  # client_msg_id -> Ack
        self.attempts: list[tuple[float, float, str | None, str]] = []  # start, end, error, client_msg_id
        self._running = False
        self._done: Any = None

    def start(self) -> None:
        from twisted.internet.defer import Deferred

        self._running = True
        self._done = Deferred.fromCoroutine(self._run())

    async def stop(self) -> None:
        """Stop once the message being sent is acknowledged (so every number sent was acknowledged)."""
        self._running = False
        await self._done

    async def _run(self) -> None:
        from autobahn.wamp.exception import ApplicationError

        n, pending = 0, False
        while self._running or pending:
            cmid = f"{self.prefix}{n}"
            began = time.monotonic()
            try:
                self.acks[cmid] = await self.session.call(
                    "mics.message.send", to_user_id=self.to, body={"n": n}, client_msg_id=cmid
                )
                self.attempts.append((began, time.monotonic(), None, cmid))
                n, pending = n + 1, False
            except ApplicationError as e:
                self.attempts.append((began, time.monotonic(), e.error, cmid))
                pending = True
            await sleep(self.interval)

    @property
    def errors(self) -> set[str]:
        return {error for _s, _e, error, _c in self.attempts if error is not None}

    def unavailable_s(self) -> float:
        """From the first refused attempt to the first acknowledged one after the last refusal."""
        failed = [i for i, (_s, _e, error, _c) in enumerate(self.attempts) if error is not None]
        if not failed:
            return 0.0
        recovered = next((a for a in self.attempts[failed[-1] + 1 :] if a[2] is None), self.attempts[-1])
        return recovered[1] - self.attempts[failed[0]][0]
