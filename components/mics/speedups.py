"""Measured fixes for costs in the libraries under the message path (see docs/performance.md).

1. Crossbar and Autobahn build debug-log arguments eagerly on every message, even when debug
   logging is off: `pformat()` of authorization dicts, `hltype()`/`hlval()` colouring through
   click. Profiling the router worker under load put that at ~15-20% of its CPU. When the log
   level is above debug we rebind those helpers, in the router's hot-path modules, to cheap
   pass-throughs; a line that is still emitted shows the raw value instead of a pretty one.
2. The worker holds many long-lived objects (sessions, subscriptions, realms); collecting them
   over and over is what stalls the reactor for tens of milliseconds (the p99). After start-up we
   freeze what exists into the permanent generation and collect the youngest generation less often.
"""

from __future__ import annotations

import gc
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
    tune_gc()
    observe_gc()
    log.info("speedups applied: debug formatting skipped in {changed} places, gc frozen", changed=changed)
