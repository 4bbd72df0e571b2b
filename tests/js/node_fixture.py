"""Start a MICS node for the JS tests; print its address as one JSON line; stop it on stdin EOF or SIGTERM.

The node runs the real router config (demo tenant included) through tests/harness.py; JS tests add
their own tenants over the admin API, so every test file gets fresh tenants on one node. An optional
JSON argument `{"node": {...}, "env": {...}}` adds node settings and environment (e.g. a Kafka bootstrap).
"""

from __future__ import annotations

import json
import signal
import sys
import tempfile
import threading
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import ADMIN_SECRET, start_node


def main() -> None:
    with tempfile.TemporaryDirectory(prefix="mics-js-") as tmp:
        options = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
        node = start_node(Path(tmp), "js", node=options.get("node"), env=options.get("env"))
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        print(json.dumps({"url": node.url, "http": node.http, "admin_secret": ADMIN_SECRET, "node_id": node.node_id}))
        sys.stdout.flush()
        try:
            stop.wait()
        finally:
            node.process.stop()


if __name__ == "__main__":
    main()
