"""The asyncio flavour: `MicsClient` whose methods are coroutines.

client = await connect("ws://127.0.0.1:8080/ws", "demo", "demo-alice", "laptop")
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlparse

from autobahn.asyncio.wamp import ApplicationSession
from autobahn.asyncio.websocket import WampWebSocketClientFactory

from mics_client.core import ClientCore, SessionMixin, make_serializer

__all__ = ["MicsClient", "connect"]


class _Session(SessionMixin, ApplicationSession):
    pass


class MicsClient(ClientCore):
    """A MICS user device over asyncio; see mics_client.core.ClientCore for the behaviour."""

    _session_class = _Session

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _open_transport(self, make_session: Callable[[], Any]) -> None:
        parsed = urlparse(self.url)
        secure = parsed.scheme == "wss"
        factory = WampWebSocketClientFactory(make_session, url=self.url, serializers=[make_serializer(self.serializer)])
        loop = asyncio.get_running_loop()
        await loop.create_connection(
            factory, parsed.hostname, parsed.port or (443 if secure else 80),
            ssl=ssl.create_default_context() if secure else None,
        )  # fmt: skip

    def _spawn(self, coro: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)  # hold a reference until it is done (asyncio keeps only weak ones)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.log.error("mics client task failed: {error!r}", error=task.exception())


async def connect(url: str | list[str], tenant: str, token: str, device_id: str, serializer: str = "json",
                  **options: Any) -> MicsClient:  # fmt: skip
    """Create a client and connect it; raises a typed join error (InvalidToken, ...) on refusal."""
    client = MicsClient(url, tenant, token, device_id, serializer, **options)
    await client.connect()
    return client
