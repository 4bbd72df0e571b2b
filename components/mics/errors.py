"""Every MICS error and close reason: URI, numeric code and the exception that carries it.

This table is the contract (protocol.md sections 2-3); URIs and codes are spelled nowhere else.
Client-facing messages are safe to show; details belong in logs, never in the error.
"""

from __future__ import annotations

from dataclasses import dataclass

from autobahn.wamp.exception import ApplicationError


@dataclass(frozen=True, slots=True)
class Reason:
    """One URI with its MICS code and a one-line meaning (used to generate docs)."""

    uri: str
    code: int
    meaning: str


# -- ABORT reasons when joining a tenant realm -------------------------------------------------
INVALID_TOKEN = Reason("mics.error.invalid_token", 4001, "the auth hook says the token is bad, or no ticket/device_id")
INVALID_TENANT = Reason("mics.error.invalid_tenant", 4002, "unknown or disabled tenant")
CONNECTION_LIMIT = Reason("mics.error.connection_limit", 4429, "tenant or per-user connection limit reached")
HOOK_UNAVAILABLE_JOIN = Reason(
    "mics.error.hook_unavailable", 4503, "auth hook timed out, failed, or its breaker is open"
)

# -- GOODBYE reasons for sessions the router ends ------------------------------------------------
CLOSE_HEARTBEAT_TIMEOUT = Reason("mics.close.heartbeat_timeout", 4100, "no WAMP traffic for heartbeat_timeout_s")
CLOSE_KICKED = Reason("mics.close.kicked", 4000, "kicked by an admin or the tenant backend")
CLOSE_REPLACED = Reason("mics.close.replaced", 4009, "the same user+device connected again")
CLOSE_SHUTDOWN = Reason("mics.close.shutdown", 1001, "the node is draining")
CLOSE_TENANT_DISABLED = Reason("mics.close.tenant_disabled", 4002, "the tenant was disabled")
CLOSE_SLOW_CONSUMER = Reason(
    "mics.close.slow_consumer", 4008,
    "the connection's unsent outgoing data passed the node's cap (`max_unsent_bytes`); the messages stay held for sync",
)  # fmt: skip

# -- call errors (sends and other procedures) ----------------------------------------------------
INVALID_MESSAGE = Reason("mics.error.invalid_message", 400, "missing or invalid argument")
PAYLOAD_TOO_LARGE = Reason("mics.error.payload_too_large", 413, "encoded body over max_payload_bytes")
RATE_LIMITED = Reason(
    "mics.error.rate_limited", 429, "the tenant's message QPS or the user's max_user_message_qps exceeded"
)
REJECTED = Reason(
    "mics.error.rejected",
    403,
    "the check-message hook rejected the message; or a recall/edit of another user's message, or with"
    " recall_window_s 0; or a group signal from a non-member",
)
EMPTY_GROUP = Reason("mics.error.empty_group", 404, "the group-members hook returned no members")
HOOK_UNAVAILABLE = Reason("mics.error.hook_unavailable", 503, "the group-members hook failed")
UNAVAILABLE = Reason(
    "mics.error.unavailable",
    503,
    "cluster mode: Redis, or the node serving a forwarded call, is unreachable; "
    "retry later with the same client_msg_id",
)
INTERNAL = Reason(
    "mics.error.internal", 500, "an unexpected fault; kwargs carry a trace_id that the node's log line also has"
)
INVALID_CONFIG = Reason("mics.error.invalid_config", 400, "a tenant config value is invalid")
NOT_FOUND = Reason(
    "mics.error.not_found",
    404,
    "what the call names does not exist: a tenant (admin), an action (backend HTTP API), or a message to"
    " recall or edit (unknown, recalled, or older than recall_window_s)",
)
BAD_SIGNATURE = Reason(
    "mics.error.bad_signature", 401, "backend HTTP API: signature missing or wrong, stale timestamp, replayed nonce"
)
NOT_AUTHORIZED = Reason("wamp.error.not_authorized", 403, "the role may not do this")

JOIN_REASONS = (INVALID_TOKEN, INVALID_TENANT, CONNECTION_LIMIT, HOOK_UNAVAILABLE_JOIN)
CLOSE_REASONS = (CLOSE_HEARTBEAT_TIMEOUT, CLOSE_KICKED, CLOSE_REPLACED, CLOSE_SHUTDOWN, CLOSE_TENANT_DISABLED,
                 CLOSE_SLOW_CONSUMER)  # fmt: skip
CALL_REASONS = (
    INVALID_MESSAGE, PAYLOAD_TOO_LARGE, RATE_LIMITED, REJECTED, EMPTY_GROUP, NOT_FOUND, HOOK_UNAVAILABLE, UNAVAILABLE,
    INTERNAL,
)  # fmt: skip


class MicsError(ApplicationError):
    """A WAMP error whose URI is a MICS reason; kwargs carry `code` and `message` (and extras)."""

    def __init__(self, what: Reason, message: str, **kwargs: object) -> None:
        super().__init__(what.uri, message, code=what.code, message=message, **kwargs)
        self.what = what


class SendFailed(MicsError):
    """A failed send: kwargs also carry status FAILED, the reason text and client_msg_id."""

    def __init__(self, what: Reason, message: str, client_msg_id: str | None = None) -> None:
        extra: dict[str, object] = {"status": "FAILED", "reason": message}
        if client_msg_id is not None:
            extra["client_msg_id"] = client_msg_id
        super().__init__(what, message, **extra)


class JoinDenied(ApplicationError):
    """Raised by the authenticator: Crossbar turns it into ABORT(reason URI, message)."""

    def __init__(self, what: Reason, message: str) -> None:
        super().__init__(what.uri, message)
        self.what = what


class ConfigError(ValueError):
    """A config value is invalid; names the tenant (if any) and the field."""

    def __init__(self, field: str, message: str, tenant_id: str | None = None) -> None:
        where = f"tenants.{tenant_id}.{field}" if tenant_id else field
        super().__init__(f"{where}: {message}")
        self.tenant_id = tenant_id
        self.field = field

    def to_wamp(self) -> MicsError:
        return MicsError(INVALID_CONFIG, str(self), tenant_id=self.tenant_id, field=self.field)
