/** Base class of every error the SDK raises: the WAMP URI, the MICS code and the router's kwargs. */
export class MicsError extends Error {
  constructor(message?: string, options?: { uri?: string; code?: number; kwargs?: Record<string, unknown>; cause?: unknown });
  readonly uri: string;
  readonly code: number;
  readonly kwargs: Record<string, unknown> & { status?: 'FAILED'; reason?: string; client_msg_id?: string };
  /** True when reconnecting cannot help (bad token, unknown tenant, kicked, replaced, disabled). */
  readonly isFinal: boolean;
}
type MicsErrorClass = { new (message?: string, options?: { code?: number; kwargs?: Record<string, unknown> }): MicsError; readonly uri: string; readonly code: number };
type Typed<U extends string, C extends number> = MicsErrorClass & { readonly uri: U; readonly code: C };

/** `mics.error.invalid_token` (4001): the auth hook refused the token, or no ticket/device id. */
export const InvalidTokenError: Typed<'mics.error.invalid_token', 4001>;
/** `mics.error.invalid_tenant` (4002): unknown or disabled tenant. */
export const InvalidTenantError: Typed<'mics.error.invalid_tenant', 4002>;
/** `mics.error.connection_limit` (4429): tenant or per-user connection limit reached. */
export const ConnectionLimitError: Typed<'mics.error.connection_limit', 4429>;
/** `mics.error.hook_unavailable`: 4503 when joining (auth hook), 503 on a group send (members hook). */
export const HookUnavailableError: Typed<'mics.error.hook_unavailable', 503>;
/** `mics.close.heartbeat_timeout` (4100): the session was silent for heartbeat_timeout_s. */
export const HeartbeatTimeoutError: Typed<'mics.close.heartbeat_timeout', 4100>;
/** `mics.close.kicked` (4000): by an admin or the tenant backend. Final. */
export const KickedError: Typed<'mics.close.kicked', 4000>;
/** `mics.close.replaced` (4009): the same user+device connected again. Final. */
export const ReplacedError: Typed<'mics.close.replaced', 4009>;
/** `mics.close.shutdown` (1001): the node is draining; the client reconnects. */
export const ShutdownError: Typed<'mics.close.shutdown', 1001>;
/** `mics.close.tenant_disabled` (4002). Final. */
export const TenantDisabledError: Typed<'mics.close.tenant_disabled', 4002>;
/** `mics.close.slow_consumer` (4008): the client read too slowly; it reconnects and syncs. */
export const SlowConsumerError: Typed<'mics.close.slow_consumer', 4008>;
/** `mics.error.invalid_message` (400): missing/invalid recipient, group, body or since_seq. */
export const InvalidMessageError: Typed<'mics.error.invalid_message', 400>;
/** `mics.error.payload_too_large` (413): body over max_payload_bytes. */
export const PayloadTooLargeError: Typed<'mics.error.payload_too_large', 413>;
/** `mics.error.rate_limited` (429): tenant message QPS exceeded. */
export const RateLimitedError: Typed<'mics.error.rate_limited', 429>;
/** `mics.error.rejected` (403): the check-message hook said no; `kwargs.reason` says why. */
export const RejectedError: Typed<'mics.error.rejected', 403>;
/** `mics.error.empty_group` (404): the group-members hook returned no members. */
export const EmptyGroupError: Typed<'mics.error.empty_group', 404>;
/** Cluster mode: the node could not reach Redis; retry later with the same client_msg_id. */
export const UnavailableError: Typed<'mics.error.unavailable', 503>;
/** `mics.error.internal` (500): an unexpected fault; `kwargs.trace_id` matches the node's log line. */
export const InternalError: Typed<'mics.error.internal', 500>;
/** `wamp.error.not_authorized` (403): the role may not do this. */
export const NotAuthorizedError: Typed<'wamp.error.not_authorized', 403>;
/** The WebSocket could not be opened (`mics.client.unreachable`) or was lost (`mics.client.lost`). */
export const ConnectionLostError: MicsErrorClass;
/** A call while not connected (`mics.client.not_connected`). */
export const NotConnectedError: MicsErrorClass;

export const ERROR_CLASSES: MicsErrorClass[];
export const FINAL_URIS: Set<string>;
export function errorForUri(uri: string, message?: string, kwargs?: Record<string, unknown>, options?: { join?: boolean }): MicsError;
export function fromWampError(err: unknown): MicsError;
