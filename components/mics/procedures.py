"""How MICS exposes a WAMP procedure: keyword arguments parsed into a typed request, errors mapped
to the contract, the time taken observed.

Every `mics.*` procedure a router-embedded MICS component registers goes through `expose`:

- positional arguments and invalid keyword arguments answer `mics.error.invalid_message`
  (mics.requests);
- a `MicsError` (every contract error) reaches the caller as is, and is not logged as a traceback;
- an error of the shared store that means "unreachable" answers `mics.error.unavailable` (retry
  with the same client_msg_id);
- anything else is a bug: `mics.error.internal` with a `trace_id` that the node's log line, which
  carries the traceback, also has. No Python text ever reaches the caller.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from inspect import isawaitable
from typing import Any, Protocol

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from txaio import make_logger

from mics import errors, metrics
from mics.errors import MicsError, SendFailed
from mics.requests import client_msg_id_of

log = make_logger()


class Parser(Protocol):
    """A request type's `parse(args, kwargs)` (mics.requests)."""

    def __call__(self, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any: ...


Handler = Callable[[Any, Any], Any]  # (request, call details) -> result or awaitable result


def expose(
    procedure: str,
    parse: Parser,
    handler: Handler,
    tenant_id: str,
    transient: tuple[type[BaseException], ...] = (),
) -> Callable[..., Any]:
    """The function to register for `procedure` (with `RegisterOptions(details_arg="details")`)."""
    timer: Any = None  # bound at the first call: an idle tenant exports no buckets for it
    unavailable = metrics.SEND_FAILURES.labels(tenant_id, "unavailable")

    async def call(*args: Any, details: Any = None, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            result = handler(parse(args, kwargs), details)
            return (await result) if isawaitable(result) else result
        except MicsError:
            raise
        except transient as e:
            unavailable.inc()
            metrics.REDIS_FAILURES.labels("call").inc()
            log.warn("shared state unreachable: procedure={procedure} error={error}", procedure=procedure,
                     error=str(e), tenant_id=tenant_id)  # fmt: skip
            raise SendFailed(
                errors.UNAVAILABLE, "the cluster state is unreachable, retry", client_msg_id_of(kwargs)
            ) from None
        except Exception:
            trace_id = os.urandom(8).hex()
            log.failure("internal error: procedure={procedure} trace_id={trace_id}", procedure=procedure,
                        trace_id=trace_id, tenant_id=tenant_id)  # fmt: skip
            raise MicsError(errors.INTERNAL, "internal error", trace_id=trace_id) from None
        finally:
            nonlocal timer
            if timer is None:
                timer = metrics.PROCEDURE_SECONDS.labels(tenant_id, procedure)
            timer.observe(time.perf_counter() - started)

    call.__name__ = procedure
    return call


class MicsSession(ApplicationSession):
    """A router-embedded MICS component: contract errors are answers, not tracebacks in the log."""

    def onUserError(self, fail: Any, msg: str) -> None:
        error = fail.value
        if isinstance(error, ApplicationError) and error.error.startswith("mics."):
            return  # a documented answer (invalid_message, rate_limited, a hook's invalid_token, ...)
        super().onUserError(fail, msg)
