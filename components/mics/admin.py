"""The control realm `mics.control`: node bootstrap and the admin API (protocol.md section 7).

This component is the one Crossbar starts from the router config; its `extra` is the MICS config
(node settings + tenants). `check_config` validates it before start, so a bad value stops the node
with a message naming tenant and field.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from txaio import make_logger

from mics import errors, metrics, uris
from mics.config import MicsConfig, is_valid_entity_id, is_valid_tenant_id
from mics.errors import ConfigError, MicsError
from mics.events import dlq
from mics.hooks.policy import Guard
from mics.node import NODE
from mics.procedures import MicsSession, expose
from mics.requests import Args
from mics.router import controller_of
from mics.tenants import TenantRuntime

log = make_logger()


def _keywords(args: Sequence[Any], kwargs: Mapping[str, Any]) -> Mapping[str, Any]:
    """Admin procedures take keyword arguments only (validated by each procedure)."""
    Args(args, kwargs)
    return kwargs


def _call_with(fn: Callable[..., Any]) -> Callable[[Mapping[str, Any], Any], Any]:
    """Call `fn` with the keywords it knows; others are ignored, as for every procedure."""
    known = set(inspect.signature(fn).parameters)
    return lambda kwargs, _details: fn(**{k: v for k, v in kwargs.items() if k in known})


class ControlComponent(MicsSession):
    """Starts the MICS node, then serves mics.admin.* to admins."""

    @staticmethod
    def check_config(personality: Any, extra: dict[str, Any]) -> None:
        try:
            MicsConfig.load(_without_cbdir(extra))
        except ConfigError as e:
            raise ValueError(f"MICS config: {e}") from None

    async def onJoin(self, details: Any) -> None:
        config = MicsConfig.load(_without_cbdir(self.config.extra or {}))
        if config.node.dev_mode and config.node.admin_secret:
            log.info(
                "development admin secret (embedded default): {secret} - set MICS_ADMIN_SECRET in production",
                secret=config.node.admin_secret,
            )
        await NODE.start(config, controller_of(self))
        procedures = {
            uris.ADMIN_TENANT_LIST: self.tenant_list,
            uris.ADMIN_TENANT_GET: self.tenant_get,
            uris.ADMIN_TENANT_UPSERT: self.tenant_upsert,
            uris.ADMIN_TENANT_DISABLE: self.tenant_disable,
            uris.ADMIN_SESSION_LIST: self.session_list,
            uris.ADMIN_SESSION_KICK: self.session_kick,
            uris.ADMIN_STATS: self.stats,
            uris.ADMIN_DLQ_LIST: self.dlq_list,
            uris.ADMIN_DLQ_REPUSH: self.dlq_repush,
        }
        transient = NODE.engines.transient_errors if NODE.engines else ()
        for uri, fn in procedures.items():
            await self.register(expose(uri, _keywords, _call_with(fn), "-", transient), uri)

    def onLeave(self, details: Any) -> None:
        NODE.stop()
        super().onLeave(details)

    def _tenant(self, tenant_id: Any) -> TenantRuntime:
        tenant = NODE.tenants.get(tenant_id) if isinstance(tenant_id, str) and NODE.tenants else None
        if tenant is None:
            raise MicsError(errors.NOT_FOUND, f"no tenant {tenant_id!r}")
        return tenant

    def tenant_list(self) -> dict[str, Any]:
        assert NODE.tenants is not None
        return {
            "tenants": [
                {"tenant_id": t.tenant_id, "enabled": t.enabled, "connections": t.sessions.connections}
                for t in NODE.tenants
            ]
        }

    def tenant_get(self, tenant_id: Any = None) -> dict[str, Any]:
        tenant = self._tenant(tenant_id)
        return {"tenant_id": tenant.tenant_id, "config": tenant.config.to_dict(redact=True)}

    async def tenant_upsert(self, tenant_id: Any = None, config: Any = None) -> dict[str, Any]:
        assert NODE.tenants is not None and NODE.realms is not None
        if not is_valid_tenant_id(tenant_id):
            raise ConfigError("tenant_id", f"expected ^[A-Za-z][A-Za-z0-9_-]{{2,63}}$, got {tenant_id!r}").to_wamp()
        try:
            _tenant, created = await NODE.upsert_tenant(tenant_id, config if config is not None else {})
        except ConfigError as e:
            raise e.to_wamp() from None
        log.info("tenant upserted: tenant_id={tenant_id} created={created}", tenant_id=tenant_id, created=created)
        return {"tenant_id": tenant_id, "created": created}

    async def tenant_disable(self, tenant_id: Any = None) -> dict[str, Any]:
        tenant = self._tenant(tenant_id)
        await NODE.upsert_tenant(tenant.tenant_id, {"enabled": False})
        log.info("tenant disabled: tenant_id={tenant_id}", tenant_id=tenant.tenant_id)
        return {}

    async def session_list(self, tenant_id: Any = None, user_id: Any = None) -> dict[str, Any]:
        tenant = self._tenant(tenant_id)
        if user_id is not None and not is_valid_entity_id(user_id):
            raise MicsError(errors.INVALID_MESSAGE, "user_id is invalid")
        return {"sessions": await tenant.engine.presence.sessions(user_id)}

    async def session_kick(self, tenant_id: Any = None, user_id: Any = None, device_id: Any = None) -> dict[str, Any]:
        tenant = self._tenant(tenant_id)
        if not is_valid_entity_id(user_id) or (device_id is not None and not is_valid_entity_id(device_id)):
            raise MicsError(errors.INVALID_MESSAGE, "user_id (and device_id, if given) must be valid ids")
        return {"kicked": await tenant.kick(user_id, device_id)}

    def stats(self, tenant_id: Any = None) -> dict[str, Any]:
        assert NODE.tenants is not None
        tenants = [self._tenant(tenant_id)] if tenant_id is not None else list(NODE.tenants)
        return {
            "node_id": NODE.settings.node_id if NODE.settings else None,
            "tenants": {
                t.tenant_id: {
                    "enabled": t.enabled,
                    "connections": t.sessions.connections,
                    "users_online": len(t.sessions.by_user),
                    "events_queued": len(t.events.items),
                    "events_dropped": t.events.dropped,
                    **{f"buffer_{k}": v for k, v in t.engine.buffer.stats().items()},
                    "hooks": hook_health(t),
                }
                for t in tenants
            },
        }

    def dlq_list(self, tenant_id: Any = None, limit: Any = None) -> dict[str, Any]:
        tenant = self._tenant(tenant_id)
        assert NODE.settings is not None
        return dlq.list_for_admin(tenant.tenant_id, NODE.settings.data_dir, limit)

    def dlq_repush(self, tenant_id: Any = None, limit: Any = None) -> dict[str, Any]:
        tenant = self._tenant(tenant_id)
        assert NODE.settings is not None
        from mics.events import kafka  # confluent-kafka only when re-push is used

        return kafka.repush(tenant.tenant_id, tenant.events.sinks, NODE.settings.data_dir, limit)


def hook_guards(tenant: TenantRuntime) -> dict[str, Guard]:
    """The tenant's hook guards by hook name; none while it has no hook (WAMP hooks before its
    realm component joined)."""
    hook = tenant.hook
    if hook is None:
        return {}
    return {g.hook: g for g in (hook.auth_guard, hook.check_guard, hook.members_guard)}


def hook_health(tenant: TenantRuntime) -> dict[str, dict[str, Any]]:
    """Per hook: breaker state (`closed`/`open`/`half_open`; null while the tenant has no hook),
    calls in flight, and call outcomes so far."""
    guards = hook_guards(tenant)
    calls = metrics.hook_calls(tenant.tenant_id)
    health = {}
    for name in ("auth", "check_message", "group_members"):
        guard = guards.get(name)
        health[name] = {
            "breaker": guard.breaker.state if guard else None,
            "in_flight": guard.in_flight if guard else 0,
            "calls": {o: calls.get(name, {}).get(o, 0) for o in metrics.HOOK_OUTCOMES},
        }
    return health


def _without_cbdir(extra: dict[str, Any]) -> dict[str, Any]:
    """Crossbar adds `cbdir` to every component's extra."""
    return {k: v for k, v in extra.items() if k != "cbdir"}


__all__ = ["ControlComponent"]
