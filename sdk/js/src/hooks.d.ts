// Types for mics-sdk/hooks: the tenant backend side (Node only).
import type { IncomingMessage, ServerResponse, Server } from 'node:http';
import { MicsError } from './errors.js';
import type { Message, Ack, Json } from './index.js';

export interface AuthInput { token: string; device_id: string; tenant_id: string }
export interface AuthReply { user_id: string; device_id?: string; config?: Record<string, unknown> }
export interface CheckReply { allow: boolean; reason?: string }
/** A batched check (tenant config hook_batch_max > 1): the messages, and how long the router waits (ms). */
export interface CheckMessagesInput { messages: Message[]; timeout_ms?: number }
/** One verdict per message, in order; null = no verdict (the router lets that message through). */
export interface CheckMessagesReply { verdicts: (CheckReply | null)[] }
export interface MembersInput { group_id: string; from_user_id: string; tenant_id: string }
export interface MembersReply { members: string[] }
type Maybe<T> = T | Promise<T>;

/**
 * Hook handlers. The second argument: HTTP hooks get `{tenantId, encoding}` (`encoding` is the
 * request's: `json` or `protobuf`; a protobuf check-message body is a Buffer when the message carried
 * bytes); WAMP hooks get `{caller, callerAuthid}`.
 */
export interface Hooks {
  /** throw HookRejection to refuse the token */
  auth?: (input: AuthInput, context: any) => Maybe<AuthReply>;
  checkMessage?: (message: Message, context: any) => Maybe<CheckReply>;
  /** batched checks; without it, batches are answered through `checkMessage` (`checkEach`) */
  checkMessages?: (input: CheckMessagesInput, context: any) => Maybe<CheckMessagesReply>;
  groupMembers?: (input: MembersInput, context: any) => Maybe<MembersReply>;
}

/** What an agent function gets (protocol.md section 12). */
export interface AgentRequest {
  agentId: string;
  tenantId: string;
  streamId: string;
  /** the message that called the agent */
  message: Message;
  /** up to the agent's `context_messages` held messages of that conversation, oldest first */
  context: Message[];
  /** the message's text: a string body, or an object body's `text` */
  text: string;
}
/** The final answer when it is not the pieces joined: yield it last, or return it. */
export class Reply {
  constructor(body: Json, contentType?: string);
  body: Json;
  contentType?: string;
}
/**
 * An AI agent: yields its answer piece by piece (each piece is streamed at once as an `agent_chunk`);
 * the final message is the string pieces joined, or the `Reply` yielded last. A function that returns a
 * value (or a Reply) answers in one go.
 */
export type AgentFunction = (request: AgentRequest) =>
  | AsyncIterable<Json | Reply>
  | Iterable<Json | Reply>
  | Maybe<Json | Reply>;
export const AGENT_PREFIX: 'mics.agent.';
export const NDJSON: 'application/x-ndjson';
export function agentRequest(fields: Record<string, any>): AgentRequest;
export function textOf(body: unknown): string;
/** Run an agent function: `emit(delta)` for each piece; resolves with the final `{body, content_type?}`. */
export function runAgent(fn: AgentFunction, request: AgentRequest, emit: (delta: Json) => unknown): Promise<{ body: Json; content_type?: string }>;

/** HTTP hook bodies: `json`, or `protobuf` (protos/mics/v1/hooks.proto) for tenants with hook_encoding "protobuf". */
export type HookEncoding = 'json' | 'protobuf';
/** A hook by its SDK name or the Python codec's name. */
export type HookName = 'auth' | 'checkMessage' | 'checkMessages' | 'groupMembers' | 'check_message' | 'check_messages'
  | 'group_members';
export const CONTENT_TYPES: { json: 'application/json'; protobuf: 'application/x-protobuf' };
/** `protobuf` for an application/x-protobuf Content-Type, else `json`. */
export function encodingOf(contentType?: string | null): HookEncoding;
/** The router's side (handy in tests): request fields -> [body, content type]. */
export function encodeRequest(hook: HookName, fields: Record<string, unknown>, encoding?: HookEncoding): [Buffer, string];
/** A request body -> the object the hook gets (the same for JSON and protobuf); throws on a bad body. */
export function decodeRequest(hook: HookName, body: Uint8Array, contentType?: string): Record<string, any>;
/** A hook's reply -> [body, content type] in `encoding`. */
export function encodeResponse(hook: HookName, reply: Record<string, any>, encoding?: HookEncoding): [Buffer, string];
/** The router's side: a reply body -> the reply object (protobuf: empty device_id/reason become null). */
export function decodeResponse(hook: HookName, body: Uint8Array, contentType?: string): any;
/** A Message object -> a mics.v1.Message (protobufjs message; bytes bodies as body_bytes). */
export function messageToProto(message: Record<string, any>): any;
/** A decoded mics.v1.Message -> a Message object (body: JSON value, or a Buffer for body_bytes). */
export function messageFromProto(pb: any): Message;

/** Thrown by an auth hook: WAMP `mics.error.invalid_token`, HTTP 401. */
export class HookRejection extends MicsError {}

export const HOOK_PROCEDURES: { auth: string; checkMessage: string; checkMessages: string; groupMembers: string };
/** Of the router's timeout: a batch is answered with what is checked by then. */
export const DEADLINE_SHARE: number;
/**
 * A batched-check handler from a single-message check: all at once; a check that throws (reported to
 * `onError`) or is not done by 80% of `timeout_ms` gets null.
 */
export function checkEach(
  checkMessage: (message: Message, context: any) => Maybe<CheckReply | boolean>,
  onError?: (err: unknown) => void,
): (input: CheckMessagesInput, context?: any) => Promise<CheckMessagesReply>;
export const HOOK_PATHS: Record<string, keyof Hooks>;
export const MAX_SKEW_MS: number;

export interface TenantBackendOptions {
  url: string;
  tenant: string;
  /** the tenant secret (WAMP-CRA) */
  secret: string;
  /** `backend` or `backend-<name>` */
  authid?: string;
  hooks?: Hooks;
  /** AI agents by agent id, served as `mics.agent.<agent_id>` with progressive results */
  agents?: Record<string, AgentFunction>;
  serializer?: 'json' | 'msgpack';
}

export class TenantBackend {
  constructor(options: TenantBackendOptions);
  session: any;
  start(): Promise<this>;
  stop(): Promise<void>;
  on(event: 'ready' | 'disconnect' | 'error', handler: (value: any) => void): () => void;
  call<T = any>(procedure: string, kwargs?: Record<string, unknown>): Promise<T>;
  register(procedure: string, fn: (kwargs: Record<string, any>, caller: { caller?: number; callerAuthid?: string }) => unknown): Promise<void>;
  subscribe(topic: string, fn: (kwargs: Record<string, any>) => void): Promise<void>;
  publish(topic: string, kwargs?: Record<string, unknown>): void;
  sendMessage(toUserId: string, body: Json, options?: { fromUserId?: string; clientMsgId?: string; contentType?: string }): Promise<Ack>;
  sendGroup(groupId: string, body: Json, options?: { fromUserId?: string; clientMsgId?: string; contentType?: string }): Promise<Ack>;
  listSessions(userId?: string): Promise<{ sessions: { session_id: number; user_id: string; device_id: string; node_id: string; online_at: number }[] }>;
  kick(userId: string, deviceId?: string): Promise<{ kicked: number }>;
  membersChanged(groupId: string, change: { added?: string[]; removed?: string[] }): Promise<{ msg_id: string; ts: number; recipients: number }>;
}

export function signature(secret: string, timestamp: string, nonce: string, body: string | Uint8Array): string;
export function signHeaders(tenantId: string, secret: string, body: string | Uint8Array, nowMs?: number): Record<string, string>;
export class SignatureError extends Error {}
export class SignatureVerifier {
  constructor(secret: string, options?: { clock?: () => number; maxNonces?: number; maxSkewMs?: number });
  verify(headers: Record<string, string | string[] | undefined>, body: Uint8Array | string): void;
}

export interface HookServerOptions {
  secret: string;
  hooks?: Hooks;
  /** AI agents by agent id, answering `POST .../agents/<agent_id>` as NDJSON streams */
  agents?: Record<string, AgentFunction>;
  /** refuse requests whose X-Mics-Tenant differs */
  tenantId?: string;
  verifier?: SignatureVerifier;
  onError?: (err: unknown) => void;
}
export function createHookHandler(options: HookServerOptions): (req: IncomingMessage, res: ServerResponse) => Promise<void>;
export function createHookServer(options: HookServerOptions): Server & { listenAsync(port?: number, host?: string): Promise<string> };

/** Join `mics.control` as `admin` (WAMP-CRA); `session.connection.close()` ends it. */
export function connectAdmin(options: { url: string; secret: string }): Promise<any>;

export interface HttpClientOptions {
  /** The node's HTTP base, e.g. `https://mics.example.com` (any node of a cluster). */
  baseUrl: string;
  tenantId: string;
  /** The tenant secret (signs every request like a hook request). */
  secret: string;
  timeoutMs?: number;
  fetch?: typeof fetch;
}
export interface SendOptions { clientMsgId?: string; contentType?: string }
/** The backend HTTP API (protocol.md section 13); a refused call rejects with a typed MicsError. */
export interface HttpClient {
  call(action: string, fields?: Record<string, unknown>): Promise<any>;
  send(toUserId: string, body: unknown, fromUserId: string, opts?: SendOptions): Promise<Record<string, unknown>>;
  groupSend(groupId: string, body: unknown, fromUserId?: string, opts?: SendOptions): Promise<Record<string, unknown>>;
  membersChanged(groupId: string, change?: { added?: string[]; removed?: string[] }): Promise<Record<string, unknown>>;
  kick(userId: string, deviceId?: string): Promise<number>;
  sessions(userId?: string): Promise<Array<Record<string, unknown>>>;
  presence(userIds: Iterable<string>): Promise<Record<string, { online: boolean; devices: string[] }>>;
}
export function createHttpClient(options: HttpClientOptions): HttpClient;
