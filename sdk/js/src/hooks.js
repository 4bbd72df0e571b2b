// The tenant side of MICS in Node (protocol.md sections 5-7 and 12): a backend WAMP session that serves
// the hooks, agents and the backend procedures, and a signed HTTP hook server on node:http.
// HTTP hook bodies are JSON or, for tenants with `hook_encoding: "protobuf"`, protobuf
// (protos/mics/v1/hooks.proto); the server answers in the encoding of the request.
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import protobuf from 'protobufjs/light.js';
import { AGENT_PREFIX, streamAgent, wampAgent } from './agents.js';
import autobahn from './autobahn.js';
import { Emitter } from './emitter.js';
import { errorForUri, fromWampError, InvalidTokenError, MicsError } from './errors.js';

export const HOOK_PROCEDURES = {
  auth: 'mics.hook.auth',
  checkMessage: 'mics.hook.check_message',
  checkMessages: 'mics.hook.check_messages',
  groupMembers: 'mics.hook.group_members',
};
export const HOOK_PATHS = { '/auth': 'auth', '/check-message': 'checkMessage', '/check-messages': 'checkMessages',
  '/get-group-members': 'groupMembers' };
export const MAX_SKEW_MS = 5 * 60 * 1000;
/** Of the router's timeout: a batch is answered with what is checked by then, in time. */
export const DEADLINE_SHARE = 0.8;
const MAX_BODY_BYTES = 4 * 1024 * 1024;

/** Throw from an auth hook to refuse the token (WAMP: mics.error.invalid_token; HTTP: 401). */
export class HookRejection extends InvalidTokenError {}

// -- WAMP backend --------------------------------------------------------------------------------
/**
 * A tenant backend session (authid `backend` or `backend-<name>`, WAMP-CRA with the tenant secret).
 * Pass hook handlers as `hooks: {auth, checkMessage, groupMembers}`; each gets the input fields as one
 * object and returns the reply object (or a Promise of it). Batched checks (tenant config
 * `hook_batch_max` > 1) are answered through `checkMessage` (see `checkEach`) unless you give
 * `checkMessages`. `agents: {<agent_id>: fn}` serves AI agents (./agents.js) as
 * `mics.agent.<agent_id>`. Re-registers everything after a reconnect.
 */
export class TenantBackend extends Emitter {
  // msgpack by default: the router decodes every hook reply, and large member lists cost it
  // ~15x more as JSON (Autobahn's JSON decoder is pure Python) - see docs/performance.md
  constructor({ url, tenant, secret, authid = 'backend', hooks = {}, agents = {}, serializer = 'msgpack' } = {}) {
    super();
    this.url = url;
    this.tenant = tenant;
    this.authid = authid;
    this.hooks = hooks;
    this.agents = agents;
    this.serializer = serializer;
    this.session = null;
    this.#secret = secret;
  }

  #secret;
  #connection = null;
  #procedures = new Map();
  #subscriptions = new Map();
  /** A hook threw something other than a MicsError: the router gets a failure; we report it. */
  #crashed = (err) => {
    if (!this.emit('error', err)) console.error('mics hook failed:', err);
  };

  /** Join (retrying while the router is unreachable or restarts); resolves once the hooks are registered. */
  start() {
    return new Promise((resolve, reject) => {
      let started = false;
      const connection = new autobahn.Connection({
        url: this.url,
        realm: this.tenant,
        authmethods: ['wampcra'],
        authid: this.authid,
        onchallenge: (session, method, extra) => {
          const key = extra.salt
            ? autobahn.auth_cra.derive_key(this.#secret, extra.salt, extra.iterations, extra.keylen)
            : this.#secret;
          return autobahn.auth_cra.sign(key, extra.challenge);
        },
        serializers: [
          this.serializer === 'msgpack'
            ? new autobahn.serializer.MsgpackSerializer()
            : new autobahn.serializer.JSONSerializer(),
        ],
        on_user_error: (err, context) => {
          if (!(err instanceof autobahn.Error)) console.error(context, err); // hook errors are answered, not logged
        },
        max_retries: -1,
        initial_retry_delay: 0.5,
        max_retry_delay: 10,
      });
      this.#connection = connection;
      connection.onopen = async (session) => {
        this.session = session;
        try {
          for (const [name, procedure] of Object.entries(HOOK_PROCEDURES)) {
            const handler = hookHandler(this.hooks, name, this.#crashed);
            if (handler) await session.register(procedure, wampEndpoint(handler, this.#crashed));
          }
          for (const [agentId, fn] of Object.entries(this.agents)) {
            await session.register(AGENT_PREFIX + agentId, wampAgent(fn, this.#crashed));
          }
          for (const [procedure, fn] of this.#procedures) {
            await session.register(procedure, wampEndpoint(fn, this.#crashed));
          }
          for (const [topic, fn] of this.#subscriptions) await session.subscribe(topic, (a, kw) => fn(kw || {}));
          started = true;
          this.emit('ready', session);
          resolve(this);
        } catch (err) {
          reject(fromWampError(err));
        }
      };
      connection.onclose = (reason, details) => {
        this.session = null;
        const error = details?.reason ? fromWampError({ error: details.reason, args: [details.message] }) : null;
        if (!started && details?.reason) {
          reject(error);
          return true; // a refused join (bad secret, unknown tenant) will not get better
        }
        this.emit('disconnect', { reason, error });
        return false;
      };
      connection.open();
    });
  }

  async stop() {
    const connection = this.#connection;
    this.#connection = null;
    if (connection) {
      try {
        connection.close('wamp.close.normal', 'backend stopped');
      } catch {
        // already closed
      }
    }
  }

  /** Call a procedure in the tenant realm with kwargs; resolves with its one result. */
  async call(procedure, kwargs = {}) {
    if (!this.session) throw new MicsError('backend not connected', { uri: 'mics.client.not_connected' });
    try {
      return await this.session.call(procedure, [], kwargs);
    } catch (err) {
      throw fromWampError(err);
    }
  }

  /** Serve a tenant procedure (`tenant.*`) to users: fn(kwargs, {callerAuthid, caller}) -> result. */
  async register(procedure, fn) {
    this.#procedures.set(procedure, fn);
    if (this.session) await this.session.register(procedure, wampEndpoint(fn, this.#crashed));
  }

  /** Subscribe to a tenant-realm topic, e.g. `mics.event.single_chat_msg` (wamp event sink). */
  async subscribe(topic, fn) {
    this.#subscriptions.set(topic, fn);
    if (this.session) await this.session.subscribe(topic, (a, kw) => fn(kw || {}));
  }

  /** Publish a tenant topic (`tenant.*`) to users. */
  publish(topic, kwargs = {}) {
    if (!this.session) throw new MicsError('backend not connected', { uri: 'mics.client.not_connected' });
    this.session.publish(topic, [], kwargs);
  }

  /** A system message to a user (`type: system`), sent as `fromUserId`. */
  sendMessage(toUserId, body, { fromUserId, clientMsgId, contentType } = {}) {
    return this.call('mics.message.send', compact({ to_user_id: toUserId, body, from_user_id: fromUserId,
      client_msg_id: clientMsgId, content_type: contentType }));
  }

  sendGroup(groupId, body, { fromUserId, clientMsgId, contentType } = {}) {
    return this.call('mics.group.send', compact({ group_id: groupId, body, from_user_id: fromUserId,
      client_msg_id: clientMsgId, content_type: contentType }));
  }

  listSessions(userId) {
    return this.call('mics.session.list', compact({ user_id: userId }));
  }

  kick(userId, deviceId) {
    return this.call('mics.session.kick', compact({ user_id: userId, device_id: deviceId }));
  }

  /** Report a membership change: emits GROUP_MEMBER_CHANGE and tells the group's online members. */
  membersChanged(groupId, { added = [], removed = [] } = {}) {
    return this.call('mics.group.members_changed', { group_id: groupId, added, removed });
  }
}

/** The handler for one hook: the batched check falls back to `checkMessage`, message by message. */
function hookHandler(hooks, name, onError) {
  if (name === 'checkMessages' && !hooks.checkMessages && hooks.checkMessage) {
    return checkEach(hooks.checkMessage, onError);
  }
  return hooks[name];
}

/** A check reply -> `{allow, reason?}`, or null when it is none (the router then lets the message through). */
function verdictOf(value) {
  if (typeof value === 'boolean') return { allow: value };
  if (value && typeof value.allow === 'boolean') return value.reason ? { allow: value.allow, reason: String(value.reason) } : { allow: value.allow };
  return null;
}

/**
 * A batched-check handler (`{messages, timeout_ms}` -> `{verdicts}`) from a single-message `checkMessage`:
 * every message is checked at once; one whose check throws, or is not done when 80% of `timeout_ms`
 * (how long the router waits) has passed, gets `null`: no verdict, so the router lets it through as
 * when the hook fails, and the others keep theirs.
 */
export function checkEach(checkMessage, onError) {
  return async ({ messages = [], timeout_ms: timeoutMs } = {}, context) => {
    const verdicts = messages.map(() => null);
    const all = Promise.all(messages.map(async (message, i) => {
      try {
        verdicts[i] = verdictOf(await checkMessage(message, context));
      } catch (err) {
        onError?.(err);
      }
    }));
    let timer;
    const deadline = timeoutMs > 0 ? new Promise((resolve) => { timer = setTimeout(resolve, timeoutMs * DEADLINE_SHARE); }) : null;
    await (deadline ? Promise.race([all, deadline]) : all);
    clearTimeout(timer);
    return { verdicts: [...verdicts] }; // late answers change nothing any more
  };
}

function compact(obj) {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined && v !== null));
}

/** Adapt fn(kwargs, caller) to an autobahn endpoint; errors become WAMP errors the router understands. */
function wampEndpoint(fn, crashed) {
  return async (args, kwargs, details) => {
    const caller = { caller: details?.caller, callerAuthid: details?.caller_authid };
    try {
      return await fn({ ...(kwargs || {}) }, caller);
    } catch (err) {
      if (err instanceof MicsError) throw new autobahn.Error(err.uri, [err.message], { code: err.code });
      crashed(err);
      throw new autobahn.Error('tenant.error.hook_failed', ['the hook failed']);
    }
  };
}

// -- HTTP hook signatures -----------------------------------------------------------------------------
/** Lowercase hex HMAC-SHA256(UTF-8 secret, timestamp + "." + nonce + "." + raw body). */
/**
 * Join the control realm `mics.control` as `admin` (WAMP-CRA with the admin secret): the admin API
 * (`mics.admin.tenant.upsert`, ...). Resolves with the session; `session.connection.close()` ends it.
 */
export function connectAdmin({ url, secret }) {
  return new Promise((resolve, reject) => {
    const connection = new autobahn.Connection({
      url,
      realm: 'mics.control',
      authmethods: ['wampcra'],
      authid: 'admin',
      onchallenge: (session, method, extra) => autobahn.auth_cra.sign(secret, extra.challenge),
      max_retries: 0,
      retry_if_unreachable: false,
    });
    connection.onopen = (session) => {
      session.connection = connection;
      resolve(session);
    };
    connection.onclose = (reason, details) => {
      reject(new Error(`admin join failed: ${details?.reason || reason} ${details?.message || ''}`.trim()));
      return true;
    };
    connection.open();
  });
}

export function signature(secret, timestamp, nonce, body) {
  const mac = createHmac('sha256', Buffer.from(secret, 'utf8'));
  mac.update(`${timestamp}.${nonce}.`);
  mac.update(typeof body === 'string' ? Buffer.from(body, 'utf8') : body);
  return mac.digest('hex');
}

/** The four X-Mics-* headers for one request (what the router sends; handy in tests). */
export function signHeaders(tenantId, secret, body, nowMs = Date.now()) {
  const timestamp = String(Math.trunc(nowMs));
  const nonce = randomBytes(12).toString('hex');
  return {
    'X-Mics-Tenant': tenantId,
    'X-Mics-Timestamp': timestamp,
    'X-Mics-Nonce': nonce,
    'X-Mics-Signature': signature(secret, timestamp, nonce, body),
  };
}

export class SignatureError extends Error {
  name = 'SignatureError';
}

/** Checks signed requests: refuses a timestamp > 5 min off, a wrong signature, or a nonce seen before. */
export class SignatureVerifier {
  constructor(secret, { clock = Date.now, maxNonces = 100_000, maxSkewMs = MAX_SKEW_MS } = {}) {
    this.secret = secret;
    this.clock = clock;
    this.maxNonces = maxNonces;
    this.maxSkewMs = maxSkewMs;
    this.nonces = new Map(); // nonce -> time seen (insertion order = age)
  }

  /** `headers` as node gives them (lowercase keys) or any casing; throws SignatureError. */
  verify(headers, body) {
    const lower = Object.fromEntries(Object.entries(headers).map(([k, v]) => [k.toLowerCase(), v]));
    const timestamp = lower['x-mics-timestamp'];
    const nonce = lower['x-mics-nonce'];
    const given = lower['x-mics-signature'];
    if (!timestamp || !nonce || !given) throw new SignatureError('missing signature headers');
    if (!/^\d+$/.test(timestamp)) throw new SignatureError('bad timestamp');
    const now = this.clock();
    if (Math.abs(now - Number(timestamp)) > this.maxSkewMs) throw new SignatureError('timestamp outside the 5 minute window');
    const expected = Buffer.from(signature(this.secret, timestamp, nonce, body), 'utf8');
    const actual = Buffer.from(String(given).toLowerCase(), 'utf8');
    if (expected.length !== actual.length || !timingSafeEqual(expected, actual)) {
      throw new SignatureError('signature mismatch');
    }
    this.#forgetOld(now);
    if (this.nonces.has(nonce)) throw new SignatureError('nonce seen before');
    this.nonces.set(nonce, now);
    if (this.nonces.size > this.maxNonces) this.nonces.delete(this.nonces.keys().next().value);
  }

  #forgetOld(now) {
    const horizon = now - 2 * this.maxSkewMs;
    for (const [nonce, seen] of this.nonces) {
      if (seen >= horizon) break;
      this.nonces.delete(nonce);
    }
  }
}

// -- HTTP hook bodies: JSON or protobuf ---------------------------------------------------------------
// The same field mapping as the Python codec (sdk/python/mics_client/hooks/codec.py), which the node
// uses: router and hook servers can never disagree on a field.
export const CONTENT_TYPES = { json: 'application/json', protobuf: 'application/x-protobuf' };
const HOOK_NAMES = { auth: 'auth', checkMessage: 'checkMessage', check_message: 'checkMessage',
  checkMessages: 'checkMessages', check_messages: 'checkMessages', groupMembers: 'groupMembers',
  group_members: 'groupMembers' };
const MESSAGE_STR_FIELDS = ['msg_id', 'type', 'tenant_id', 'from_user_id', 'from_device_id', 'to_user_id',
  'group_id', 'content_type', 'client_msg_id', 'trace_id'];
// section 11-12 fields: absent when unused (proto3 `optional`, so presence survives the round trip)
const MESSAGE_OPTIONAL_STR = ['reply_to', 'ref_msg_id', 'stream_id'];
const MESSAGE_OPTIONAL_INT = ['edited_at', 'chunk_seq'];

let protoTypes = null;
/** The mics.v1 types, from the descriptor sdk/js/scripts/gen-protos.mjs generates (loaded on first use). */
function types() {
  if (!protoTypes) {
    const root = protobuf.Root.fromJSON(JSON.parse(readFileSync(new URL('./protos.json', import.meta.url), 'utf8')));
    const t = (name) => root.lookupType(name);
    protoTypes = {
      Message: t('mics.v1.Message'),
      auth: [t('mics.v1.AuthRequest'), t('mics.v1.AuthResponse')],
      checkMessage: [t('mics.v1.CheckMessageRequest'), t('mics.v1.CheckMessageResponse')],
      checkMessages: [t('mics.v1.CheckMessagesRequest'), t('mics.v1.CheckMessagesResponse')],
      groupMembers: [t('mics.v1.GroupMembersRequest'), t('mics.v1.GroupMembersResponse')],
    };
  }
  return protoTypes;
}

function hookName(hook) {
  const name = HOOK_NAMES[hook];
  if (!name) throw new TypeError(`unknown hook ${hook}`);
  return name;
}

const isBytes = (value) => value instanceof Uint8Array; // Buffer included
const toNumber = (value) => (typeof value === 'number' ? value : value ? Number(value.toString()) : 0); // int64: Long

/** A JSON value -> google.protobuf.Value (as json_format.ParseDict does). */
function toValue(value) {
  if (value === null || value === undefined) return { nullValue: 0 };
  if (typeof value === 'boolean') return { boolValue: value };
  if (typeof value === 'number') {
    if (!Number.isFinite(value)) throw new TypeError('a JSON body cannot hold NaN or Infinity');
    return { numberValue: value };
  }
  if (typeof value === 'string') return { stringValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  if (typeof value === 'object') return { structValue: toStruct(value) };
  throw new TypeError(`not a JSON value: ${typeof value}`);
}

function toStruct(obj) {
  const fields = {};
  for (const [key, value] of Object.entries(obj)) if (value !== undefined) fields[key] = toValue(value);
  return { fields };
}

/** google.protobuf.Value -> a JSON value (as json_format.MessageToDict does; no kind = null). */
function fromValue(pb) {
  switch (pb?.kind) { // the oneof: which member the decoded Value holds
    case 'boolValue':
      return pb.boolValue;
    case 'numberValue':
      return pb.numberValue;
    case 'stringValue':
      return pb.stringValue;
    case 'listValue':
      return (pb.listValue.values || []).map(fromValue);
    case 'structValue':
      return fromStruct(pb.structValue);
    default:
      return null;
  }
}

function fromStruct(pb) {
  const out = {};
  for (const [key, value] of Object.entries(pb?.fields || {})) out[key] = fromValue(value);
  return out;
}

/** A Message object -> the fields of a mics.v1.Message (body as body_bytes for bytes, else body_json). */
export function messageToProto(message) {
  const pb = {};
  for (const name of MESSAGE_STR_FIELDS) {
    const value = message[name];
    if (value !== null && value !== undefined && value !== '') pb[name] = String(value);
  }
  if (message.seq) pb.seq = message.seq;
  if (message.ts) pb.ts = message.ts;
  if (Array.isArray(message.mentions) && message.mentions.length) pb.mentions = message.mentions.map(String);
  for (const name of [...MESSAGE_OPTIONAL_STR, ...MESSAGE_OPTIONAL_INT]) {
    if (message[name] !== null && message[name] !== undefined) pb[name] = message[name];
  }
  if (typeof message.recalled === 'boolean') pb.recalled = message.recalled;
  if (isBytes(message.body)) pb.body_bytes = message.body;
  else pb.body_json = toValue(message.body);
  return types().Message.fromObject(pb);
}

/**
 * A decoded mics.v1.Message -> the Message object hooks get: empty strings are left out (but
 * from_device_id is null), `ts` is a number, `seq` only when set, body a JSON value or a Buffer.
 */
export function messageFromProto(pb) {
  const out = {};
  for (const name of MESSAGE_STR_FIELDS) {
    if (pb[name]) out[name] = pb[name];
    else if (name === 'from_device_id') out[name] = null;
  }
  out.ts = toNumber(pb.ts);
  const seq = toNumber(pb.seq);
  if (seq) out.seq = seq;
  if (pb.mentions?.length) out.mentions = [...pb.mentions];
  const has = (name) => pb[`_${name}`] === name; // a proto3 `optional` field is a one-member oneof
  for (const name of MESSAGE_OPTIONAL_STR) if (has(name)) out[name] = pb[name];
  for (const name of MESSAGE_OPTIONAL_INT) if (has(name)) out[name] = toNumber(pb[name]);
  if (has('recalled')) out.recalled = pb.recalled;
  out.body = pb.body === 'body_bytes' ? Buffer.from(pb.body_bytes) : fromValue(pb.body_json);
  return out;
}

/** Compact UTF-8 JSON; bytes become base64 strings. */
function dumps(value) {
  return Buffer.from(
    JSON.stringify(value, function (key, v) {
      const raw = this[key];
      return isBytes(raw) ? Buffer.from(raw).toString('base64') : v;
    }),
    'utf8',
  );
}

/** Every field of a flat request, unset strings as "" (like MessageToDict with all fields). */
function allFields(type, pb) {
  return Object.fromEntries(type.fieldsArray.map((field) => [field.name, pb[field.name]]));
}

/** `encoding` of a request from its Content-Type: `protobuf` for application/x-protobuf, else `json`. */
export function encodingOf(contentType) {
  return String(contentType || '').toLowerCase().startsWith(CONTENT_TYPES.protobuf) ? 'protobuf' : 'json';
}

/** Router side (and tests): a request's fields -> [body, content type]. */
export function encodeRequest(hook, fields, encoding = 'json') {
  const name = hookName(hook);
  if (encoding !== 'protobuf') return [dumps(fields), CONTENT_TYPES.json];
  const [Request] = types()[name];
  let pb;
  if (name === 'checkMessage') pb = Request.create({ message: messageToProto(fields) });
  else if (name === 'checkMessages') {
    pb = Request.create({ messages: (fields.messages || []).map(messageToProto), timeout_ms: fields.timeout_ms || 0 });
  } else pb = Request.fromObject(fields);
  return [Buffer.from(Request.encode(pb).finish()), CONTENT_TYPES.protobuf];
}

/** Hook-server side: a request body -> the plain object the hook gets (throws on a bad body). */
export function decodeRequest(hook, body, contentType = CONTENT_TYPES.json) {
  const name = hookName(hook);
  if (encodingOf(contentType) !== 'protobuf') {
    const value = JSON.parse(Buffer.from(body).toString('utf8'));
    if (value === null || typeof value !== 'object' || Array.isArray(value)) {
      throw new TypeError('hook request body is not a JSON object');
    }
    return value;
  }
  const [Request] = types()[name];
  const pb = Request.decode(body);
  if (name === 'checkMessage') return messageFromProto(pb.message || types().Message.create());
  if (name === 'checkMessages') return { messages: (pb.messages || []).map(messageFromProto), timeout_ms: pb.timeout_ms };
  return allFields(Request, pb);
}

/** Hook-server side: the hook's reply -> [body, content type]. */
export function encodeResponse(hook, reply, encoding = 'json') {
  const name = hookName(hook);
  if (encoding !== 'protobuf') return [dumps(reply), CONTENT_TYPES.json];
  const [, Response] = types()[name];
  const r = reply || {};
  let pb;
  if (name === 'auth') {
    pb = { user_id: r.user_id ?? '', device_id: r.device_id || '' };
    if (r.config && Object.keys(r.config).length) pb.config = toStruct(r.config);
  } else if (name === 'checkMessage') {
    pb = verdictToProto(r);
  } else if (name === 'checkMessages') {
    pb = { verdicts: (r.verdicts || []).map(verdictToProto) };
  } else {
    pb = { members: Array.from(r.members || [], String) };
  }
  return [Buffer.from(Response.encode(Response.fromObject(pb)).finish()), CONTENT_TYPES.protobuf];
}

/** A verdict -> mics.v1.CheckMessageResponse fields; null (no verdict) is `failed: true`. */
function verdictToProto(verdict) {
  if (verdict == null) return { failed: true };
  return { allow: Boolean(verdict.allow), reason: verdict.reason ? String(verdict.reason) : '' };
}

const verdictFromProto = (pb) => (pb.failed ? null : { allow: pb.allow, reason: pb.reason || null });

/** Router side (and tests): a reply body -> the reply object (device_id/reason null when empty). */
export function decodeResponse(hook, body, contentType = CONTENT_TYPES.json) {
  const name = hookName(hook);
  if (encodingOf(contentType) !== 'protobuf') return JSON.parse(Buffer.from(body).toString('utf8'));
  const [, Response] = types()[name];
  const pb = Response.decode(body);
  if (name === 'auth') {
    const out = { user_id: pb.user_id, device_id: pb.device_id || null };
    if (pb.config != null) out.config = fromStruct(pb.config); // Struct numbers are doubles: whole ones are ints in JS
    return out;
  }
  if (name === 'checkMessage') return verdictFromProto(pb);
  if (name === 'checkMessages') return { verdicts: (pb.verdicts || []).map(verdictFromProto) };
  return { members: [...pb.members] };
}

// -- HTTP hook server ---------------------------------------------------------------------------------
/**
 * A node:http request handler for `POST /auth`, `/check-message`, `/check-messages` (batched checks,
 * answered through `checkMessage` unless `hooks.checkMessages` is given), `/get-group-members` (any path
 * prefix: the last segment decides). Verifies the signature, decodes the body (JSON, or protobuf when
 * the Content-Type is application/x-protobuf), calls your hook, answers in the request's encoding.
 * Status: 200 answer; 401 bad signature or auth refused (throw HookRejection); 404 unknown hook;
 * 400 bad body; 500 hook threw (the router then degrades: allow for check-message). Error bodies are JSON.
 * `agents: {<agent_id>: fn}` also answers `POST .../agents/<agent_id>` as an NDJSON stream (./agents.js).
 */
export function createHookHandler({ secret, hooks = {}, agents = {}, verifier, tenantId, onError } = {}) {
  if (typeof secret !== 'string' || !secret) throw new TypeError('createHookHandler: secret is required');
  const check = verifier || new SignatureVerifier(secret);
  return async (req, res) => {
    const reply = (status, obj) => {
      const data = JSON.stringify(obj);
      res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(data) });
      res.end(data);
    };
    const path = new URL(req.url, 'http://hook').pathname.split('/');
    const agent = path.at(-2) === 'agents' ? agents[decodeURIComponent(path.at(-1))] : undefined;
    const name = agent ? null : HOOK_PATHS['/' + path.at(-1)];
    const handler = name && hookHandler(hooks, name, onError);
    if (req.method !== 'POST' || !(agent || handler)) return reply(404, { error: 'no such hook' });
    let body;
    try {
      body = await readBody(req);
    } catch {
      return reply(413, { error: 'body too large' });
    }
    try {
      if (tenantId && req.headers['x-mics-tenant'] !== tenantId) throw new SignatureError('wrong tenant');
      check.verify(req.headers, body);
    } catch (err) {
      return reply(401, { error: err.message });
    }
    if (agent) {
      let fields;
      try {
        fields = JSON.parse(body.toString('utf8'));
      } catch {
        return reply(400, { error: 'body is not JSON' });
      }
      return streamAgent(agent, fields, req, res, onError);
    }
    const contentType = req.headers['content-type'];
    const encoding = encodingOf(contentType);
    let fields;
    try {
      fields = decodeRequest(name, body, contentType);
    } catch {
      return reply(400, { error: encoding === 'protobuf' ? 'body is not a valid protobuf request' : 'body is not JSON' });
    }
    try {
      const answer = await handler(fields, { tenantId: req.headers['x-mics-tenant'], encoding });
      const [data, type] = encodeResponse(name, answer, encoding);
      res.writeHead(200, { 'Content-Type': type, 'Content-Length': data.length });
      return res.end(data);
    } catch (err) {
      if (name === 'auth' && err instanceof MicsError && err.uri === InvalidTokenError.uri) {
        return reply(401, { error: err.message });
      }
      onError?.(err);
      return reply(500, { error: 'hook failed' });
    }
  };
}

/** An http.Server serving the hooks; `await server.listenAsync(port, host)` gives its base URL. */
export function createHookServer(options) {
  const server = createServer(createHookHandler(options));
  server.keepAliveTimeout = 120_000;
  server.listenAsync = (port = 0, host = '127.0.0.1') =>
    new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve(`http://${host}:${server.address().port}`);
      });
    });
  return server;
}

function readBody(req) {
  return new Promise((resolve, reject) => {
    const chunks = [];
    let size = 0;
    req.on('data', (chunk) => {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) {
        reject(new Error('too large'));
        req.destroy();
      } else chunks.push(chunk);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}

// -- backend HTTP API client (protocol.md section 13) ---------------------------------------------
/**
 * A client for the backend HTTP API: signed POSTs to `{baseUrl}/api/v1/{tenantId}/{action}` (the
 * hook signature, with the tenant secret), for backends that hold no WAMP session. Works against
 * any node of a cluster. A refused call throws the typed error for its URI (`RateLimitedError`, ...),
 * or a plain MicsError for HTTP-level refusals (`mics.error.bad_signature`, `mics.error.not_found`).
 */
export function createHttpClient({ baseUrl, tenantId, secret, timeoutMs = 10_000, fetch: fetchFn = globalThis.fetch }) {
  const base = String(baseUrl).replace(/\/+$/, '');
  async function call(action, fields = {}) {
    const present = Object.entries(fields).filter(([, v]) => v !== undefined && v !== null);
    const body = Buffer.from(JSON.stringify(Object.fromEntries(present)), 'utf8');
    const headers = { ...signHeaders(tenantId, secret, body), 'Content-Type': 'application/json' };
    const url = `${base}/api/v1/${encodeURIComponent(tenantId)}/${action}`;
    const response = await fetchFn(url, { method: 'POST', headers, body, signal: AbortSignal.timeout(timeoutMs) });
    const text = await response.text();
    let answer = null;
    try {
      answer = JSON.parse(text);
    } catch {
      answer = null;
    }
    if (response.ok) return answer;
    if (answer && typeof answer.error === 'string') throw errorForUri(answer.error, answer.message, answer);
    throw new MicsError(`HTTP ${response.status}`, { uri: 'mics.client.http_error', code: response.status, kwargs: {} });
  }
  const message = (fields, { clientMsgId, contentType } = {}) => ({
    ...fields, client_msg_id: clientMsgId, content_type: contentType,
  });
  return {
    call,
    send: (toUserId, body, fromUserId, opts) =>
      call('send', message({ to_user_id: toUserId, body, from_user_id: fromUserId }, opts)),
    groupSend: (groupId, body, fromUserId, opts) =>
      call('group-send', message({ group_id: groupId, body, from_user_id: fromUserId }, opts)),
    membersChanged: (groupId, { added = [], removed = [] } = {}) =>
      call('members-changed', { group_id: groupId, added, removed }),
    kick: async (userId, deviceId) => (await call('kick', { user_id: userId, device_id: deviceId })).kicked,
    sessions: async (userId) => (await call('sessions', { user_id: userId })).sessions,
    presence: (userIds) => call('presence', { user_ids: [...userIds] }),
  };
}

export { AGENT_PREFIX, NDJSON, Reply, agentRequest, runAgent, textOf } from './agents.js';
