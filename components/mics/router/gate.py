"""An early gate on one realm's calls: a send the node would refuse anyway is answered before it
costs anything.

When the router worker is saturated, the tenants over their fair share are refused
(`mics.limits.FairShare`). Refused in the send service, each such call still costs the whole call
path: the dealer, the realm's dynamic authorizer (a WAMP call of its own), an INVOCATION of our
procedure, request parsing, the caller's session lookup, and the ERROR back through the dealer. The
gate answers it at the dealer's door instead: for a user's call of a rate-limited procedure it asks
`refuse(session_id, kwargs)` (a non-consuming look at the tenant's cap) and, when that returns an
error, writes the ERROR itself (the same URI, args and kwargs the service would send) and stops
reading the caller's connection for a moment (`hold_back`). Every other call, and every call while
the tenant is within its share, goes to the dealer untouched.

Crossbar 26.10 internals (tests/unit/test_router.py checks them on a real in-process router):
`Router._dealer.processCall` (wrapped: an instance attribute, this realm's router only; it wraps
whatever is there, `mics.router.RealmTap` included), `Router.send`, `RouterSession._authrole`,
`_session_id`, `_transport`. Without them the gate is not installed and the service refuses.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from autobahn.wamp import message
from autobahn.wamp.exception import ApplicationError
from txaio import make_logger

from mics import uris

log = make_logger()

# (caller's session id, the call's keyword arguments or None) -> the error to answer, or None to pass
Refuse = Callable[[int, Mapping[str, Any] | None], ApplicationError | None]
HoldBack = Callable[[Any, float], bool]  # (router session, seconds) -> whether a new hold started

MAX_HOLD_S = 1.0  # the longest one connection is not read: a refused sender is back within a second
MAX_STRUCK = 10_000  # sessions whose hold grows, remembered at once (a bound, not a working size)


class CallGate:
    """Wraps one realm's dealer: users' calls of `procedures` pass `refuse` first."""

    def __init__(self, router: Any, procedures: frozenset[str], refuse: Refuse, hold_s: float,
                 hold_back: HoldBack) -> None:  # fmt: skip
        dealer = router._dealer
        self._send = router.send
        self._next = dealer.processCall
        self.procedures = procedures
        self.refuse = refuse
        self.hold_s = hold_s
        self._hold_back = hold_back
        self._struck: dict[int, int] = {}  # session id -> holds in a row with no call let through since
        self.refused = 0
        dealer.processCall = self._process_call

    def _process_call(self, session: Any, call: Any) -> None:
        if call.procedure in self.procedures and session._authrole == uris.ROLE_USER:
            session_id = session._session_id
            refusal = self.refuse(session_id, call.kwargs)
            if refusal is not None:
                self.refused += 1
                if session._transport:  # the caller may be leaving
                    self._send(session, error_for(call, refusal))
                    self._hold(session, session_id)
                return
            if self._struck:
                self._struck.pop(session_id, None)
        self._next(session, call)

    def _hold(self, session: Any, session_id: int) -> None:
        """Hold the caller's connection back, twice as long each time in a row it is refused (up to
        MAX_HOLD_S): a sender that keeps flooding is read less and less, one that sends within the
        cap again is read as always."""
        struck = self._struck.get(session_id, 0)
        if self._hold_back(session, min(self.hold_s * 2**struck, MAX_HOLD_S)):
            if len(self._struck) >= MAX_STRUCK:
                self._struck.clear()
            self._struck[session_id] = struck + 1


def error_for(call: Any, error: ApplicationError) -> message.Error:
    """The ERROR answering `call` with `error`, as the dealer forwards a callee's ApplicationError."""
    return message.Error(message.Call.MESSAGE_TYPE, call.request, error.error, list(error.args) or None,
                         error.kwargs or None)  # fmt: skip


def make_gate(router: Any, procedures: frozenset[str], refuse: Refuse, hold_s: float,
              hold_back: HoldBack) -> CallGate | None:  # fmt: skip
    """The gate on a Crossbar router that has the internals it uses, else None (the service refuses)."""
    if not all(hasattr(router, name) for name in ("_dealer", "send")) or not hasattr(router._dealer, "processCall"):
        log.warn("router internals not available: fair-share refusals go the whole call path")
        return None
    return CallGate(router, procedures, refuse, hold_s, hold_back)
