"""A small admin client for the control realm `mics.control` (protocol.md section 7), Twisted flavour.

admin = await connect_admin("ws://127.0.0.1:8080/ws", admin_secret)
await admin.upsert_tenant("shop", secret="...", hook_transport="wamp")
"""

from __future__ import annotations

from typing import Any

from mics_client.hooks.backend import CraSession, connect_cra

CONTROL_REALM = "mics.control"


class AdminSession(CraSession):
    """Calls `mics.admin.*`; errors are the typed MICS errors (e.g. `mics.error.invalid_config`)."""

    async def upsert_tenant(self, tenant_id: str, **config: Any) -> dict[str, Any]:
        """Create a tenant or merge `config` into it; takes effect at once for new sessions."""
        result: dict[str, Any] = await self._call("mics.admin.tenant.upsert", tenant_id=tenant_id, config=config)
        return result

    async def tenants(self) -> list[dict[str, Any]]:
        return list((await self._call("mics.admin.tenant.list"))["tenants"])

    async def kick(self, tenant_id: str, user_id: str, device_id: str | None = None) -> int:
        result = await self._call("mics.admin.session.kick", tenant_id=tenant_id, user_id=user_id, device_id=device_id)
        return int(result.get("kicked", 0))


async def connect_admin(url: str, secret: str, **options: Any) -> AdminSession:
    """Join `mics.control` as `admin` with the node's admin secret."""
    session: AdminSession = await connect_cra(url, CONTROL_REALM, secret, AdminSession, "admin", **options)
    return session
