"""Measured fixes for costs in the libraries under the message path (see docs/performance.md).

1. Crossbar and Autobahn build debug-log arguments eagerly on every message, even when debug
   logging is off: `pformat()` of authorization dicts, `hltype()`/`hlval()` colouring through
   click. Profiling the router worker under load put that at ~15-20% of its CPU. When the log
   level is above debug we rebind those helpers, in the router's hot-path modules, to cheap
   pass-throughs; a line that is still emitted shows the raw value instead of a pretty one.
2. The worker holds many long-lived objects (sessions, subscriptions, realms); collecting them
   over and over is what stalls the reactor for tens of milliseconds (the p99). After start-up we
   freeze what exists into the permanent generation and collect the youngest generation less often.
3. Autobahn's JSON serializer decodes every frame with the pure-Python scanner (it plugs its own
   string parser into `json.JSONDecoder` for the "\\x00" + base64 binary convention, which turns
   the C scanner off): ~275 ms for a 1.3 MB frame of small objects, ~0.02 ms for a 90-byte CALL.
   We decode with C `json.loads` instead, then turn only the strings that start with "\\x00" into
   bytes, as Autobahn does; a frame without a `\\u0000` escape has no such string, so the C result is
   already exact (a raw NUL cannot appear in JSON text). ~25 ms and ~0.002 ms (bench/frames.py).
"""

from __future__ import annotations

import base64
import gc
import json
import sys
import time
from typing import Any

import txaio
from txaio import make_logger

log = make_logger()

# modules whose per-message code formats debug arguments
_PREFIXES = ("crossbar.router.", "crossbar.worker.", "crossbar.webservice.", "autobahn.wamp.", "autobahn.websocket.",
             "autobahn.twisted.")  # fmt: skip
_HELPERS = ("pformat", "hl", "hltype", "hlid", "hlval", "hlflag")
GC_THRESHOLDS = (2000, 10, 100)


def _pass_through(value: Any, *args: Any, **kwargs: Any) -> Any:
    return value


def _originals() -> dict[int, str]:
    """id() of each original helper function -> its name."""
    import pprint

    import autobahn.util
    import crossbar._util

    found = {id(pprint.pformat): "pformat"}
    for module in (autobahn.util, crossbar._util):
        for name in _HELPERS:
            fn = getattr(module, name, None)
            if fn is not None:
                found[id(fn)] = name
    return found


def skip_debug_formatting() -> int:
    """Rebind the helpers in hot-path modules; returns how many bindings changed."""
    if txaio.get_global_log_level() in ("debug", "trace"):
        return 0
    originals = _originals()
    changed = 0
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith(_PREFIXES):
            continue
        for attr in _HELPERS:
            if id(getattr(module, attr, None)) in originals:
                setattr(module, attr, _pass_through)
                changed += 1
    return changed


_BINARY_ESCAPE = "\\u0000"  # how a "\x00" can appear in JSON text: only escaped


def _binary_strings_to_bytes(value: Any) -> Any:
    """Autobahn's binary convention on a decoded JSON value: every string (not object key) that
    starts with "\x00" is the base64 of bytes. Iterative, so nesting costs no recursion."""
    if isinstance(value, str):
        return base64.b64decode(value[1:]) if value[:1] == "\x00" else value
    stack = [value]
    while stack:
        container = stack.pop()
        items = enumerate(container) if isinstance(container, list) else container.items()
        for key, item in items:
            if isinstance(item, str):
                if item[:1] == "\x00":
                    container[key] = base64.b64decode(item[1:])
            elif isinstance(item, list | dict):
                stack.append(item)
    return value


def decode_json_at_c_speed() -> bool:
    """Rebind Autobahn's JSON decoder to the C path (see the module doc); False if already done."""
    from autobahn.wamp import serializer

    original = serializer._loads
    if getattr(original, "_mics", False):
        return False

    def loads(s: str, use_binary_hex_encoding: bool = False, use_decimal_from_str: bool = False,
              use_decimal_from_float: bool = False) -> Any:  # fmt: skip
        if use_binary_hex_encoding or use_decimal_from_str or use_decimal_from_float:  # not on the wire
            return original(s, use_binary_hex_encoding, use_decimal_from_str, use_decimal_from_float)
        value = json.loads(s)
        if _BINARY_ESCAPE in s:
            value = _binary_strings_to_bytes(value)
        return value

    loads._mics = True  # type: ignore[attr-defined]
    loads.original = original  # type: ignore[attr-defined]
    serializer._loads = loads
    return True


def tune_gc() -> None:
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


class GcPauseObserver:
    """Times every collection into mics_gc_pause_seconds; logs the long ones."""

    SLOW_S = 0.02

    def __init__(self) -> None:
        from mics import metrics

        self._started = 0.0
        self._children = [metrics.GC_PAUSE.labels(str(g)) for g in range(3)]

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        pause = time.perf_counter() - self._started
        generation = info.get("generation", 0)
        self._children[generation].observe(pause)
        if pause > self.SLOW_S:
            log.info(
                "slow gc pause: generation={generation} pause_ms={pause_ms} collected={collected}",
                generation=generation,
                pause_ms=round(pause * 1000, 1),
                collected=info.get("collected"),
            )


def observe_gc() -> None:
    if not any(isinstance(cb, GcPauseObserver) for cb in gc.callbacks):
        gc.callbacks.append(GcPauseObserver())


def apply() -> None:
    changed = skip_debug_formatting()
    decode_json_at_c_speed()
    tune_gc()
    observe_gc()
    log.info("speedups applied: debug formatting skipped in {changed} places, JSON decoded in C, gc frozen",
             changed=changed)  # fmt: skip
