"""`python -m mics.router.run start ...`: Crossbar's own command, with each log line naming its
level (`[Router 123 warn] ...`, `[Router 123 error] ...`).

Crossbar prints what its workers log without the level (info and debug on stdout, warnings and
errors alike on stderr), so an operator cannot tell an error from a warning, and `mics.logs`
(MICS_LOG_FORMAT=json) could only guess. The node's controller process prints every line (workers
send theirs to it with their level), so wrapping its two console observers is enough.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

Observer = Callable[[dict[str, Any]], None]


def with_level(make_observer: Callable[..., Observer]) -> Callable[..., Observer]:
    """A factory like Crossbar's whose observers put the event's level after its system."""

    def make(*args: Any, **kwargs: Any) -> Observer:
        observer = make_observer(*args, **kwargs)

        def observe(event: dict[str, Any]) -> None:
            system = event.get("log_system", "-")
            if system == "-":  # the controller's own lines, as Crossbar names them
                system = "{:<10} {:>6}".format("Controller", os.getpid())
            level = event.get("log_level")
            observer({**event, "log_system": f"{system} {getattr(level, 'name', 'info')}"})

        return observe

    return make


def main() -> Any:
    from crossbar.node import main as node_main

    node_main.make_stdout_observer = with_level(node_main.make_stdout_observer)
    node_main.make_stderr_observer = with_level(node_main.make_stderr_observer)
    from crossbar import run

    return run()


if __name__ == "__main__":
    sys.argv[0] = "crossbar"
    sys.exit(main())
