"""The bench tenants' backend, in its own process: the test suite's hook logic (tokens `tok-<user>`,
groups from a dict) served over WAMP (msgpack, like the SDKs' default) for the wamp tenants and over
signed HTTP for one http tenant. Several such processes share the WAMP hooks with `invoke: roundrobin`.

The http tenant is created through the admin API once the HTTP server has its port.
One JSON line out when ready; then stdin commands `stats` (hook call counters) and `quit`.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from twisted.internet import reactor, stdio, task
from twisted.internet.defer import Deferred
from twisted.protocols.basic import LineReceiver

from bench.common import raise_fd_limit  # first: puts tests/ on sys.path
from harness import ADMIN_SECRET
from hook_servers import HookLogic, HttpHookServer, wamp_backend
from wamp_clients import admin


class Control(LineReceiver):
    delimiter = b"\n"

    def __init__(self, spec: dict[str, Any]) -> None:
        self.spec = spec
        groups = {g: [f"u{i}" for i in range(n)] for g, n in spec["groups"].items()}
        self.logic = HookLogic(groups=groups)
        # HookLogic keeps every checked message for test assertions; a benchmark must not grow without bound
        self._trim = task.LoopingCall(self.logic.seen_messages.clear)

    def connectionMade(self) -> None:
        Deferred.fromCoroutine(self._start())

    async def _start(self) -> None:
        spec, out = self.spec, {}
        self._trim.start(1.0)
        for tenant_id, secret in spec["wamp_tenants"].items():
            await wamp_backend(spec["url"], tenant_id, secret, self.logic, "msgpack", spec.get("invoke"))
        http = spec.get("http_tenant")
        if http:
            server = HttpHookServer(http["config"]["secret"], self.logic)
            adm = await admin(spec["url"], ADMIN_SECRET)
            config = {**http["config"], "hook_transport": "http", "hook_base_url": server.base_url}
            await adm.call("mics.admin.tenant.upsert", tenant_id=http["tenant_id"], config=config)
            out["hook_base_url"] = server.base_url
        self.sendLine(json.dumps({"ready": True, **out}).encode())

    def lineReceived(self, line: bytes) -> None:
        cmd = json.loads(line)["cmd"]
        if cmd == "stats":
            self.sendLine(json.dumps(dict(self.logic.calls)).encode())
        elif cmd == "quit":
            reactor.stop()


def main() -> None:
    raise_fd_limit()
    stdio.StandardIO(Control(json.loads(sys.argv[1])))
    reactor.run()


if __name__ == "__main__":
    main()
