"""What one incoming frame costs the router: the decode alone (in process), then the whole frame
through a real node (router worker CPU per frame), with and without mics.router.speedups (C JSON path).

    .venv/bin/python -m bench.frames            # ~2 minutes; prints two tables
    .venv/bin/python -m bench.frames --quick    # fewer repetitions

A frame is a `mics.message.send` CALL from a user of the demo tenant. Bodies over the tenant's
`max_payload_bytes` (64 KiB) are refused after the decode, which is what an attacker's frame costs;
a 60 KiB body is the largest message a default tenant takes.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

# isort: off
from bench.common import ROOT, cpu_seconds  # first: puts tests/ on sys.path
from harness import Node, start_node
from raw_ws import RawWebSocket

# isort: on


def _frame_limit() -> int:
    """The WebSocket transport's max_message_size in the router config: the largest frame taken."""
    config = json.loads((ROOT / "router/.crossbar/config.json").read_text())
    transport = config["workers"][0]["transports"][0]
    return int(transport["paths"]["ws"]["options"]["max_message_size"])


FRAME_LIMIT = _frame_limit()


def _fill(make: Callable[[int], Any], size: int, envelope: Callable[[Any], bytes]) -> Any:
    """The largest `make(n)` whose encoded frame stays under `size` bytes."""
    low, high = 1, 2
    while len(envelope(make(high))) < size:
        low, high = high, high * 2
    while high - low > 1:
        middle = (low + high) // 2
        if len(envelope(make(middle))) < size:
            low = middle
        else:
            high = middle
    return make(low)


def _call(body: Any) -> list[Any]:
    return [48, 7, {}, "mics.message.send", [], {"to_user_id": "bob", "body": body}]


def _json(message: Any) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


def _msgpack(message: Any) -> bytes:
    import msgpack

    return bytes(msgpack.packb(message))


SHAPES: dict[str, Callable[[int], Any]] = {
    "small objects": lambda n: [{"a": i, "b": "text"} for i in range(n)],
    "text": lambda n: "x" * n,
    "empty lists (worst case)": lambda n: [[] for _ in range(n)],
}


def frames() -> list[tuple[str, str, bytes]]:
    """(name, serializer, frame bytes)."""
    out = [("CALL, 20 B body", "json", _json(_call({"text": "hello there"})))]
    limit = f"{FRAME_LIMIT // 1024} KiB"
    for size, label in ((60 * 1024, "60 KiB"), (FRAME_LIMIT - 64, limit)):
        for shape, make in SHAPES.items():
            if label == "60 KiB" and shape.startswith("empty"):
                continue
            out.append((f"{label} {shape}", "json", _json(_call(_fill(make, size, lambda b: _json(_call(b)))))))
    for shape in ("small objects", "empty lists (worst case)"):
        body = _fill(SHAPES[shape], FRAME_LIMIT - 64, lambda b: _msgpack(_call(b)))
        out.append((f"{limit} {shape}", "msgpack", _msgpack(_call(body))))
    return out


def decode_table(repeat_s: float) -> list[dict[str, Any]]:
    """Autobahn's decoder against ours, in this process."""
    import txaio

    txaio.use_twisted()
    from autobahn.wamp.serializer import MsgPackObjectSerializer

    from mics.router import speedups

    speedups.decode_json_at_c_speed()
    from autobahn.wamp import serializer

    fast, original = serializer._loads, serializer._loads.original
    msgpack_decode = MsgPackObjectSerializer().unserialize

    def per_call(fn: Callable[[], Any]) -> float:
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < repeat_s or n < 3:
            fn()
            n += 1
        return (time.perf_counter() - started) / n * 1000

    rows = []
    for name, kind, data in frames():
        if kind == "json":
            text = data.decode()
            row = {"frame": name, "serializer": kind, "bytes": len(data),
                   "autobahn_ms": per_call(lambda t=text: original(t)),
                   "mics_ms": per_call(lambda t=text: fast(t))}  # fmt: skip
        else:
            cost = per_call(lambda d=data: msgpack_decode(d))
            row = {"frame": name, "serializer": kind, "bytes": len(data), "autobahn_ms": cost, "mics_ms": cost}
        rows.append(row)
    return rows


def _worker(node: Node) -> psutil.Process:
    children = psutil.Process(node.process.proc.pid).children(recursive=True)
    return max(children, key=lambda c: c.memory_info().rss)


def _connect(node: Node, serializer: str) -> RawWebSocket:
    ws = RawWebSocket(node.port, timeout=30)
    assert ws.handshake(f"wamp.2.{serializer}") == 101
    if serializer == "json":
        welcome = ws.join("demo", ticket="demo-alice")
    else:
        import msgpack

        ws.send_frame(_msgpack([1, "demo", {"roles": {"caller": {}}, "authmethods": ["ticket"],
                                           "authextra": {"device_id": "bench"}}]), opcode=2)  # fmt: skip
        challenge = msgpack.unpackb(ws.recv_frame()[1])
        assert challenge[0] == 4, challenge
        ws.send_frame(_msgpack([5, "demo-alice", {}]), opcode=2)
        welcome = msgpack.unpackb(ws.recv_frame()[1])
    assert welcome[0] == 2, welcome
    return ws


def node_table(tmp: Path, repeat: int) -> list[dict[str, Any]]:
    """Router worker CPU per frame, speedups on and off."""
    rows = {(name, kind): {"frame": name, "serializer": kind, "bytes": len(data)} for name, kind, data in frames()}
    for label, node_settings in (("speedups_on_ms", {}), ("speedups_off_ms", {"speedups": False})):
        node = start_node(tmp, f"frames-{len(node_settings)}", node=node_settings)
        try:
            worker = _worker(node)
            sockets = {kind: _connect(node, kind) for kind in ("json", "msgpack")}
            for name, kind, data in frames():
                times = min(1000, max(repeat, repeat * 200_000 // len(data)))  # CPU time ticks are 10 ms
                before = cpu_seconds(worker)
                try:
                    for _ in range(times):
                        sockets[kind].send_frame(data, opcode=1 if kind == "json" else 2)
                        sockets[kind].recv_frame(timeout=60)  # the RESULT or ERROR: the frame is done with
                except OSError:  # a router busy for seconds misses its own ping deadline and drops us
                    sockets[kind] = _connect(node, kind)
                    print(f"({label}: {name} {kind}: the router dropped the connection after a few frames)")
                    continue
                rows[(name, kind)][label] = (cpu_seconds(worker) - before) / times * 1000
            for ws in sockets.values():
                ws.close()
        finally:
            node.process.stop()
    return list(rows.values())


def _print(title: str, rows: list[dict[str, Any]], columns: list[str]) -> None:
    print(f"\n{title}")
    print(f"{'frame':34s} {'ser':8s} {'bytes':>9s} " + " ".join(f"{c:>16s}" for c in columns))
    for row in rows:
        values = " ".join(f"{row.get(c, float('nan')):16.3f}" for c in columns)
        print(f"{row['frame']:34s} {row['serializer']:8s} {row['bytes']:9d} {values}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.frames")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args(argv)
    _print("decode only, ms per frame (in process)", decode_table(0.2 if args.quick else 1.0),
           ["autobahn_ms", "mics_ms"])  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        _print("router worker CPU, ms per frame (a real node; refused bodies included)",
               node_table(Path(tmp), 3 if args.quick else 10), ["speedups_off_ms", "speedups_on_ms"])  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
