"""Tenant realms at run time: create the realm, its roles and our component, once per tenant.

Crossbar's router worker can add realms while running (crossbar-notes.md section 1). A realm is
ready only once our component joined and registered the authorizer, so users never see a realm
without it. Concurrent first joins for one tenant share one creation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet.defer import Deferred
from txaio import make_logger

from mics import authz, uris
from mics.router import router_of

log = make_logger()


def realm_id(realm: str) -> str:
    """Crossbar's id for a realm (ids may not contain dots)."""
    return "rt-" + realm.replace(".", "-")


class RealmManager:
    """Creates tenant realms through the router worker's controller."""

    def __init__(
        self, controller: Any, backend_components: dict[str, str], started: Callable[[str, Any], None]
    ) -> None:
        self._controller = controller
        self._backend_components = backend_components
        self._started = started  # (realm, its router): before our component joins it
        self._creating: dict[str, list[Deferred[None]]] = {}

    def has_realm(self, realm: str) -> bool:
        return bool(self._controller.has_realm(realm))

    async def ensure(self, realm: str) -> None:
        """Make sure the tenant realm exists and its component is ready."""
        waiters = self._creating.get(realm)
        if waiters is not None:
            waiter: Deferred[None] = Deferred()
            waiters.append(waiter)
            await waiter
            return
        if self.has_realm(realm):
            return
        self._creating[realm] = waiters = []
        error: BaseException | None = None
        try:
            await self._create(realm)
        except BaseException as e:
            error = e
            raise
        finally:
            del self._creating[realm]
            for waiter in waiters:
                if error is None:
                    waiter.callback(None)
                else:
                    waiter.errback(error)

    async def _create(self, realm: str) -> None:
        rid = realm_id(realm)
        controller = self._controller
        await controller.start_router_realm(rid, {"name": realm})
        for role in authz.tenant_roles():
            controller.start_router_realm_role(rid, "role-" + role["name"], role)
        self._started(realm, router_of(controller, realm))
        await controller.start_router_component(
            "c-" + rid,
            {"type": "class", "classname": "mics.messaging.TenantComponent", "realm": realm, "role": uris.ROLE_SERVICE},
        )
        backend = self._backend_components.get(realm)
        if backend:
            await controller.start_router_component(
                "b-" + rid, {"type": "class", "classname": backend, "realm": realm, "role": uris.ROLE_BACKEND}
            )
        log.info("tenant realm started: tenant_id={tenant_id}", tenant_id=realm)
