"""A tenant backend served over WAMP with the hook SDK's TenantBackend base class.

It creates (or updates) the tenant `shop` through the admin API, joins its realm as `backend` and
answers the hooks: tokens `shop-<user>`, a group `staff`, no messages mentioning refunds. Run:

    .venv/bin/python examples/python_wamp_backend.py            # serve until Ctrl-C
    .venv/bin/python examples/python_wamp_backend.py --self-test # also chat once as alice -> bob, then exit

then chat: `.venv/bin/python examples/python_cli_chat.py --tenant shop --user alice --token shop-alice`.
The admin secret is MICS_ADMIN_SECRET or the embedded default's development secret.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred

from mics_client.admin import connect_admin
from mics_client.hooks import Hooks, RejectToken
from mics_client.hooks.backend import TenantBackend, connect_backend
from mics_client.twisted import MicsClient

GROUPS = {"staff": ["alice", "bob"]}


class ShopHooks(Hooks):
    """The shop's hook logic, written once; served over WAMP here and over HTTP by python_http_hooks.py."""

    async def auth(self, token: str, device_id: str, tenant_id: str) -> str:
        if not token.startswith("shop-"):
            raise RejectToken("shop tokens are shop-<user>")
        return token.removeprefix("shop-")

    async def check_message(self, message: dict[str, Any]) -> dict[str, Any]:
        if "refund" in str(message.get("body")).lower():
            return {"allow": False, "reason": "refunds go through support"}
        return {"allow": True}

    async def group_members(self, group_id: str, from_user_id: str, tenant_id: str) -> list[str]:
        return GROUPS.get(group_id, [])


class ShopBackend(ShopHooks, TenantBackend):
    async def on_ready(self, details: Any) -> None:
        # a tenant procedure users may call over the same connection (protocol.md section 3)
        await self.register(lambda **_: {"groups": sorted(GROUPS)}, "tenant.groups.list")
        await self.send_system("alice", {"text": "the shop backend is up"}, from_user_id="shop")


async def self_test(url: str, tenant: str, with_tenant_procedure: bool = False) -> None:
    """Chat once as alice -> bob through the tenant and print what bob got."""
    alice = MicsClient(url, tenant, "shop-alice", "example")
    bob = MicsClient(url, tenant, "shop-bob", "example")
    received: Deferred[Any] = Deferred()
    bob.on_message(lambda m: received.called or received.callback(m))
    await alice.connect()
    await bob.connect()
    await alice.send("bob", {"text": "hello from the self-test"})
    if with_tenant_procedure:
        print("self-test: tenant.groups.list ->", await bob.call("tenant.groups.list"))
    message = await received
    print(f"self-test: bob got {message.body!r} from {message.from_user_id}")
    await alice.close()
    await bob.close()


async def main(reactor: Any, args: argparse.Namespace) -> None:
    admin = await connect_admin(args.url, args.admin_secret)
    await admin.upsert_tenant(args.tenant, secret=args.secret, hook_transport="wamp")
    backend = await connect_backend(args.url, args.tenant, args.secret, ShopBackend)
    print(f"backend for tenant {args.tenant!r} ready; tokens are shop-<user>")
    if args.self_test:
        await self_test(args.url, args.tenant, with_tenant_procedure=True)
        backend.leave()
        admin.leave()
        return
    reason, message = await backend.left
    print(f"backend left: {reason} {message or ''}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://127.0.0.1:8080/ws")
    parser.add_argument("--tenant", default="shop")
    parser.add_argument("--secret", default="shop-secret-change-me-0123456789")
    parser.add_argument("--admin-secret", default=os.environ.get("MICS_ADMIN_SECRET", "dev-admin-secret"))
    parser.add_argument("--self-test", action="store_true")
    task.react(lambda reactor: ensureDeferred(main(reactor, parser.parse_args())))
