"""The WAMP side of one tenant realm: a thin adapter over the tenant's send service.

Crossbar starts one `TenantComponent` per tenant realm (role `mics`, router-embedded, so no
network hop). It registers the user and backend procedures (each parses its request, resolves
the caller, and calls `TenantRuntime.service`; mics.procedures maps errors), registers the realm's
authorizer, and turns the router's session meta events into the tenant runtime's session table.
Everything else (sends, holding, routing, kicks, the heartbeat) lives in the tenant runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autobahn.wamp.types import CallDetails, RegisterOptions
from txaio import make_logger

from mics import authz, errors, requests, uris
from mics.errors import MicsError
from mics.node import NODE
from mics.procedures import MicsSession, Parser, expose
from mics.router import FORWARDED_CALLS
from mics.service import SendService
from mics.tenants import TenantRuntime
from mics.types import Sender

log = make_logger()

# procedure -> (request type's parser, the service's method); `from_user_id` names a backend's sender
_PROCEDURES: dict[str, tuple[Parser, Callable[..., Any]]] = {
    uris.MESSAGE_SEND: (requests.SendRequest.parse, SendService.send),
    uris.GROUP_SEND: (requests.GroupSendRequest.parse, SendService.group_send),
    uris.INBOX_SYNC: (requests.SyncRequest.parse, SendService.sync),
    uris.MESSAGE_RECEIPT: (requests.ReceiptRequest.parse, SendService.receipt),
    uris.SIGNAL_SEND: (requests.SignalRequest.parse, SendService.signal),
    uris.PING: (requests.NoArgs.parse, SendService.ping),
    uris.PRESENCE_GET: (requests.PresenceRequest.parse, SendService.presence),
    uris.MESSAGE_RECALL: (requests.RecallRequest.parse, SendService.recall),
    uris.MESSAGE_EDIT: (requests.EditRequest.parse, SendService.edit),
    uris.AGENT_LIST: (requests.NoArgs.parse, SendService.agent_list),
    uris.SESSION_LIST: (requests.SessionListRequest.parse, SendService.session_list),
    uris.SESSION_KICK: (requests.SessionKickRequest.parse, SendService.session_kick),
    uris.GROUP_MEMBERS_CHANGED: (requests.MembersChangedRequest.parse, SendService.members_changed),
}


class TenantComponent(MicsSession):
    """One per tenant realm, joined with the trusted `mics` role."""

    log = log

    async def onJoin(self, details: Any) -> None:
        tenant_id: str = self.config.realm
        tenant = NODE.tenants.get(tenant_id) if NODE.tenants else None
        if tenant is None:
            raise RuntimeError(f"no tenant {tenant_id}")
        self.tenant: TenantRuntime = tenant
        transient = tenant.engine.transient_errors
        opts = RegisterOptions(details_arg="details")
        def max_body() -> int:
            return tenant.config.max_payload_bytes

        for uri, (parse, method) in _PROCEDURES.items():
            call = expose(uri, requests.bounded(parse, max_body), self._handler(method), tenant_id, transient)
            await self.register(call, uri, options=opts)
        await self.register(self.authorize, uris.AUTHORIZE)
        await self.subscribe(self._on_session_join, uris.SESSION_ON_JOIN)
        await self.subscribe(self._on_session_leave, uris.SESSION_ON_LEAVE)
        if tenant.relay is not None:  # cluster mode: tell the other nodes what our backends serve
            await self.subscribe(self._on_registration, uris.REGISTRATION_ON_CREATE)
            await self.subscribe(self._on_routes_changed, uris.REGISTRATION_ON_DELETE)
        if tenant.engine.presence.needs_watch or tenant.relay is not None:  # cluster mode: who subscribes here
            await self.subscribe(self._on_subscription_create, uris.SUBSCRIPTION_ON_CREATE)
            await self.subscribe(self._on_subscription_delete, uris.SUBSCRIPTION_ON_DELETE)
        tenant.port.bind_session(self)

    def onLeave(self, details: Any) -> None:
        """The realm goes away only when the node stops: say goodbye to every user first."""
        tenant: TenantRuntime | None = getattr(self, "tenant", None)
        if tenant is not None:
            NODE.drained += tenant.close_all(errors.CLOSE_SHUTDOWN, "the node is shutting down")
            tenant.port.bind_session(None)
        super().onLeave(details)

    def _handler(self, method: Callable[..., Any]) -> Callable[[Any, CallDetails], Any]:
        service = self.tenant.service

        async def handle(request: Any, details: CallDetails) -> Any:
            sender = await self._sender(details, getattr(request, "from_user_id", None))
            return await method(service, sender, request)

        return handle

    async def _sender(self, details: CallDetails, from_user_id: str | None) -> Sender:
        """Resolve the caller; a user's call also counts as heartbeat activity."""
        role = details.caller_authrole
        if role == uris.ROLE_USER:
            info = self.tenant.touch(details.caller)  # type: ignore[arg-type]
            if info is None:  # the call overtook the on_join event: look the session up
                info = self._adopt(await self.call(uris.SESSION_GET, details.caller))
                if info is None:
                    raise MicsError(errors.NOT_AUTHORIZED, "unknown session")
            return Sender(info.user_id, info.device_id, info.session_id, False)
        if role == uris.ROLE_BACKEND:
            return Sender(from_user_id or details.caller_authid or "backend", None, details.caller or 0, True)
        raise MicsError(errors.NOT_AUTHORIZED, "not allowed for this role")

    # -- authorization and sessions ------------------------------------------------------------------
    def authorize(self, session: dict[str, Any], uri: str, action: str, options: dict[str, Any]) -> dict[str, Any]:
        if action == "call" and uri.startswith(uris.TENANT_PREFIX):
            self.tenant.touch(session.get("session"))  # type: ignore[arg-type]
        presence = action == "subscribe" and uri.startswith(uris.PRESENCE_PREFIX)
        if presence:
            presence = self.tenant.may_watch_presence(session.get("session"))  # type: ignore[arg-type]
        return authz.decide(session.get("authid") or "", uri, action, (options or {}).get("match"), presence)

    def _on_session_join(self, joined: dict[str, Any]) -> None:
        if joined.get("authrole") == uris.ROLE_USER:
            self._adopt(joined)

    def _adopt(self, joined: dict[str, Any]) -> Any:
        extra = joined.get("authextra") or {}
        return self.tenant.session_joined(joined["session"], joined["authid"], extra.get("device_id"))

    def _on_session_leave(self, session_id: int, *args: Any, **kwargs: Any) -> None:
        self.tenant.session_left(session_id)

    def _on_subscription_create(self, session_id: int, subscription: dict[str, Any], *args: Any, **kw: Any) -> None:
        self.tenant.subscription_created(subscription["id"], subscription["uri"])

    def _on_subscription_delete(self, session_id: int, subscription_id: int, *args: Any, **kw: Any) -> None:
        self.tenant.subscription_deleted(subscription_id)

    # -- cluster mode: what this node's backends serve (mics.cluster.relay) -------------------------------
    def _on_registration(self, session_id: int, registration: dict[str, Any], *args: Any, **kwargs: Any) -> None:
        if str(registration.get("uri", "")).startswith(FORWARDED_CALLS):
            self._on_routes_changed()

    def _on_routes_changed(self, *args: Any, **kwargs: Any) -> None:
        self.tenant.relay.local_changed()
