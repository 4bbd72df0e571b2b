// Types for mics-sdk (the client). The tenant hook SDK is in ./hooks.d.ts.
import { MicsError } from './errors.js';
export * from './errors.js';

export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** A message as delivered live or by sync (protocol.md sections 4 and 11). */
export interface Message {
  msg_id: string;
  type: 'chat' | 'group_chat' | 'receipt' | 'signal' | 'system' | 'recall' | 'edit' | 'agent_chunk';
  tenant_id: string;
  from_user_id: string;
  from_device_id: string | null;
  to_user_id?: string;
  group_id?: string;
  body: Json | Uint8Array;
  content_type?: string;
  client_msg_id?: string;
  seq?: number;
  ts: number;
  trace_id: string;
  /** group sends: the user ids it mentions */
  mentions?: string[];
  /** the msg_id this message replies to */
  reply_to?: string;
  /** `recall` / `edit`: the message it changes */
  ref_msg_id?: string;
  /** a recalled message (its body is gone: show "message recalled") */
  recalled?: boolean;
  /** ms: when its body was last edited */
  edited_at?: number;
  /** an AI agent's answer (section 12): its chunks and its final message share it */
  stream_id?: string;
  /** `agent_chunk` only: 1, 2, ... in the order the agent streamed */
  chunk_seq?: number;
}

/** One piece of an agent's answer, live only (never held, no seq). */
export interface AgentChunkMessage extends Message {
  type: 'agent_chunk';
  stream_id: string;
  chunk_seq: number;
  body: { delta: Json };
}

/** One agent a send called (`Ack.agents`): `stream_id` names its answer unless it was rate_limited. */
export interface AgentCall {
  agent_id: string;
  status: 'started' | 'rate_limited' | 'unavailable';
  stream_id?: string;
}

/** An agent's answer as it streams: chunks, then the final message (`chat`/`group_chat`, or `system` with `body.error`). */
export class AgentStream implements AsyncIterable<Message> {
  readonly streamId: string;
  readonly agentId: string | null;
  readonly chunks: AgentChunkMessage[];
  readonly final: Message | null;
  readonly ended: boolean;
  /** the string deltas so far, joined */
  readonly text: string;
  /** `{code, message}` when it ended without an answer (504 timeout, 503 error) */
  readonly error: { code: number; message: string } | null;
  /** each chunk then the final message: what came already, then as it comes; returns a stop function */
  on(callback: (message: Message, stream: AgentStream) => void): () => void;
  /** resolves with the final message */
  done(): Promise<Message>;
  [Symbol.asyncIterator](): AsyncIterator<Message>;
}

/** The delta an `agent_chunk` carries (undefined for other messages). */
export function deltaOf(message: Message): Json | undefined;
/** `{code, message}` of a `system` message ending an agent's stream, else null. */
export function agentErrorOf(message: Message | null): { code: number; message: string } | null;

/** A recall of `ref_msg_id` (body null). */
export interface RecallMessage extends Message {
  type: 'recall';
  ref_msg_id: string;
  body: null;
}

/** An edit of `ref_msg_id`: `body` is the new body. */
export interface EditMessage extends Message {
  type: 'edit';
  ref_msg_id: string;
}

/** A typing signal (`client.typing()`); `group_id` set for a group. */
export interface TypingMessage extends Message {
  type: 'signal';
  body: { typing: boolean };
}

/** A watched user's online devices (`watchPresence`); `snapshot` for the state fetched on watch and after a reconnect. */
export interface PresenceChange {
  user_id: string;
  online: boolean;
  devices: string[];
  ts: number;
  snapshot: boolean;
}

export interface ReceiptMessage extends Message {
  type: 'receipt';
  body: { msg_ids: string[]; kind: 'delivered' | 'read' };
}

export interface Ack {
  msg_id: string;
  status: 'SENT';
  ts: number;
  seq?: number;
  client_msg_id?: string;
  delivered: 'online' | 'buffered' | 'offline';
  /** group sends: the member count */
  recipients?: number;
  /** the agents this send called (section 12) */
  agents?: AgentCall[];
}

export interface Position {
  lastSeq: number;
  epoch: string | null;
}

export interface SyncResult {
  /** the messages this sync delivered (repeats already seen are left out) */
  messages: Message[];
  /** false: some held messages were lost (new epoch, or expired; on any page): refresh from your own store */
  complete: boolean;
  lastSeq: number;
  epoch: string;
}

export interface ReconnectPolicy {
  /** first delay (ms), default 500 */
  initialDelayMs?: number;
  /** cap (ms), default 30000 */
  maxDelayMs?: number;
  /** growth per attempt, default 2 */
  factor?: number;
  /** random cut of up to this share of the delay, default 0.5 */
  jitter?: number;
  /** default Infinity */
  maxAttempts?: number;
}

export interface ConnectOptions {
  /** e.g. ws://localhost:8080/ws, or several nodes' URLs: a dropped client dials the next */
  url: string | string[];
  /** the tenant id (= realm) */
  tenant: string;
  /** the tenant-issued token, checked by the tenant's auth hook */
  token: string;
  deviceId: string;
  serializer?: 'json' | 'msgpack' | 'cbor';
  /** false: never reconnect; default: exponential backoff with jitter */
  reconnect?: boolean | ReconnectPolicy;
  /** sync the inbox after every (re)connect, default true */
  autoSync?: boolean;
  /** ping when idle for a third of heartbeat_timeout_s, default true */
  heartbeat?: boolean;
  /** where a previous run stopped (persist `client.position`) */
  position?: Position | null;
  /**
   * when a live inbox message skips seqs (in a cluster a forwarded delivery can be lost or overtaken),
   * wait this long for them, then fetch the missing ones with a sync; default 500
   */
  gapWaitMs?: number;
  /** group messages: `true` = all my groups (prefix), or a list of group ids */
  groups?: true | string[] | null;
  /** at most one typing signal per conversation this often (ms), default 3000 */
  typingIntervalMs?: number;
  onMessage?: (message: Message, meta: EventMeta) => void;
  onReceipt?: (message: ReceiptMessage, meta: EventMeta) => void;
  onSignal?: (message: Message, meta: EventMeta) => void;
}

export interface EventMeta {
  source: 'live' | 'sync';
}

export interface SendOptions {
  /** dedup key; one is made up when not given */
  clientMsgId?: string;
  contentType?: string;
  /** the msg_id this message replies to */
  replyTo?: string;
}

export interface GroupSendOptions extends SendOptions {
  /** at most 100 distinct user ids; mentioned members who are offline get a push trigger */
  mentions?: string[];
}

export interface ClientEvents {
  message: [Message, EventMeta];
  receipt: [ReceiptMessage, EventMeta];
  signal: [Message, EventMeta];
  recall: [RecallMessage, EventMeta];
  edit: [EditMessage, EventMeta];
  typing: [TypingMessage, EventMeta];
  agentStream: [AgentStream];
  agentChunk: [AgentChunkMessage, EventMeta];
  connect: [{ userId: string; deviceId: string; reconnected: boolean; details: Record<string, unknown> }];
  disconnect: [{ reason: string; error: MicsError; willRetry: true; delayMs: number }];
  close: [{ reason: string; error: MicsError | null }];
  sync: [SyncResult];
  gap: [SyncResult];
  position: [Position];
  error: [MicsError | Error];
}

export class MicsClient {
  constructor(options: ConnectOptions);
  /** the URL dialled now (one of `urls`) */
  readonly url: string;
  readonly urls: string[];
  readonly tenant: string;
  readonly deviceId: string;
  /** the user id the auth hook gave (WELCOME authid) */
  readonly userId: string | null;
  /** WELCOME details (authextra has device_id, node_id, heartbeat_timeout_s, offline_ttl_s) */
  readonly welcome: Record<string, any> | null;
  readonly connected: boolean;
  readonly position: Position;
  readonly heartbeatTimeoutS: number | null;
  /** how long a skipped inbox seq may take to arrive live before a sync fetches it (ms) */
  gapWaitMs: number;
  /** at most one typing signal per conversation this often (ms) */
  typingIntervalMs: number;
  open(): Promise<this>;
  close(): Promise<void>;
  on<E extends keyof ClientEvents>(event: E, handler: (...args: ClientEvents[E]) => void): () => void;
  off<E extends keyof ClientEvents>(event: E, handler: (...args: ClientEvents[E]) => void): void;
  once<E extends keyof ClientEvents>(event: E): Promise<ClientEvents[E][0]>;
  onMessage(handler: (message: Message, meta: EventMeta) => void): () => void;
  onReceipt(handler: (message: ReceiptMessage, meta: EventMeta) => void): () => void;
  onSignal(handler: (message: Message, meta: EventMeta) => void): () => void;
  onRecall(handler: (message: RecallMessage, meta: EventMeta) => void): () => void;
  onEdit(handler: (message: EditMessage, meta: EventMeta) => void): () => void;
  onTyping(handler: (message: TypingMessage, meta: EventMeta) => void): () => void;
  send(toUserId: string, body: Json | Uint8Array, options?: SendOptions): Promise<Ack>;
  sendGroup(groupId: string, body: Json | Uint8Array, options?: GroupSendOptions): Promise<Ack & { recipients: number }>;
  /** take back your message within the tenant's recall window (NotFoundError after it, RejectedError for others') */
  recall(msgId: string): Promise<Ack>;
  /** replace your message's body within the recall window (passes the check-message hook and size limit) */
  edit(msgId: string, body: Json | Uint8Array, options?: { contentType?: string }): Promise<Ack>;
  receipt(toUserId: string, msgIds: string[], kind?: 'delivered' | 'read'): Promise<Ack>;
  signal(toUserId: string, body: Json): Promise<Ack>;
  /** a live-only message to a group's online members (you must be one) */
  signalGroup(groupId: string, body: Json): Promise<Ack>;
  /** throttled typing indicator; resolves null when throttled (nothing sent) */
  typing(to: { toUserId: string; groupId?: undefined } | { groupId: string; toUserId?: undefined }, active?: boolean): Promise<Ack | null>;
  /** resolves with a function that stops this watch */
  watchPresence(userId: string, callback: (change: PresenceChange) => void): Promise<() => void>;
  /** an agent's answer (`ack.agents[i].stream_id`); it keeps what came before you asked */
  stream(streamId: string): AgentStream;
  /** an agent's answer starts here (its first chunk, or its final message when none came) */
  onAgentStream(handler: (stream: AgentStream) => void): () => void;
  onAgentChunk(handler: (message: AgentChunkMessage, meta: EventMeta) => void): () => void;
  /** the tenant's agents (mics.agent.list) */
  agents(): Promise<{ agent_id: string; name: string; description?: string }[]>;
  ping(): Promise<{ ts: number; heartbeat_timeout_s: number }>;
  presence(userIds: string[]): Promise<Record<string, { online: boolean; devices: string[] }>>;
  subscribeGroups(groupIds?: true | string[]): Promise<void>;
  subscribe(topic: string, handler: (kwargs: Record<string, any>, meta: { args: unknown[]; topic?: string }) => void): Promise<() => void>;
  call<T = any>(procedure: string, kwargs?: Record<string, unknown>): Promise<T>;
  /** Catch up from the last seen seq: fetches every page the router answers (`more`), so one call is one whole catch-up. */
  sync(): Promise<SyncResult>;
}

/** What an app shows: messages by msg_id with recalls and edits applied, in whatever order they come. */
export class Timeline {
  constructor(options?: { limit?: number });
  readonly size: number;
  /** the messages as shown, oldest first */
  messages(): Message[];
  get(msgId: string): Message | undefined;
  /** what to show now for the message `message` concerns, or null when nothing shown changed */
  apply(message: Message): Message | null;
}

/** The original as it is after a recall or an edit (nothing undoes a recall). */
export function applyChange(original: Message, change: RecallMessage | EditMessage | Message): Message;

/** Connect a device; resolves after the first join and sync, rejects with the typed error of a refusal. */
export function connect(options: ConnectOptions): Promise<MicsClient>;
export function newClientMsgId(): string;
