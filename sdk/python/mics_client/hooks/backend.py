"""A tenant backend WAMP component (Twisted): joins the tenant realm as `backend` (wampcra, tenant secret),
serves the hooks and its `@agent` methods (mics_client.hooks.agents) from its own methods and offers the
backend procedures (system messages, kicks, groups).

    class MyBackend(TenantBackend):
        async def auth(self, token, device_id, tenant_id):
            return await my_users.user_for(token)   # or raise RejectToken()

    backend = await connect_backend("ws://127.0.0.1:8080/ws", "acme", secret, MyBackend)
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import txaio
from autobahn.twisted.wamp import ApplicationSession
from autobahn.twisted.websocket import WampWebSocketClientFactory
from autobahn.wamp import auth as wamp_auth
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import ComponentConfig

from mics_client import errors
from mics_client.core import make_serializer
from mics_client.hooks import Hooks, auth_reply, check_replies, check_reply, members_reply, resolve
from mics_client.hooks.agents import register_agents
from mics_client.twisted import endpoint_for

HOOK_AUTH = "mics.hook.auth"
HOOK_CHECK_MESSAGE = "mics.hook.check_message"
HOOK_CHECK_MESSAGES = "mics.hook.check_messages"
HOOK_GROUP_MEMBERS = "mics.hook.group_members"


class CraSession(ApplicationSession):
    """A session joining with wampcra (tenant backends, admins): `ready` fires once set up, `left` when it ends."""

    def __init__(self, config: ComponentConfig) -> None:
        super().__init__(config)
        extra = config.extra or {}
        self._secret: str = extra["secret"]
        self._authid: str = extra.get("authid", "backend")
        self._ready: Any = extra.get("ready")
        self.left: Any = txaio.create_future()

    def onConnect(self) -> None:
        self.join(self.config.realm, ["wampcra"], authid=self._authid)

    def onChallenge(self, challenge: Any) -> str:
        if challenge.method != "wampcra":
            raise ValueError(f"unexpected auth challenge {challenge.method!r}")
        return wamp_auth.compute_wcs(self._secret, challenge.extra["challenge"]).decode("ascii")

    async def onJoin(self, details: Any) -> None:
        await self._setup(details)
        await resolve(self.on_ready(details))
        if self._ready is not None and not txaio.is_called(self._ready):
            txaio.resolve(self._ready, self)

    async def _setup(self, details: Any) -> None:
        """What a subclass must do before it is ready (TenantBackend registers the hooks here)."""

    async def on_ready(self, details: Any) -> None:
        """Override to register tenant procedures (`tenant.*`) or subscribe to `mics.event.*`."""

    def onLeave(self, details: Any) -> None:
        if self._ready is not None and not txaio.is_called(self._ready):
            txaio.reject(self._ready, errors.from_wamp(details.reason, details.message, joining=True))
        if not txaio.is_called(self.left):
            txaio.resolve(self.left, (details.reason, details.message))
        super().onLeave(details)

    def onDisconnect(self) -> None:
        if self._ready is not None and not txaio.is_called(self._ready):
            txaio.reject(self._ready, errors.TransportFailed("connection closed before the session joined"))
        if not txaio.is_called(self.left):
            txaio.resolve(self.left, ("wamp.close.transport_lost", "connection lost"))

    async def _call(self, procedure: str, **kwargs: Any) -> Any:
        """Call with None kwargs left out; WAMP errors become the typed MICS errors."""
        try:
            return await self.call(procedure, **{k: v for k, v in kwargs.items() if v is not None})
        except ApplicationError as e:
            raise errors.from_application_error(e) from None


class TenantBackend(Hooks, CraSession):
    """Subclass, override the `Hooks` methods, and connect it with `connect_backend()`.

    `on_ready()` runs once the hooks are registered; `self.left` fires with (reason, message) when it ends.
    """

    async def _setup(self, details: Any) -> None:
        await self.register(self._auth, HOOK_AUTH)
        await self.register(self._check_message, HOOK_CHECK_MESSAGE)
        await self.register(self._check_messages, HOOK_CHECK_MESSAGES)
        await self.register(self._group_members, HOOK_GROUP_MEMBERS)
        await register_agents(self, self)  # section 12: @agent methods

    # -- hook adapters (WAMP kwargs -> Hooks methods -> wire replies) ---------------------------------
    async def _auth(self, token: str = "", device_id: str = "", tenant_id: str = "", **_: Any) -> dict[str, Any]:
        return auth_reply(await resolve(self.auth(token, device_id, tenant_id)))

    async def _check_message(self, **message: Any) -> dict[str, Any]:
        return check_reply(await resolve(self.check_message(message)))

    async def _check_messages(self, messages: list[dict[str, Any]] | None = None, timeout_ms: int | None = None,
                              **_: Any) -> dict[str, Any]:  # fmt: skip
        batch = list(messages or [])
        return check_replies(await resolve(self.check_messages(batch, timeout_ms)), len(batch))

    async def _group_members(self, group_id: str = "", from_user_id: str = "", tenant_id: str = "",
                             **_: Any) -> dict[str, Any]:  # fmt: skip
        return members_reply(await resolve(self.group_members(group_id, from_user_id, tenant_id)))

    # -- backend procedures (protocol.md section 7, "in its own realm") -----------------------------------
    async def send_system(
        self,
        to_user_id: str,
        body: Any,
        from_user_id: str = "system",
        content_type: str | None = None,
        client_msg_id: str | None = None,
    ) -> dict[str, Any]:
        """A `system` message to one user's inbox (held like chat), sent as `from_user_id`."""
        result: dict[str, Any] = await self._call(
            "mics.message.send", to_user_id=to_user_id, body=body, from_user_id=from_user_id,
            content_type=content_type, client_msg_id=client_msg_id,
        )  # fmt: skip
        return result

    async def send_group_system(self, group_id: str, body: Any, from_user_id: str = "system",
                                content_type: str | None = None) -> dict[str, Any]:  # fmt: skip
        """A `system` message to a group's online members."""
        result: dict[str, Any] = await self._call(
            "mics.group.send", group_id=group_id, body=body, from_user_id=from_user_id, content_type=content_type
        )
        return result

    async def members_changed(self, group_id: str, added: Iterable[str] = (), removed: Iterable[str] = ()) -> Any:
        """Report a membership change: emits GROUP_MEMBER_CHANGE and tells the group's online members."""
        return await self._call("mics.group.members_changed", group_id=group_id, added=list(added),
                                removed=list(removed))  # fmt: skip

    async def kick(self, user_id: str, device_id: str | None = None) -> int:
        """Close a user's sessions (one device or all) with mics.close.kicked; returns how many."""
        result = await self._call("mics.session.kick", user_id=user_id, device_id=device_id)
        return int(result.get("kicked", 0))

    async def sessions(self, user_id: str | None = None) -> list[dict[str, Any]]:
        """The tenant's live user sessions (optionally one user's)."""
        result = await self._call("mics.session.list", user_id=user_id)
        return list(result.get("sessions", []))


async def connect_cra(url: str, realm: str, secret: str, session_class: type[CraSession], authid: str,
                      serializer: str = "msgpack", reactor: Any = None, **extra: Any) -> Any:  # fmt: skip
    """Connect a CraSession subclass; returns the instance once it is ready, or raises the typed join error.

    msgpack by default: the router decodes every hook reply, and a 10,000-member list costs it
    ~15 ms in Autobahn's pure-Python JSON decoder against ~1 ms as msgpack (docs/performance.md).
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor
    ready = txaio.create_future()
    config_extra = {**extra, "secret": secret, "authid": authid, "ready": ready}
    factory = WampWebSocketClientFactory(
        lambda: session_class(ComponentConfig(realm, config_extra)), url=url, serializers=[make_serializer(serializer)]
    )
    await endpoint_for(reactor, url).connect(factory)
    return await ready


async def connect_backend(url: str, tenant: str, secret: str, backend_class: type[TenantBackend] = TenantBackend,
                          authid: str = "backend", **options: Any) -> Any:  # fmt: skip
    """Connect `backend_class` to the tenant realm; returns the instance once its hooks are registered.

    `options` may give `serializer`, `reactor`, and anything else is passed in `config.extra` for your subclass.
    """
    return await connect_cra(url, tenant, secret, backend_class, authid, **options)
