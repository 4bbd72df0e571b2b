"""Typed MICS errors: one exception class per URI of protocol.md sections 2-3, with its numeric code.

`ERRORS` is the one table mapping URI -> class; `from_wamp()` turns any WAMP error, ABORT or GOODBYE
reason into an instance carrying `uri`, `code`, `message` and the error's kwargs.
"""

from __future__ import annotations

from typing import Any


class MicsError(Exception):
    """Any error the router reports. `code` is the MICS code (protocol.md), `kwargs` the error's kwargs."""

    uri: str = "mics.error.unknown"
    code: int = 0
    #: final errors end a client for good: no reconnect after them
    final: bool = False

    def __init__(self, message: str | None = None, *, uri: str | None = None, code: int | None = None,
                 kwargs: dict[str, Any] | None = None) -> None:  # fmt: skip
        if uri is not None:
            self.uri = uri
        if code is not None:
            self.code = code
        self.message = message or ""
        self.kwargs = dict(kwargs or {})
        super().__init__(f"{self.uri} ({self.code}): {self.message}")

    @property
    def client_msg_id(self) -> str | None:
        """For failed sends: the client_msg_id the router echoes."""
        value = self.kwargs.get("client_msg_id")
        return value if isinstance(value, str) else None

    @property
    def reason(self) -> str | None:
        """For failed sends: the reason text (for `Rejected`, the check hook's own reason)."""
        value = self.kwargs.get("reason")
        return value if isinstance(value, str) else None


# -- joining (ABORT reasons) ------------------------------------------------------------------------------
class JoinError(MicsError):
    """The router refused to join the tenant realm."""


class InvalidToken(JoinError):
    uri, code, final = "mics.error.invalid_token", 4001, True


class InvalidTenant(JoinError):
    uri, code, final = "mics.error.invalid_tenant", 4002, True


class ConnectionLimit(JoinError):
    uri, code = "mics.error.connection_limit", 4429


class AuthenticationFailed(JoinError):
    """Crossbar's own refusal (no MICS reason): treated as final, like a bad token."""

    uri, code, final = "wamp.error.authentication_failed", 4001, True


class NoSuchRealm(JoinError):
    uri, code, final = "wamp.error.no_such_realm", 4002, True


# -- calls ------------------------------------------------------------------------------------------------
class SendError(MicsError):
    """A failed call; for sends the kwargs carry status FAILED, reason and client_msg_id."""


class InvalidMessage(SendError):
    uri, code = "mics.error.invalid_message", 400


class PayloadTooLarge(SendError):
    uri, code = "mics.error.payload_too_large", 413


class RateLimited(SendError):
    uri, code = "mics.error.rate_limited", 429


class Rejected(SendError):
    uri, code = "mics.error.rejected", 403


class EmptyGroup(SendError):
    uri, code = "mics.error.empty_group", 404


class NotFound(SendError):
    """A recall or edit names a message that is unknown, recalled, or older than the tenant's recall window."""

    uri, code = "mics.error.not_found", 404


class HookUnavailable(SendError, JoinError):
    """The tenant's hook failed: 4503 when joining (auth hook), 503 on a group send (members hook)."""

    uri, code = "mics.error.hook_unavailable", 503


class Unavailable(SendError):
    """Cluster mode: the node could not reach Redis; retry later with the same client_msg_id."""

    uri, code = "mics.error.unavailable", 503


class Internal(SendError):
    """An unexpected fault in the node; `kwargs["trace_id"]` matches the node's log line."""

    uri, code = "mics.error.internal", 500


class NotAuthorized(SendError):
    uri, code = "wamp.error.not_authorized", 403


# -- sessions the router ends (GOODBYE reasons) -------------------------------------------------------------
class ConnectionClosed(MicsError):
    """The session ended; `on_close` gets the same URI and message."""

    uri, code = "wamp.close.normal", 1000


class Kicked(ConnectionClosed):
    uri, code, final = "mics.close.kicked", 4000, True


class Replaced(ConnectionClosed):
    uri, code, final = "mics.close.replaced", 4009, True


class HeartbeatTimeout(ConnectionClosed):
    uri, code = "mics.close.heartbeat_timeout", 4100


class Shutdown(ConnectionClosed):
    uri, code = "mics.close.shutdown", 1001


class TenantDisabled(ConnectionClosed):
    uri, code, final = "mics.close.tenant_disabled", 4002, True


class SlowConsumer(ConnectionClosed):
    """The client read too slowly (the node's unsent data for it passed its cap); it reconnects and
    syncs what it missed."""

    uri, code = "mics.close.slow_consumer", 4008


# -- local conditions -----------------------------------------------------------------------------------
TRANSPORT_LOST = "wamp.close.transport_lost"  # what a call or subscribe in flight fails with when the connection drops


class NotConnected(MicsError):
    """A call was made while the client is not joined (before connect, while reconnecting, after close)."""

    uri, code = "mics.client.not_connected", 0


class TransportFailed(MicsError):
    """The WebSocket could not be opened or dropped before WELCOME; retried by reconnect."""

    uri, code = "mics.client.transport_failed", 0


#: the one URI -> class table (protocol.md sections 2 and 3)
ERRORS: dict[str, type[MicsError]] = {
    cls.uri: cls
    for cls in (
        InvalidToken, InvalidTenant, ConnectionLimit, HookUnavailable, AuthenticationFailed, NoSuchRealm,
        InvalidMessage, PayloadTooLarge, RateLimited, Rejected, EmptyGroup, NotFound, Unavailable, Internal,
        NotAuthorized,
        Kicked, Replaced, HeartbeatTimeout, Shutdown, TenantDisabled, SlowConsumer,
    )
}  # fmt: skip

#: the join-time code of a URI whose call-time code differs
JOIN_CODES = {HookUnavailable.uri: 4503}

#: close reasons after which the client does not reconnect
FINAL_CLOSE_REASONS = frozenset(uri for uri, cls in ERRORS.items() if cls.final and issubclass(cls, ConnectionClosed))


def from_wamp(uri: str, message: str | None = None, kwargs: dict[str, Any] | None = None,
              joining: bool = False) -> MicsError:  # fmt: skip
    """The typed error for a WAMP error / ABORT / GOODBYE `uri`; unknown URIs give a plain MicsError."""
    kwargs = kwargs or {}
    cls = ERRORS.get(uri, MicsError)
    code = kwargs.get("code")
    if not isinstance(code, int) or isinstance(code, bool):
        code = JOIN_CODES.get(uri, cls.code) if joining else cls.code
    text = kwargs.get("message") if isinstance(kwargs.get("message"), str) else message
    return cls(text, uri=uri, code=code, kwargs=kwargs)


def from_application_error(error: Any, joining: bool = False) -> MicsError:
    """Map autobahn's ApplicationError (URI in `.error`) to the typed error."""
    args = getattr(error, "args", ()) or ()
    message = args[0] if args and isinstance(args[0], str) else None
    return from_wamp(error.error, message, dict(getattr(error, "kwargs", None) or {}), joining)


def code_of(uri: str) -> int:
    """The MICS code for a URI (close reasons and join refusals)."""
    return JOIN_CODES.get(uri, ERRORS[uri].code) if uri in ERRORS else 0
