"""The `function` authenticator Crossbar calls for every HELLO on the MICS transport.

- end-user devices: ticket = tenant token, authextra.device_id; the tenant's auth hook decides.
- tenant backends: wampcra, authid `backend` or `backend-<name>`, secret = the tenant secret.
- admins: wampcra into `mics.control`, authid `admin`, secret from MICS_ADMIN_SECRET.

Failures raise JoinDenied, which Crossbar sends as ABORT(reason URI, message).
"""

from __future__ import annotations

import re
from typing import Any

from txaio import make_logger

from mics import errors, limit_log, metrics, uris
from mics.config import is_valid_entity_id
from mics.hooks import HookRejected
from mics.hooks.policy import HookUnavailable
from mics.logs import RateLimitedLog
from mics.node import NODE, Node
from mics.router import guards

log = make_logger()
_limited = RateLimitedLog(log)  # a hook outage meets a reconnect storm: one line a minute per tenant

BACKEND_AUTHID = re.compile(r"^backend(-[A-Za-z0-9_-]{1,64})?$")
PENDING_JOIN_S = 30.0  # a reservation not turned into a session within this is released


def create_authenticator(config: dict[str, Any], controller: Any = None) -> Any:
    """Crossbar's factory: returns `authenticate(realm, authid, details)`."""
    guards.watch_wampcra_failures()  # before the first wampcra login can fail
    return Authenticator(NODE).authenticate


class Authenticator:
    def __init__(self, node: Node) -> None:
        self._node = node

    async def authenticate(self, realm: str, authid: str | None, details: dict[str, Any]) -> dict[str, Any]:
        node = self._node
        await node.when_ready()
        method = details.get("authmethod")
        if method == "wampcra":
            guards.refuse_throttled_login(details)
        if realm == uris.CONTROL_REALM:
            return self._admin(authid, method)
        tenant = await node.find_tenant(realm)
        if tenant is None or not tenant.enabled:
            metrics.JOINS.labels("-", "invalid_tenant").inc()
            raise errors.JoinDenied(errors.INVALID_TENANT, f"tenant {realm!r} is unknown or disabled")
        assert node.realms is not None and node.settings is not None
        await node.realms.ensure(realm)
        if method == "wampcra":
            if not authid or not BACKEND_AUTHID.match(authid):
                raise errors.JoinDenied(errors.INVALID_TOKEN, "backend authid must be 'backend' or 'backend-<name>'")
            return {"authid": authid, "role": uris.ROLE_BACKEND, "secret": tenant.config.secret,
                    "extra": {"node_id": node.settings.node_id}}  # fmt: skip
        if method != "ticket":
            raise errors.JoinDenied(errors.INVALID_TOKEN, "users join with authmethod ticket")
        return await self._user(tenant, details)

    def _admin(self, authid: str | None, method: str | None) -> dict[str, Any]:
        settings = self._node.settings
        secret = settings.admin_secret if settings else None
        if method != "wampcra" or authid != "admin" or not secret:
            raise errors.JoinDenied(errors.NOT_AUTHORIZED, "admins join with wampcra as 'admin'")
        return {"authid": "admin", "role": uris.ROLE_ADMIN, "secret": secret}

    async def _user(self, tenant: Any, details: dict[str, Any]) -> dict[str, Any]:
        tenant_id = tenant.tenant_id
        token = details.get("ticket")
        authextra = details.get("authextra") or {}
        device_id = authextra.get("device_id") if isinstance(authextra, dict) else None
        if not isinstance(token, str) or not token:
            self._count(tenant_id, "invalid_token")
            raise errors.JoinDenied(errors.INVALID_TOKEN, "a ticket (the tenant token) is required")
        if not is_valid_entity_id(device_id):
            self._count(tenant_id, "invalid_token")
            raise errors.JoinDenied(errors.INVALID_TOKEN, "authextra.device_id is required (no '.', '#', spaces)")
        address = client_address(details)
        if address is not None and not tenant.join_buckets.try_take(address):
            # before the auth hook: a flood from one address must not reach the tenant's hook
            self._count(tenant_id, "connection_limit")
            tenant.limit_hits.hit(limit_log.MAX_JOINS_PER_IP, tenant.config.max_joins_per_ip_per_s,
                                  tenant.join_buckets.recent(address), address)  # fmt: skip
            raise errors.JoinDenied(errors.CONNECTION_LIMIT, "too many joins from this address, try again later")
        hook = tenant.hook
        if hook is None:
            self._count(tenant_id, "hook_unavailable")
            raise errors.JoinDenied(errors.HOOK_UNAVAILABLE_JOIN, "the tenant's auth hook is not available")
        try:
            reply = await hook.auth(token, device_id)
        except HookRejected:
            self._count(tenant_id, "invalid_token")
            raise errors.JoinDenied(errors.INVALID_TOKEN, "the token was refused") from None
        except HookUnavailable as e:
            self._count(tenant_id, "hook_unavailable")
            _limited.warn((tenant_id, "auth_hook_unavailable"), "auth hook unavailable: tenant_id={tenant_id} "
                          "cause={cause}", tenant_id=tenant_id, cause=e.cause)  # fmt: skip
            raise errors.JoinDenied(errors.HOOK_UNAVAILABLE_JOIN, "the auth hook is unavailable") from None
        if not tenant.enabled:  # disabled while the hook was asked
            raise errors.JoinDenied(errors.INVALID_TENANT, f"tenant {tenant_id!r} is disabled")
        if tenant.agents.serves(reply.user_id):  # section 12: nobody speaks as an agent
            self._count(tenant_id, "invalid_token")
            log.info("login as an agent refused: tenant_id={tenant_id} agent_id={agent_id}", tenant_id=tenant_id,
                     agent_id=reply.user_id)  # fmt: skip
            raise errors.JoinDenied(errors.INVALID_TOKEN, "this user id belongs to an agent")
        if reply.config:
            tenant.apply_overrides(reply.config)
        config = tenant.config
        device_id = reply.device_id or device_id
        over = await tenant.over_connection_limit(reply.user_id, device_id)
        if over is not None:
            self._count(tenant_id, "connection_limit")
            if over == "tenant":
                limit, threshold = limit_log.MAX_CONNECTIONS, config.max_connections
                current = tenant.sessions.connections
            else:
                limit, threshold = limit_log.MAX_CONNECTIONS_PER_USER, config.max_connections_per_user
                current = len(tenant.sessions.devices(reply.user_id))
            tenant.limit_hits.hit(limit, threshold, current, reply.user_id)
            what = "the tenant's connection limit" if over == "tenant" else "the per-user connection limit"
            raise errors.JoinDenied(errors.CONNECTION_LIMIT, f"{what} is reached")
        node = self._node
        tenant.sessions.reserve(reply.user_id, device_id, node.reactor.seconds() + PENDING_JOIN_S)
        self._count(tenant_id, "ok")
        assert node.settings is not None
        return {
            "authid": reply.user_id,
            "role": uris.ROLE_USER,
            "extra": {
                "device_id": device_id,
                "node_id": node.settings.node_id,
                "heartbeat_timeout_s": config.heartbeat_timeout_s,
                "offline_ttl_s": config.offline_ttl_s,
                "tenant_id": tenant_id,
            },
        }

    @staticmethod
    def _count(tenant_id: str, outcome: str) -> None:
        metrics.JOINS.labels(tenant_id, outcome).inc()


def client_address(details: dict[str, Any]) -> str | None:
    """The joining client's address as Crossbar saw it (`tcp4:1.2.3.4:5678` -> `1.2.3.4`). Behind a
    proxy that is the proxy, unless the transport trusts its X-Forwarded-For (docs/operations.md)."""
    transport = details.get("transport")
    peer = transport.get("peer") if isinstance(transport, dict) else None
    if not isinstance(peer, str) or not peer:
        return None
    kind, _, rest = peer.partition(":")
    if kind in ("tcp4", "tcp6") and rest:
        return rest.rsplit(":", 1)[0]
    return peer
