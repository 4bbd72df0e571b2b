"""What a node configured for production must not run with: the secrets published in the project's
own router config (router/.crossbar/config.json), which anyone can read.

A node counts as configured for production when its admin secret comes from `MICS_ADMIN_SECRET`
(the embedded development default is in the published config). Then a tenant still holding its
published secret lets anyone join it as its backend, read its events and send as any user: the node
warns at start (`warn_published_secrets`), and `mics config check --production` fails.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from mics.config import MicsConfig, TenantConfig

# tests/unit/test_production.py checks these against router/.crossbar/config.json
PUBLISHED_TENANT_SECRETS = frozenset({"demo-tenant-secret"})
PUBLISHED_ADMIN_SECRETS = frozenset({"dev-admin-secret"})


def tenants_with_published_secrets(configs: Iterable[TenantConfig]) -> list[str]:
    return sorted(c.tenant_id for c in configs if c.secret in PUBLISHED_TENANT_SECRETS)


def problems(config: MicsConfig) -> list[str]:
    """Why `config` (environment applied) is not fit for production; empty when it is."""
    found = [
        f"tenants.{tenant_id}.secret: the published development secret; set a secret of your own "
        "(or remove the tenant)"
        for tenant_id in tenants_with_published_secrets(config.tenants.values())
    ]
    admin = config.node.admin_secret
    if not admin:
        found.append("node.admin_secret: not set; set MICS_ADMIN_SECRET")
    elif admin in PUBLISHED_ADMIN_SECRETS:
        found.append("node.admin_secret: the published development secret; set MICS_ADMIN_SECRET")
    return found


def warn_published_secrets(configs: Iterable[TenantConfig], log: Any, env: Mapping[str, str] | None = None) -> int:
    """At node start: on a node configured for production, one loud warning per tenant that still
    has its published secret. Returns how many."""
    import os

    env = os.environ if env is None else env
    if not env.get("MICS_ADMIN_SECRET"):
        return 0  # a development node: the demo tenant is meant to work out of the box
    exposed = tenants_with_published_secrets(configs)
    for tenant_id in exposed:
        log.warn(
            "SECURITY: tenant {tenant_id} uses the secret published in the project's router config, on a node "
            "configured for production (MICS_ADMIN_SECRET is set): anyone can join it as its backend. Set a "
            "secret of its own (mics.admin.tenant.upsert) or remove it. tenant_id={tenant_id}",
            tenant_id=tenant_id,
        )
    return len(exposed)
