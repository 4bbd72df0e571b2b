"""Start-up probe: retry a WAMP join every 20 ms until one succeeds; print its wall time."""

from __future__ import annotations

import json
import sys
import time

from twisted.internet import task

from bench import common  # noqa: F401  (puts tests/ on sys.path)
from wamp_clients import connect, sleep


async def main(_reactor: object, spec: dict[str, str | None]) -> None:
    while True:
        try:
            session = await connect(str(spec["url"]), str(spec["realm"]), authmethod="ticket", ticket=spec["ticket"],
                                    authid=spec["authid"], authextra={"device_id": "probe"}, timeout=1)  # fmt: skip
        except Exception:
            await sleep(0.02)
            continue
        print(f"{time.time():.6f}", flush=True)
        await session.close()
        return


if __name__ == "__main__":
    task.react(lambda r: main(r, json.loads(sys.argv[1])))
