// The MICS client: one device's connection to a tenant realm, with sync, heartbeat and reconnect.
// Speaks protocol.md sections 2-4 over Autobahn|JS; runs in Node (>= 20) and the browser.
import autobahn from './autobahn.js';
import { Emitter } from './emitter.js';
import { StreamTable } from './streams.js';
import {
  ConnectionLostError,
  MicsError,
  NotConnectedError,
  errorForUri,
  fromWampError,
  FINAL_URIS,
} from './errors.js';

const INBOX = 'mics.inbox.';
const GROUP = 'mics.group.';
const PRESENCE = 'mics.presence.';
const TYPING_INTERVAL_MS = 3000; // a typing signal per conversation at most this often (receivers show ~5 s)
const DEFAULT_RECONNECT = { initialDelayMs: 500, maxDelayMs: 30_000, factor: 2, jitter: 0.5, maxAttempts: Infinity };

const SERIALIZERS = {
  json: () => new autobahn.serializer.JSONSerializer(),
  msgpack: () => new autobahn.serializer.MsgpackSerializer(),
  cbor: () => new autobahn.serializer.CBORSerializer(),
};

/** A random id for `client_msg_id`, so a retried send is delivered once (the router dedups). */
export function newClientMsgId() {
  const c = globalThis.crypto;
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 12)}`;
}

/** Connect a device and resolve once it has joined (and synced); rejects with a typed error. */
export async function connect(options) {
  const client = new MicsClient(options);
  await client.open();
  return client;
}

export class MicsClient extends Emitter {
  constructor({
    url,
    tenant,
    token,
    deviceId,
    serializer = 'json',
    reconnect = true,
    autoSync = true,
    heartbeat = true,
    position = null,
    groups = null,
    gapWaitMs = 500,
    typingIntervalMs = TYPING_INTERVAL_MS,
    onMessage,
    onReceipt,
    onSignal,
  } = {}) {
    super();
    const urls = Array.isArray(url) ? [...url] : [url];
    for (const [name, value] of Object.entries({ tenant, token, deviceId })) {
      if (typeof value !== 'string' || !value) throw new TypeError(`connect: ${name} must be a non-empty string`);
    }
    if (!urls.length || urls.some((u) => typeof u !== 'string' || !u)) {
      throw new TypeError('connect: url must be a non-empty string or a list of them');
    }
    if (!SERIALIZERS[serializer]) throw new TypeError(`connect: serializer must be one of ${Object.keys(SERIALIZERS)}`);
    this.urls = urls;
    this.url = urls[0]; // the node this client dials now
    this.tenant = tenant;
    this.deviceId = deviceId;
    this.serializer = serializer;
    this.autoSync = autoSync;
    this.gapWaitMs = gapWaitMs;
    this.typingIntervalMs = typingIntervalMs;
    this.heartbeatEnabled = heartbeat;
    this.reconnectPolicy = reconnect === false ? null : { ...DEFAULT_RECONNECT, ...(reconnect === true ? {} : reconnect) };
    this.userId = null;
    this.welcome = null;
    this.lastSeq = position && Number.isInteger(position.lastSeq) ? position.lastSeq : 0;
    this.epoch = position && typeof position.epoch === 'string' ? position.epoch : null;
    this.#token = token;
    this.#groups = groups === true ? new Set([true]) : new Set(groups || []);
    // handlers given here see the messages the first sync catches up on (connect() resolves after it)
    if (onMessage) this.onMessage(onMessage);
    if (onReceipt) this.onReceipt(onReceipt);
    if (onSignal) this.onSignal(onSignal);
  }

  #token;
  #groups; // group ids to subscribe, or `true` for the prefix `mics.group.`
  #topics = new Map(); // tenant topics: topic -> Set(handler)
  #connection = null;
  #session = null;
  #closed = false;
  #attempt = 0;
  #retryTimer = null;
  #heartbeatTimer = null;
  #lastActivity = 0;
  #syncing = null;
  #opening = null;
  #untried = 0; // URLs the first open() has not tried yet
  #inFlight = new Set(); // rejecters of calls in flight: a session's end fails them (Autobahn would not)
  #held = new Map(); // live inbox messages waiting for earlier seqs, by seq
  #ownSeqs = new Set(); // seqs of this device's own sends (their copies never come here)
  #gapTimer = null;
  #watches = new Map(); // presence: user id -> Set(callback)
  #watchSubscriptions = new Map(); // user id -> autobahn Subscription (this session's)
  #typingSent = new Map(); // 'u:<id>' | 'g:<id>' -> when "typing" was last sent (ms)
  #streams = new StreamTable((stream) => this.emit('agentStream', stream)); // section 12: agents' answers

  /** True while joined to the tenant realm. */
  get connected() {
    return this.#session !== null;
  }

  /** The inbox position to persist (e.g. in localStorage) and pass back as `position` later. */
  get position() {
    return { lastSeq: this.lastSeq, epoch: this.epoch };
  }

  /** The tenant's heartbeat timeout from WELCOME (seconds), or null before the first join. */
  get heartbeatTimeoutS() {
    return this.welcome?.authextra?.heartbeat_timeout_s ?? null;
  }

  /** Open the connection; resolves after the first join, rejects with the first attempt's error. */
  open() {
    if (!this.#opening) {
      this.#closed = false;
      this.#untried = this.urls.length - 1;
      this.#opening = new Promise((resolve, reject) => {
        this.#dial({ resolve, reject });
      });
    }
    return this.#opening;
  }

  /** Leave for good: no more reconnects. */
  async close() {
    this.#closed = true;
    this.#opening = null; // open() may start over
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#gapTimer);
    this.#gapTimer = null;
    this.#stopHeartbeat();
    const connection = this.#connection;
    this.#connection = null;
    if (!connection) return;
    const left = this.once('close');
    try {
      connection.close('wamp.close.normal', 'client closed');
    } catch {
      return; // already closed
    }
    await left;
  }

  // -- events -----------------------------------------------------------------------------------
  /** Chat, group chat and system messages (live and from sync); returns an unsubscribe function. */
  onMessage(handler) {
    return this.on('message', handler);
  }

  onReceipt(handler) {
    return this.on('receipt', handler);
  }

  onSignal(handler) {
    return this.on('signal', handler);
  }

  /** A recall of an earlier message (`ref_msg_id`); `Timeline.apply` folds it into what you show. */
  onRecall(handler) {
    return this.on('recall', handler);
  }

  /** An edit of an earlier message (`ref_msg_id`, the new `body`). */
  onEdit(handler) {
    return this.on('edit', handler);
  }

  /** Someone is typing (`message.body.typing` true) or stopped (false); `group_id` for a group. */
  onTyping(handler) {
    return this.on('typing', handler);
  }

  // -- calls (protocol.md section 3) ----------------------------------------------------------------
  /** Send a 1:1 message; resolves with the Ack. A `clientMsgId` is made up when not given. */
  send(toUserId, body, { clientMsgId = newClientMsgId(), contentType, replyTo } = {}) {
    const kwargs = { to_user_id: toUserId, body, client_msg_id: clientMsgId };
    if (contentType) kwargs.content_type = contentType;
    if (replyTo) kwargs.reply_to = replyTo;
    return this.call('mics.message.send', kwargs).then((ack) => this.#own(ack));
  }

  /**
   * Send to a group; the Ack also carries `recipients` (member count). `mentions` (at most 100
   * distinct user ids) also triggers a push for mentioned members who are offline.
   */
  sendGroup(groupId, body, { clientMsgId = newClientMsgId(), contentType, replyTo, mentions } = {}) {
    const kwargs = { group_id: groupId, body, client_msg_id: clientMsgId };
    if (contentType) kwargs.content_type = contentType;
    if (replyTo) kwargs.reply_to = replyTo;
    if (mentions && mentions.length) kwargs.mentions = [...mentions];
    return this.call('mics.group.send', kwargs).then((ack) => this.#own(ack));
  }

  /** Take back a message you sent, within the tenant's recall window (NotFoundError after it). */
  recall(msgId) {
    return this.call('mics.message.recall', { msg_id: msgId }).then((ack) => this.#own(ack));
  }

  /** Replace the body of a message you sent; the new body passes the check-message hook and size limit. */
  edit(msgId, body, { contentType } = {}) {
    const kwargs = { msg_id: msgId, body };
    if (contentType) kwargs.content_type = contentType;
    return this.call('mics.message.edit', kwargs).then((ack) => this.#own(ack));
  }

  /** Tell `toUserId` that messages were `delivered` or `read`. */
  receipt(toUserId, msgIds, kind = 'read') {
    return this.call('mics.message.receipt', { to_user_id: toUserId, msg_ids: msgIds, kind }).then((ack) => this.#own(ack));
  }

  /** A live-only message (e.g. WebRTC offer/answer/ICE): never buffered, no seq. */
  signal(toUserId, body) {
    return this.call('mics.signal.send', { to_user_id: toUserId, body });
  }

  /** A live-only message to a group's online members (you must be one). */
  signalGroup(groupId, body) {
    return this.call('mics.signal.send', { group_id: groupId, body });
  }

  /**
   * Say you are typing to `{toUserId}` or `{groupId}` (`active: false`: stopped). Throttled: at most
   * one "typing" per conversation every `typingIntervalMs`; a throttled call sends nothing (null).
   */
  async typing({ toUserId, groupId } = {}, active = true) {
    if (!toUserId === !groupId) throw new TypeError('typing: give toUserId or groupId');
    const key = toUserId ? `u:${toUserId}` : `g:${groupId}`;
    if (active) {
      const last = this.#typingSent.get(key);
      if (last !== undefined && Date.now() - last < this.typingIntervalMs) return null;
      this.#typingSent.set(key, Date.now());
    } else if (!this.#typingSent.delete(key)) {
      return null; // never said it was typing: nothing to take back
    }
    const body = { typing: active };
    return toUserId ? this.signal(toUserId, body) : this.signalGroup(groupId, body);
  }

  /**
   * Watch a user's online devices: `callback({user_id, online, devices, ts, snapshot})` first with the
   * current state (`snapshot: true`), then on every change (on any node), and again after each
   * reconnect. Resolves with a function that stops this watch. Rejects with NotAuthorizedError when
   * the tenant turns presence queries off.
   */
  async watchPresence(userId, callback) {
    if (!this.#watches.has(userId)) this.#watches.set(userId, new Set());
    const callbacks = this.#watches.get(userId);
    callbacks.add(callback);
    const session = this.#session;
    if (session) {
      try {
        if (!this.#watchSubscriptions.has(userId)) await this.#subscribePresence(session, userId);
      } catch (err) {
        callbacks.delete(callback);
        if (!callbacks.size) this.#watches.delete(userId);
        throw fromWampError(err);
      }
      await this.#presenceSnapshot([userId], callback);
    }
    return () => this.#unwatch(userId, callback);
  }

  #unwatch(userId, callback) {
    const callbacks = this.#watches.get(userId);
    callbacks?.delete(callback);
    if (callbacks?.size) return;
    this.#watches.delete(userId);
    const subscription = this.#watchSubscriptions.get(userId);
    this.#watchSubscriptions.delete(userId);
    if (subscription && this.#session) subscription.unsubscribe().catch(() => {});
  }

  async #subscribePresence(session, userId) {
    const subscription = await session.subscribe(PRESENCE + userId, (args, kwargs) => {
      this.#presenceChanged({ ...(kwargs || {}), snapshot: false });
    });
    this.#watchSubscriptions.set(userId, subscription);
  }

  async #presenceSnapshot(userIds, only = null) {
    for (let at = 0; at < userIds.length; at += 100) {
      let states;
      try {
        states = await this.presence(userIds.slice(at, at + 100));
      } catch (err) {
        this.emit('error', err);
        return;
      }
      const ts = Date.now();
      for (const [userId, state] of Object.entries(states)) {
        this.#presenceChanged({ user_id: userId, online: state.online, devices: state.devices, ts, snapshot: true }, only);
      }
    }
  }

  #presenceChanged(change, only = null) {
    for (const callback of only ? [only] : [...(this.#watches.get(change.user_id) || [])]) {
      try {
        callback(change);
      } catch (err) {
        this.emit('error', err);
      }
    }
  }

  // -- agents (protocol.md section 12) --------------------------------------------------------------
  /**
   * An agent's answer (`ack.agents[i].stream_id`): `for await` its chunks then the final message, or
   * `stream.on(callback)`; it keeps what came before you asked.
   */
  stream(streamId) {
    return this.#streams.get(streamId);
  }

  /** An agent's answer starts here (its first chunk, or its final message when none came). */
  onAgentStream(handler) {
    return this.on('agentStream', handler);
  }

  /** Each `agent_chunk` (`message.body.delta`, `message.stream_id`). */
  onAgentChunk(handler) {
    return this.on('agentChunk', handler);
  }

  /** The tenant's agents: `[{agent_id, name, description?}]` (mics.agent.list). */
  async agents() {
    return (await this.call('mics.agent.list', {})).agents;
  }

  ping() {
    return this.call('mics.ping', {});
  }

  /** Online state and devices of up to 100 users. */
  presence(userIds) {
    return this.call('mics.presence.get', { user_ids: userIds });
  }

  /**
   * Receive group messages: no argument (or `true`) subscribes to every group this user is in
   * (prefix `mics.group.`); a list subscribes to those groups. Kept across reconnects.
   */
  async subscribeGroups(groupIds = true) {
    const wanted = groupIds === true ? [true] : [...groupIds];
    const fresh = wanted.filter((g) => !this.#groups.has(g));
    for (const g of fresh) this.#groups.add(g);
    if (this.#session) await Promise.all(fresh.map((g) => this.#subscribeGroup(this.#session, g)));
  }

  /** Subscribe to a tenant topic (`tenant.*`); handler gets the event kwargs. Kept across reconnects. */
  async subscribe(topic, handler) {
    if (!this.#topics.has(topic)) this.#topics.set(topic, new Set());
    const handlers = this.#topics.get(topic);
    handlers.add(handler);
    if (this.#session && handlers.size === 1) await this.#subscribeTopic(this.#session, topic);
    return () => handlers.delete(handler);
  }

  /** Call any procedure the user may call (MICS or tenant `tenant.*`); kwargs in, one result out. */
  async call(procedure, kwargs = {}) {
    const session = this.#session;
    if (!session) throw new NotConnectedError(`not connected (calling ${procedure})`);
    this.#lastActivity = Date.now();
    let cut;
    const ended = new Promise((resolve, reject) => { cut = reject; });
    this.#inFlight.add(cut);
    try {
      return await Promise.race([session.call(procedure, [], kwargs), ended]);
    } catch (err) {
      throw fromWampError(err);
    } finally {
      this.#inFlight.delete(cut);
    }
  }

  /**
   * Catch up on the inbox from the last seen seq (runs by itself after every (re)connect). The
   * router answers a page at a time (`more`); this fetches every page, so one sync is one whole
   * catch-up. Resolves with `{messages, complete, lastSeq, epoch}`; `complete: false` (on any page)
   * is also emitted as `gap`.
   */
  sync() {
    return this.#sync(this.lastSeq);
  }

  #sync(since) {
    if (!this.#syncing) {
      this.#syncing = this.#runSync(since).finally(() => {
        this.#syncing = null;
        this.#release(false); // live messages held while the sync ran
      });
    }
    return this.#syncing;
  }

  async #runSync(since) {
    const fresh = [];
    let complete = true;
    let position = Math.min(since, this.lastSeq);
    for (;;) {
      const kwargs = { since_seq: position };
      if (this.epoch) kwargs.epoch = this.epoch;
      const result = await this.call('mics.inbox.sync', kwargs);
      complete = this.#takePage(result, fresh) && complete;
      this.emit('position', this.position);
      // the router answers a page at a time (`more`): fetch them all, one sync is one whole catch-up
      // (a page always moves on; an answer that does not ends the loop)
      if (!result.more || !(result.last_seq > position)) break;
      position = result.last_seq;
    }
    const summary = { messages: fresh, complete, lastSeq: this.lastSeq, epoch: this.epoch };
    this.emit('sync', summary);
    if (!complete) this.emit('gap', summary);
    return summary;
  }

  /** Deliver one sync page's new messages (into `fresh`) and move to its end; returns its `complete`. */
  #takePage(result, fresh) {
    if (this.epoch !== result.epoch) this.lastSeq = 0; // a new stream: its seqs start over
    this.epoch = result.epoch;
    for (const message of result.messages || []) {
      const seq = message.seq;
      this.#held.delete(seq);
      if (typeof seq === 'number' && seq <= this.lastSeq) continue; // a repeat
      if (typeof seq === 'number') this.lastSeq = seq;
      this.#emit(message, 'sync');
      fresh.push(message);
    }
    const complete = result.complete !== false;
    if (result.last_seq > this.lastSeq || !complete) this.lastSeq = result.last_seq;
    return complete;
  }

  // -- delivery ---------------------------------------------------------------------------------
  /** Hand one Message to its event (`receipt`, `signal`, `agentChunk` or `message`). */
  #emit(message, source) {
    const meta = { source };
    if (message.stream_id && typeof message.stream_id === 'string') {
      // section 12: a chunk only feeds its stream; an agent's final message ends it and is a message too
      const stream = this.#streams.arrived(message);
      if (message.type === 'agent_chunk') {
        if (stream) this.emit('agentChunk', message, meta);
        return;
      }
    }
    if (message.type === 'receipt') this.emit('receipt', message, meta);
    else if (message.type === 'signal') this.emit(typeof message.body?.typing === 'boolean' ? 'typing' : 'signal', message, meta);
    else if (message.type === 'recall' || message.type === 'edit') this.emit(message.type, message, meta);
    else this.emit('message', message, meta);
  }

  /**
   * A live inbox message. Inbox messages reach the app in seq order: one that skips seqs (a device
   * that reconnects gets live messages while its sync runs; in a cluster a forwarded delivery can
   * be lost or overtaken) is held until the missing ones arrive, live or by a sync after
   * `gapWaitMs`; what is gone for good (expired, evicted) is skipped then, never waited for forever.
   */
  #arrived(message) {
    const seq = message.seq;
    if (typeof seq !== 'number') return this.#emit(message, 'live'); // signals: no place in the stream
    if (seq <= this.lastSeq) return undefined; // a repeat
    if (this.#syncing || this.epoch === null || seq > this.lastSeq + 1) {
      this.#held.set(seq, message);
    } else {
      this.lastSeq = seq;
      this.#emit(message, 'live');
    }
    this.#release(false);
    return undefined;
  }

  /** Deliver held messages that are next in seq order (`force`: all of them, in order). */
  #release(force) {
    if (this.#syncing || this.epoch === null) return;
    const before = this.lastSeq;
    for (;;) {
      let next = this.lastSeq + 1;
      if (this.#ownSeqs.delete(next)) {
        this.lastSeq = next;
        continue;
      }
      if (!this.#held.has(next)) {
        if (!force || !this.#held.size) break;
        next = Math.min(...this.#held.keys());
      }
      const message = this.#held.get(next);
      this.#held.delete(next);
      this.lastSeq = next;
      this.#emit(message, 'live');
    }
    for (const seq of [...this.#held.keys(), ...this.#ownSeqs]) {
      if (seq <= this.lastSeq) {
        this.#held.delete(seq);
        this.#ownSeqs.delete(seq);
      }
    }
    if (this.lastSeq !== before) this.emit('position', this.position);
    if (this.#held.size && !this.#gapTimer) {
      this.#gapTimer = setTimeout(() => {
        this.#gapTimer = null;
        if (!this.#held.size || !this.connected) return;
        this.#sync(this.lastSeq)
          .catch(() => {}) // the next reconnect's sync covers it
          .then(() => this.#release(true)); // what the sync did not bring is gone: go on in order
      }, this.gapWaitMs);
    }
  }

  /** Our own send's Ack: the seq of our inbox copy (which this device does not receive) is ours, not a gap. */
  #own(ack) {
    if (ack && typeof ack.seq === 'number' && ack.seq > this.lastSeq) {
      this.#ownSeqs.add(ack.seq);
      this.#release(false);
    }
    return ack;
  }

  #subscribeGroup(session, group) {
    const topic = group === true ? GROUP : GROUP + group;
    const options = group === true ? { match: 'prefix' } : {};
    return session.subscribe(topic, (args, kwargs) => this.#emit(kwargs || {}, 'live'), options);
  }

  #subscribeTopic(session, topic) {
    return session.subscribe(topic, (args, kwargs, details) => {
      for (const handler of this.#topics.get(topic) || []) handler(kwargs || {}, { args, topic: details?.topic });
    });
  }

  // -- connection lifecycle -----------------------------------------------------------------------
  #dial(first) {
    const connection = new autobahn.Connection({
      url: this.url,
      realm: this.tenant,
      authmethods: ['ticket'],
      authextra: { device_id: this.deviceId },
      onchallenge: (session, method) => {
        if (method !== 'ticket') throw new Error(`unexpected auth method ${method}`);
        return this.#token;
      },
      serializers: [SERIALIZERS[this.serializer]()],
      max_retries: 0, // the SDK decides about reconnects (autobahn never retries after a GOODBYE)
      retry_if_unreachable: false,
    });
    this.#connection = connection;
    let joined = false;
    connection.onopen = (session, details) => {
      joined = true;
      this.#onJoin(session, details, first).catch((err) => {
        if (first) first.reject(fromWampError(err));
        else this.emit('error', fromWampError(err));
      });
    };
    let ended = false;
    connection.onclose = (reason, details) => {
      if (this.#connection === connection) this.#connection = null;
      if (!ended) {
        ended = true; // an unreachable WebSocket may report its end twice
        this.#onClose(reason, details || {}, joined, first);
      }
      return true;
    };
    connection.open();
  }

  async #onJoin(session, details, first) {
    this.#session = session;
    this.welcome = details;
    this.userId = details.authid;
    this.#attempt = 0;
    this.#lastActivity = Date.now();
    await session.subscribe(INBOX + this.userId, (args, kwargs) => this.#arrived(kwargs || {}));
    await Promise.all([...this.#groups].map((g) => this.#subscribeGroup(session, g)));
    await Promise.all([...this.#topics.keys()].map((t) => this.#subscribeTopic(session, t)));
    this.#watchSubscriptions.clear();
    // a watch the router refuses now (presence queries turned off) must not fail the join
    const watched = [...this.#watches.keys()];
    await Promise.all(watched.map((u) => this.#subscribePresence(session, u).catch((err) => this.emit('error', fromWampError(err)))));
    this.#startHeartbeat();
    const reconnected = !first;
    if (this.autoSync) await this.sync();
    if (this.#watches.size) this.#presenceSnapshot([...this.#watches.keys()]); // what changed while away
    this.emit('connect', { userId: this.userId, deviceId: this.deviceId, reconnected, details });
    if (first) first.resolve(this);
  }

  #onClose(reason, details, joined, first) {
    this.#session = null;
    this.#stopHeartbeat();
    for (const cut of this.#inFlight) cut(new NotConnectedError('the session ended before the call was answered'));
    this.#inFlight.clear();
    if (first && !joined && reason === 'unreachable' && this.#untried > 0 && !this.#closed) {
      this.#untried -= 1; // several nodes: one that cannot be reached is passed over
      this.#nextUrl();
      this.#dial(first);
      return;
    }
    let error;
    if (details.reason) {
      error = errorForUri(details.reason, details.message, {}, { join: !joined });
    } else {
      const uri = reason === 'unreachable' ? 'mics.client.unreachable' : 'mics.client.lost';
      error = new ConnectionLostError(`connection ${reason}`, { uri });
    }
    const normal = details.reason === 'wamp.close.normal' || this.#closed;
    const final = normal || FINAL_URIS.has(error.uri) || !this.reconnectPolicy || (first && !joined);
    if (first && !joined) {
      this.#closed = true;
      this.#opening = null;
      first.reject(error);
    }
    if (final) {
      this.#closed = true;
      this.emit('close', { reason: error.uri, error: normal ? null : error });
      return;
    }
    const delayMs = this.#nextDelay();
    if (delayMs === null) {
      this.#closed = true;
      this.emit('close', { reason: error.uri, error });
      return;
    }
    this.emit('disconnect', { reason: error.uri, error, willRetry: true, delayMs });
    this.#nextUrl(); // the node we were on is going or gone: try another first
    this.#retryTimer = setTimeout(() => {
      if (!this.#closed) this.#dial(null);
    }, delayMs);
  }

  /** Dial the next of several nodes. */
  #nextUrl() {
    this.url = this.urls[(this.urls.indexOf(this.url) + 1) % this.urls.length];
  }

  /** Exponential backoff with jitter (a random cut of up to `jitter` of the delay); null = give up. */
  #nextDelay() {
    const p = this.reconnectPolicy;
    this.#attempt += 1;
    if (this.#attempt > p.maxAttempts) return null;
    const base = Math.min(p.maxDelayMs, p.initialDelayMs * p.factor ** (this.#attempt - 1));
    return Math.round(base * (1 - p.jitter * Math.random()));
  }

  // -- heartbeat ----------------------------------------------------------------------------------
  /** Ping when idle for a third of heartbeat_timeout_s, so the router never sees a silent session. */
  #startHeartbeat() {
    this.#stopHeartbeat();
    const timeoutS = this.heartbeatTimeoutS;
    if (!this.heartbeatEnabled || !timeoutS) return;
    const idleMs = (timeoutS * 1000) / 3;
    this.#heartbeatTimer = setInterval(() => {
      if (this.#session && Date.now() - this.#lastActivity >= idleMs) {
        this.ping().catch((err) => this.emit('error', err));
      }
    }, Math.max(100, idleMs / 4));
    this.#heartbeatTimer.unref?.();
  }

  #stopHeartbeat() {
    clearInterval(this.#heartbeatTimer);
    this.#heartbeatTimer = null;
  }
}

export { MicsError };
