"""A tenant backend serving its hooks over signed HTTP with the hook SDK's HookServer.

It listens on 127.0.0.1:8091, creates (or updates) the tenant `shop-http` through the admin API with
`hook_transport: http` pointing at itself, and answers with the same logic as python_wamp_backend.py
(tokens `shop-<user>`, group `staff`, no refunds). Every request's signature is checked
(HMAC-SHA256, 5-minute skew, nonce replay refused). Run:

    .venv/bin/python examples/python_http_hooks.py                      # serve until Ctrl-C
    .venv/bin/python examples/python_http_hooks.py --encoding protobuf --self-test

then chat: `.venv/bin/python examples/python_cli_chat.py --tenant shop-http --user alice --token shop-alice`.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from python_wamp_backend import ShopHooks, self_test
from twisted.internet import task
from twisted.internet.defer import Deferred, ensureDeferred

from mics_client.admin import connect_admin
from mics_client.hooks.http import HookServer


async def main(reactor: Any, args: argparse.Namespace) -> None:
    server = HookServer(ShopHooks(), args.secret, port=args.port, interface=args.interface)
    admin = await connect_admin(args.url, args.admin_secret)
    await admin.upsert_tenant(
        args.tenant, secret=args.secret, hook_transport="http", hook_base_url=server.base_url,
        hook_encoding=args.encoding,
    )  # fmt: skip
    print(f"hooks for tenant {args.tenant!r} at {server.base_url} ({args.encoding}); tokens are shop-<user>")
    if args.self_test:
        await self_test(args.url, args.tenant)
        print(f"self-test: hook requests served {server.resource.stats}")
        admin.leave()
        await server.stop()
        return
    await Deferred()  # serve until interrupted


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default="ws://127.0.0.1:8080/ws")
    parser.add_argument("--tenant", default="shop-http")
    parser.add_argument("--secret", default="shop-http-secret-change-me-0123456789")
    parser.add_argument("--port", type=int, default=8091)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--encoding", default="json", choices=["json", "protobuf"])
    parser.add_argument("--admin-secret", default=os.environ.get("MICS_ADMIN_SECRET", "dev-admin-secret"))
    parser.add_argument("--self-test", action="store_true")
    task.react(lambda reactor: ensureDeferred(main(reactor, parser.parse_args())))
