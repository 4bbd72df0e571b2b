// Typed MICS errors: one class per URI of the wire contract (protocol.md sections 2-3).
// Every error carries `uri` (the WAMP error or ABORT/GOODBYE reason), `code` (the MICS code)
// and `kwargs` (what the router sent, e.g. status/reason/client_msg_id of a failed send).

/** Base class of every error the SDK raises. */
export class MicsError extends Error {
  constructor(message, { uri = 'mics.error.unknown', code = 0, kwargs = {}, cause } = {}) {
    super(message || uri, cause ? { cause } : undefined);
    this.name = new.target.name;
    this.uri = uri;
    this.code = code;
    this.kwargs = kwargs;
  }

  /** Final errors stop automatic reconnects: retrying cannot fix them. */
  get isFinal() {
    return FINAL_URIS.has(this.uri);
  }
}

function define(name, uri, code) {
  const cls = {
    [name]: class extends MicsError {
      constructor(message, opts = {}) {
        super(message, { uri, code, ...opts });
      }
    },
  }[name];
  cls.uri = uri;
  cls.code = code;
  return cls;
}

// -- joining a tenant realm (ABORT reasons, section 2)
export const InvalidTokenError = define('InvalidTokenError', 'mics.error.invalid_token', 4001);
export const InvalidTenantError = define('InvalidTenantError', 'mics.error.invalid_tenant', 4002);
export const ConnectionLimitError = define('ConnectionLimitError', 'mics.error.connection_limit', 4429);
/** 4503 when the auth hook fails during a join, 503 when the group-members hook fails a send. */
export const HookUnavailableError = define('HookUnavailableError', 'mics.error.hook_unavailable', 503);

// -- sessions the router ends (GOODBYE reasons, section 2)
export const HeartbeatTimeoutError = define('HeartbeatTimeoutError', 'mics.close.heartbeat_timeout', 4100);
export const KickedError = define('KickedError', 'mics.close.kicked', 4000);
export const ReplacedError = define('ReplacedError', 'mics.close.replaced', 4009);
export const ShutdownError = define('ShutdownError', 'mics.close.shutdown', 1001);
export const TenantDisabledError = define('TenantDisabledError', 'mics.close.tenant_disabled', 4002);
/** The client read too slowly (unsent data passed the node's cap); it reconnects and syncs. */
export const SlowConsumerError = define('SlowConsumerError', 'mics.close.slow_consumer', 4008);

// -- call errors (section 3)
export const InvalidMessageError = define('InvalidMessageError', 'mics.error.invalid_message', 400);
export const PayloadTooLargeError = define('PayloadTooLargeError', 'mics.error.payload_too_large', 413);
export const RateLimitedError = define('RateLimitedError', 'mics.error.rate_limited', 429);
export const RejectedError = define('RejectedError', 'mics.error.rejected', 403);
export const EmptyGroupError = define('EmptyGroupError', 'mics.error.empty_group', 404);
/** Cluster mode: the node could not reach Redis; retry later with the same client_msg_id. */
export const UnavailableError = define('UnavailableError', 'mics.error.unavailable', 503);
/** An unexpected fault in the node; `kwargs.trace_id` matches the node's log line. */
export const InternalError = define('InternalError', 'mics.error.internal', 500);
export const NotAuthorizedError = define('NotAuthorizedError', 'wamp.error.not_authorized', 403);

// -- client-side conditions (no router URI)
/** The WebSocket could not be opened or was lost; `uri` is `mics.client.unreachable` or `mics.client.lost`. */
export const ConnectionLostError = define('ConnectionLostError', 'mics.client.lost', 0);
/** A call was made while the client was not connected (it may be reconnecting). */
export const NotConnectedError = define('NotConnectedError', 'mics.client.not_connected', 0);

export const ERROR_CLASSES = [
  InvalidTokenError, InvalidTenantError, ConnectionLimitError, HookUnavailableError,
  HeartbeatTimeoutError, KickedError, ReplacedError, ShutdownError, TenantDisabledError, SlowConsumerError,
  InvalidMessageError, PayloadTooLargeError, RateLimitedError, RejectedError, EmptyGroupError, UnavailableError,
  InternalError, NotAuthorizedError,
];
const BY_URI = new Map(ERROR_CLASSES.map((cls) => [cls.uri, cls]));

/** Reasons after which reconnecting cannot help (the same token/device/tenant would fail again). */
export const FINAL_URIS = new Set([
  'mics.error.invalid_token', 'mics.error.invalid_tenant', 'mics.close.kicked', 'mics.close.replaced',
  'mics.close.tenant_disabled', 'wamp.error.not_authorized', 'wamp.error.authentication_failed',
  'wamp.error.no_such_realm', 'wamp.error.cannot_authenticate', 'wamp.close.normal',
]);

/** The typed error for a URI (unknown URIs give a plain MicsError that keeps the URI). */
export function errorForUri(uri, message, kwargs = {}, { join = false } = {}) {
  const cls = BY_URI.get(uri);
  let code = typeof kwargs.code === 'number' ? kwargs.code : cls ? cls.code : 0;
  if (join && uri === HookUnavailableError.uri && typeof kwargs.code !== 'number') code = 4503;
  const text = (typeof kwargs.message === 'string' && kwargs.message) || message || uri;
  return cls ? new cls(text, { code, kwargs }) : new MicsError(text, { uri, code, kwargs });
}

/** Turn an autobahn call error (`{error, args, kwargs}`) into a typed MICS error. */
export function fromWampError(err) {
  if (err instanceof MicsError) return err;
  if (err && typeof err.error === 'string') {
    const args = Array.isArray(err.args) ? err.args : [];
    const message = typeof args[0] === 'string' ? args[0] : undefined;
    return errorForUri(err.error, message, err.kwargs || {});
  }
  if (typeof err === 'string' && err.includes('not open')) return new NotConnectedError(err);
  return new MicsError(String(err && err.message ? err.message : err), { cause: err });
}
