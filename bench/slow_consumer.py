"""Router memory held for a client that stops reading: a user subscribes to its inbox, then reads
nothing while another user sends it N messages of ~1 KB (events of ~1.4 KB).

    .venv/bin/python -m bench.slow_consumer [N]    # default 20,000; prints RSS of the router worker

Without a cap the worker buffers every event for that connection until the WebSocket ping times
out; with `max_unsent_bytes` the connection is closed (mics.close.slow_consumer) once its unsent
data passes the cap and stops shrinking, and the buffer goes with it.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import psutil

# isort: off
from bench.common import rss_bytes  # first: puts tests/ on sys.path
from harness import start_node
from raw_ws import open_websocket

# isort: on


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 20_000
    with tempfile.TemporaryDirectory() as tmp:
        node = start_node(Path(tmp), "slow")  # the demo tenant: its backend runs inside the node
        try:
            worker = max(psutil.Process(node.process.proc.pid).children(recursive=True), key=rss_bytes)
            reader = open_websocket(node.port, rcvbuf=4096, timeout=30)
            assert reader.join("demo", ticket="demo-slowreader")[0] == 2
            reader.send([32, 1, {}, "mics.inbox.slowreader"])
            assert reader.recv()[0] == 33
            sender = open_websocket(node.port, timeout=30)
            assert sender.join("demo", ticket="demo-fastsender")[0] == 2
            before = rss_bytes(worker)
            body = "x" * 1000
            started = time.monotonic()
            for n in range(count):
                sender.call(n + 1, "mics.message.send", {"to_user_id": "slowreader", "body": body})
                if n % 100 == 99:  # keep a window of 100 calls in flight
                    for _ in range(100):
                        sender.recv()
            took = time.monotonic() - started
            after = rss_bytes(worker)
            time.sleep(3)
            later = rss_bytes(worker)
            closed = reader.closed_now()
            grew = (after - before) / 1e6
            print(f"{count} events of ~1.4 KB to a client that reads nothing, sent in {took:.1f} s: router worker "
                  f"RSS {before / 1e6:.1f} MB before, {after / 1e6:.1f} MB after the sends (+{grew:.1f} MB), "
                  f"{later / 1e6:.1f} MB 3 s later; the reader's connection closed: {closed}")  # fmt: skip
        finally:
            node.process.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
