"""Agents a tenant backend serves over WAMP: `mics.agent.<agent_id>` with progressive call results.

The node calls as its realm component (no network hop on the node's side). The backend answers with
progressive results `{"delta": ...}` and a final result `{"body", "content_type"?}` (as keyword
arguments, or as one positional dict). Cancelling the call sends CANCEL; the router then
interrupts the backend's invocation.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallOptions, CallResult

from mics import uris
from mics.agents import ERROR, UNAVAILABLE, AgentError, AgentTransport
from mics.hooks.wamp import Caller
from mics.router import NoRealmSession

CALL_TIMEOUT_SLACK_MS = 2000


class WampAgent(AgentTransport):
    def __init__(self, agent_id: str, port: Caller) -> None:
        self._procedure = uris.agent_procedure(agent_id)
        self._port = port

    async def call(self, request: dict[str, Any], on_progress: Callable[[Any], None], timeout_s: float) -> Any:
        def progress(*args: Any, **kwargs: Any) -> None:
            on_progress(_one_object(args, kwargs))

        # the call's own timeout, a little past the guard's (which ends it first, as a timeout): served
        # on another node, the relay then allows the whole answer's time, not only its idle limit
        options = CallOptions(on_progress=progress, timeout=int(timeout_s * 1000) + CALL_TIMEOUT_SLACK_MS)
        try:
            result = await self._port.call(self._procedure, options=options, **request)
        except NoRealmSession:
            raise AgentError(UNAVAILABLE, "the tenant realm is not ready") from None
        except ApplicationError as e:
            if e.error == ApplicationError.NO_SUCH_PROCEDURE:
                raise AgentError(UNAVAILABLE, "no backend serves this agent") from None
            raise AgentError(ERROR, f"the agent failed ({e.error})") from None
        if isinstance(result, CallResult):
            return _one_object(result.results, result.kwresults)
        return result


def _one_object(args: Any, kwargs: Any) -> Any:
    """A result's payload as one object: its keyword arguments, or its only positional argument."""
    if kwargs:
        return kwargs
    if args and len(args) == 1:
        return args[0]
    return list(args or ())
