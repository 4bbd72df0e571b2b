"""SDK devices for real-node tests: a Python SDK client with awaitable queues of what its callbacks
saw, and a factory that closes every client a test opened (the `device` fixture)."""

from __future__ import annotations

from collections import deque
from typing import Any

from twisted.internet import reactor
from twisted.internet.defer import Deferred

from mics_client.twisted import MicsClient
from mics_client.types import Message, SyncGap

TIMEOUT = 5.0


class Device:
    """An SDK client plus queues of what its callbacks saw, awaitable one by one."""

    def __init__(self, client: MicsClient) -> None:
        self.client = client
        self.messages: deque[Message] = deque()
        self.closes: deque[tuple[str, str | None]] = deque()
        self.gaps: list[SyncGap] = []
        self.connects = 0
        self._waiters: dict[str, list[Deferred[Any]]] = {"message": [], "close": [], "connect": []}
        client.on_message(lambda m: self._put("message", self.messages, m))
        client.on_close(lambda reason, message: self._put("close", self.closes, (reason, message)))
        client.on_gap(self.gaps.append)
        client.on_connect(self._connected)

    def _connected(self, welcome: Any) -> None:
        self.connects += 1
        waiters, self._waiters["connect"] = self._waiters["connect"], []
        for w in waiters:
            w.callback(welcome)

    def _put(self, kind: str, queue: deque[Any], item: Any) -> None:
        if self._waiters[kind]:
            self._waiters[kind].pop(0).callback(item)
        else:
            queue.append(item)

    async def _next(self, kind: str, queue: deque[Any]) -> Any:
        if queue:
            return queue.popleft()
        d: Deferred[Any] = Deferred()
        self._waiters[kind].append(d)
        d.addTimeout(TIMEOUT, reactor)
        return await d

    async def next_message(self) -> Message:
        return await self._next("message", self.messages)  # type: ignore[no-any-return]

    async def next_close(self) -> tuple[str, str | None]:
        return await self._next("close", self.closes)  # type: ignore[no-any-return]

    async def next_connect(self) -> Any:
        d: Deferred[Any] = Deferred()
        self._waiters["connect"].append(d)
        d.addTimeout(3 * TIMEOUT, reactor)
        return await d


class Devices:
    """Opens SDK clients for one test and closes them all afterwards."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.devices: list[Device] = []

    async def __call__(self, tenant: Any, user_id: str, device_id: str = "d1", token: str | None = None,
                      **options: Any) -> Device:  # fmt: skip
        tenant_id = tenant if isinstance(tenant, str) else tenant.tenant_id
        client = MicsClient(self.url, tenant_id, token or f"tok-{user_id}", device_id, **options)
        device = Device(client)
        await client.connect()
        self.devices.append(device)
        return device

    async def close(self) -> None:
        for device in self.devices:
            await device.client.close()
