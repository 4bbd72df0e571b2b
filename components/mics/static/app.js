// The MICS web chat demo: the SDK's showcase. Signs in to the `demo` tenant (token `demo-<name>`),
// shows who is online (live presence watches), chats 1:1 and in groups, sends delivered/read
// receipts, shows who is typing, replies to, edits and recalls your own messages, @mentions in
// groups, lists your devices, lists the tenant's AI agents (1:1 with one, or @mention it in a group)
// and shows their answers as they stream in, and keeps its history plus the inbox position (last
// seq, epoch) in localStorage so a reload catches up through sync.
import { MicsClient, RejectedError, applyChange } from './sdk/index.js';

const TENANT = 'demo';
const KNOWN_PEOPLE = ['alice', 'bob', 'carol', 'dave'];
const GROUPS = ['lobby', 'team'];
const KEEP_PER_CONVERSATION = 200;
const TYPING_SHOWN_MS = 5000;
const RECALL_WINDOW_MS = 120_000; // the demo tenant's recall_window_s (the default)
const $ = (id) => document.getElementById(id);

const state = {
  client: null,
  me: null,
  device: null,
  people: new Set(KNOWN_PEOPLE),
  presence: {},
  // key "u:<user>" | "g:<group>" -> [{msg_id, from, text, ts, mine, status, system, reply_to, mentions, recalled, edited}]
  conversations: {},
  unread: {},
  current: null,
  watching: new Set(), // users whose presence is watched
  typing: {}, // conversation key -> {user, until}
  replyTo: null, // the entry the composer replies to
  editing: null, // the entry of mine the composer edits
  agents: [], // [{agent_id, name, description?}] from mics.agent.list
  agentIds: new Set(), // those, and any sender of an agent's stream (known before the list is)
};
const isAgent = (id) => state.agentIds.has(id);

// -- storage: history and inbox position per tenant/user/device ------------------------------------
const storeKey = () => `mics-demo:${TENANT}:${state.me}:${state.device}`;

function load() {
  try {
    return JSON.parse(localStorage.getItem(storeKey())) || {};
  } catch {
    return {};
  }
}

let saveTimer = null;
function save() {
  clearTimeout(saveTimer);
  saveTimer = setTimeout(() => {
    if (!state.client) return;
    const conversations = {};
    for (const [key, list] of Object.entries(state.conversations)) conversations[key] = list.slice(-KEEP_PER_CONVERSATION);
    localStorage.setItem(storeKey(), JSON.stringify({ position: state.client.position, conversations }));
  }, 100);
}

// -- signing in and out --------------------------------------------------------------------------
function defaultDevice() {
  let device = sessionStorage.getItem('mics-demo:device');
  if (!device) {
    device = `web-${Math.random().toString(36).slice(2, 6)}`;
    sessionStorage.setItem('mics-demo:device', device);
  }
  return device;
}

async function signIn(user, device) {
  $('login-error').textContent = '';
  $('login-button').disabled = true;
  state.me = user;
  state.device = device;
  const saved = load();
  state.conversations = saved.conversations || {};
  state.unread = {};
  for (const list of Object.values(state.conversations)) {
    for (const m of list) {
      if (m.agent) state.agentIds.add(m.from);
      else if (!m.mine && m.from) state.people.add(m.from);
    }
  }
  try {
    const url = `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
    // handlers go in before open(), so messages caught up by the first sync are shown too
    const client = new MicsClient({ url, tenant: TENANT, token: `demo-${user}`, deviceId: device, position: saved.position, groups: true });
    state.client = client;
    wire(client);
    await client.open();
  } catch (err) {
    state.client = null;
    state.me = null;
    $('login-error').textContent = `${err.name}: ${err.message}${err.code ? ` (code ${err.code})` : ''}`;
    $('login-button').disabled = false;
    return;
  }
  sessionStorage.setItem('mics-demo:login', JSON.stringify({ user, device }));
  $('login').hidden = true;
  $('chat').hidden = false;
  $('me-user').textContent = user;
  $('me-device').textContent = device;
  setStatus('online');
  state.agents = await state.client.agents().catch(() => []);
  for (const a of state.agents) state.agentIds.add(a.agent_id);
  open(state.current && state.conversations[state.current] ? state.current : null);
  state.watching.clear();
  watchPeople();
  save();
}

async function signOut() {
  sessionStorage.removeItem('mics-demo:login');
  const client = state.client;
  state.client = null;
  state.me = null;
  await client?.close();
  $('chat').hidden = true;
  $('login').hidden = false;
  $('login-button').disabled = false;
  setStatus('offline');
}

function setStatus(text, stateName = text) {
  $('status').textContent = text;
  $('status').dataset.state = stateName;
}

// -- SDK events ----------------------------------------------------------------------------------
function wire(client) {
  client.onMessage(onMessage);
  client.onReceipt(onReceipt);
  client.onRecall(onChange);
  client.onEdit(onChange);
  client.onTyping(onTyping);
  client.onAgentStream(onAgentStream);
  client.on('position', save);
  client.on('connect', () => setStatus('online'));
  client.on('disconnect', ({ error, delayMs }) => setStatus(`reconnecting in ${Math.ceil(delayMs / 1000)} s (${error.uri})`, 'reconnecting'));
  client.on('close', ({ error }) => {
    if (error) setStatus(`closed: ${error.uri}`, 'offline');
  });
  client.on('gap', () => addSystem(state.current, 'Some messages expired before this device caught up.'));
}

const textOf = (body) => (typeof body === 'object' && body !== null ? (body.text ?? JSON.stringify(body)) : String(body ?? ''));

/** What an agent's stream shows: its text as it grows, then its final message (or why there is none). */
function agentText(stream) {
  const error = stream.error;
  if (error) return `${stream.agentId} could not answer: ${error.message} (${error.code})`;
  return stream.final ? textOf(stream.final.body) : stream.text;
}

/**
 * An agent's answer starts: one bubble that grows with each chunk and becomes the final message (same
 * msg_id, so onMessage does not show it twice). A device that missed the chunks gets the final only.
 */
function onAgentStream(stream) {
  let entry = null;
  stream.on((m) => {
    state.agentIds.add(m.from_user_id);
    const key = m.group_id ? `g:${m.group_id}` : `u:${m.from_user_id}`;
    if (!entry) {
      entry = { msg_id: `stream:${stream.streamId}`, from: m.from_user_id, text: '', ts: m.ts, agent: true,
        streaming: true, stream_id: stream.streamId, reply_to: m.reply_to };
      if (!add(key, entry)) return;
    }
    entry.text = agentText(stream);
    if (stream.final) {
      Object.assign(entry, { msg_id: stream.final.msg_id, streaming: false, system: Boolean(stream.error),
        reply_to: stream.final.reply_to, ts: stream.final.ts });
    }
    if (key === state.current) renderMessages();
    save();
  });
}

function onMessage(m) {
  const text = textOf(m.body);
  if (m.stream_id) state.agentIds.add(m.from_user_id);
  if (m.stream_id && state.conversations[m.group_id ? `g:${m.group_id}` : `u:${m.from_user_id}`]
    ?.some((e) => e.msg_id === m.msg_id)) return; // an agent's final message, already shown by its stream
  if (m.type === 'system') {
    const key = m.group_id ? `g:${m.group_id}` : `u:${m.from_user_id}`;
    const body = m.body && (m.body.added || m.body.removed)
      ? `members changed: +${(m.body.added || []).join(', ') || '–'} −${(m.body.removed || []).join(', ') || '–'}`
      : text;
    add(key, { msg_id: m.msg_id, from: m.from_user_id, text: body, ts: m.ts, system: true });
    return;
  }
  const mine = m.from_user_id === state.me; // a copy of what I sent from another device
  let key;
  if (m.type === 'group_chat') key = `g:${m.group_id}`;
  else key = `u:${mine ? m.to_user_id : m.from_user_id}`;
  const agent = isAgent(m.from_user_id);
  if (!mine && !agent) state.people.add(m.from_user_id);
  delete state.typing[key]; // the message they were typing came
  const added = add(key, {
    msg_id: m.msg_id, from: m.from_user_id, text, ts: m.ts, mine, status: mine ? 'sent' : null, agent,
    reply_to: m.reply_to, mentions: m.mentions, recalled: Boolean(m.recalled), edited: Boolean(m.edited_at),
  });
  if (added && !mine && !agent && m.type === 'chat') {
    const kind = key === state.current && document.visibilityState === 'visible' ? 'read' : 'delivered';
    state.client.receipt(m.from_user_id, [m.msg_id], kind).catch(() => {});
  }
  renderPeople();
  watchPeople();
}

/** A recall or an edit of an earlier message: change the entry where it is shown. */
function onChange(m) {
  for (const list of Object.values(state.conversations)) {
    const index = list.findIndex((e) => e.msg_id === m.ref_msg_id);
    if (index < 0) continue;
    const entry = list[index];
    const changed = applyChange({ ...entry, body: entry.text, edited_at: entry.editedAt ?? 0 }, m);
    list[index] = {
      ...entry, text: changed.recalled ? '' : textOf(changed.body), recalled: Boolean(changed.recalled),
      edited: Boolean(changed.edited_at), editedAt: changed.edited_at,
    };
    renderMessages();
    save();
  }
}

function onTyping(m) {
  if (m.from_user_id === state.me) return;
  const key = m.group_id ? `g:${m.group_id}` : `u:${m.from_user_id}`;
  if (m.body.typing) state.typing[key] = { user: m.from_user_id, until: Date.now() + TYPING_SHOWN_MS };
  else delete state.typing[key];
  renderTyping();
}

const RANK = { sent: 0, delivered: 1, read: 2 };
function onReceipt(m) {
  if (m.from_user_id === state.me) return; // my other device's receipt copy
  const ids = new Set(m.body.msg_ids);
  for (const list of Object.values(state.conversations)) {
    for (const entry of list) {
      if (entry.mine && ids.has(entry.msg_id) && RANK[m.body.kind] > (RANK[entry.status] ?? -1)) entry.status = m.body.kind;
    }
  }
  renderMessages();
  save();
}

// -- conversations -------------------------------------------------------------------------------
function add(key, entry) {
  const list = (state.conversations[key] ||= []);
  if (list.some((e) => e.msg_id === entry.msg_id)) return false;
  list.push(entry);
  if (key !== state.current && !entry.mine) state.unread[key] = (state.unread[key] || 0) + 1;
  if (key === state.current) renderMessages();
  else renderPeople();
  save();
  return true;
}

function addSystem(key, text) {
  if (key) add(key, { msg_id: `local-${Date.now()}`, text, ts: Date.now(), system: true });
}

function open(key) {
  state.current = key;
  delete state.unread[key];
  const [kind, name] = key ? key.split(':') : [];
  $('conv-title').textContent = !key ? 'Pick someone to chat with' : kind === 'g' ? `# ${name}` : `Chat with ${name}`;
  $('text').disabled = $('send').disabled = !key;
  $('text').placeholder = key && isAgent(name) ? `Ask ${name}…` : 'Write a message…';
  $('send-error').textContent = '';
  setComposer(null, null);
  renderPeople();
  renderMessages();
  renderTyping();
  if (key && kind === 'u' && !isAgent(name)) markRead(name, key);
  if (key) $('text').focus();
}

function markRead(user, key) {
  const unread = (state.conversations[key] || []).filter((e) => !e.mine && !e.system && !e.readSent).map((e) => e.msg_id);
  if (!unread.length || !state.client) return;
  for (const e of state.conversations[key]) if (unread.includes(e.msg_id)) e.readSent = true;
  state.client.receipt(user, unread, 'read').catch(() => {});
  save();
}

/** @names in a group message that are people we know of, or agents (the router checks nothing more). */
function mentionsIn(text) {
  const names = [...text.matchAll(/@([A-Za-z0-9_-]{1,32})/g)].map((match) => match[1]);
  return [...new Set(names)].filter((n) => n !== state.me && (state.people.has(n) || isAgent(n)));
}

async function sendCurrent(text) {
  const [kind, name] = state.current.split(':');
  $('send-error').textContent = '';
  const { replyTo, editing } = state;
  setComposer(null, null);
  try {
    if (editing) {
      await state.client.edit(editing.msg_id, { text });
      onChange({ type: 'edit', ref_msg_id: editing.msg_id, body: { text }, ts: Date.now() });
      return;
    }
    const options = replyTo ? { replyTo: replyTo.msg_id } : {};
    const mentions = kind === 'g' ? mentionsIn(text) : [];
    const ack = kind === 'g'
      ? await state.client.sendGroup(name, { text }, { ...options, mentions })
      : await state.client.send(name, { text }, options);
    if (kind === 'u' && !isAgent(name)) state.client.typing({ toUserId: name }, false).catch(() => {});
    const refused = (ack.agents || []).find((a) => a.status === 'rate_limited');
    if (refused) $('send-error').textContent = `${refused.agent_id} is busy (too many questions a second): try again`;
    const status = kind === 'g' || isAgent(name) ? null : ack.delivered === 'online' ? 'sent' : 'sent (offline: held)';
    add(state.current, { msg_id: ack.msg_id, from: state.me, text, ts: ack.ts, mine: true, status,
      reply_to: replyTo?.msg_id, mentions });
  } catch (err) {
    const why = err instanceof RejectedError ? `rejected by the tenant: ${err.kwargs.reason}` : `${err.name}: ${err.message}`;
    $('send-error').textContent = why;
  }
}

async function recallEntry(entry) {
  $('send-error').textContent = '';
  try {
    await state.client.recall(entry.msg_id);
    onChange({ type: 'recall', ref_msg_id: entry.msg_id, body: null, ts: Date.now() });
  } catch (err) {
    $('send-error').textContent = `${err.name}: ${err.message}`;
  }
}

/** The composer replies to `replyTo`, or edits `editing` (one of my messages), or neither. */
function setComposer(replyTo, editing) {
  state.replyTo = replyTo;
  state.editing = editing;
  const bar = $('composer-mode');
  const entry = replyTo || editing;
  bar.hidden = !entry;
  bar.dataset.mode = replyTo ? 'reply' : editing ? 'edit' : '';
  $('composer-mode-text').textContent = entry ? `${replyTo ? 'Replying to' : 'Editing'}: ${entry.text}` : '';
  if (editing) $('text').value = editing.text;
  if (entry) $('text').focus();
}

// -- presence and devices: live watches (mics.presence.<user_id>), no polling ------------------------
function watchPeople() {
  const client = state.client;
  if (!client) return;
  for (const name of [state.me, ...state.people]) {
    if (state.watching.has(name) || state.watching.size >= 100 || isAgent(name)) continue;
    state.watching.add(name);
    client.watchPresence(name, ({ user_id: user, online, devices }) => {
      state.presence[user] = { online, devices };
      renderPeople();
    }).catch(() => state.watching.delete(name));
  }
}

function renderTyping() {
  const now = Date.now();
  const shown = state.typing[state.current];
  const active = shown && shown.until > now;
  $('typing').textContent = active ? `${shown.user} is typing…` : '';
  $('typing').dataset.user = active ? shown.user : '';
}

// -- rendering -----------------------------------------------------------------------------------
function li(text, attrs = {}) {
  const el = document.createElement('li');
  el.textContent = text;
  for (const [k, v] of Object.entries(attrs)) el.dataset[k] = v;
  return el;
}

/**
 * Update a list in place: items keep their <li> (so clicks never land on a replaced node);
 * an item's content is rebuilt only when its signature changes.
 */
function syncList(ul, items) {
  const existing = new Map([...ul.children].map((el) => [el.dataset.key, el]));
  items.forEach((item, index) => {
    let el = existing.get(item.key);
    existing.delete(item.key);
    if (!el) {
      el = document.createElement('li');
      el.dataset.key = item.key;
    }
    if (el.dataset.sig !== item.sig) {
      el.dataset.sig = item.sig;
      el.replaceChildren(...item.content());
      for (const [k, v] of Object.entries(item.data || {})) el.dataset[k] = v;
      el.classList.toggle('active', Boolean(item.active));
      el.onclick = item.onclick || null;
    }
    if (ul.children[index] !== el) ul.insertBefore(el, ul.children[index] || null);
  });
  for (const el of existing.values()) el.remove();
}

function badge(count) {
  return count ? [Object.assign(document.createElement('span'), { className: 'badge', textContent: count })] : [];
}

function renderPeople() {
  const people = [...state.people].filter((p) => p !== state.me && !isAgent(p)).sort();
  syncList($('people'), people.map((name) => {
    const key = `u:${name}`;
    const online = Boolean(state.presence[name]?.online);
    const unread = state.unread[key] || 0;
    const active = key === state.current;
    return {
      key, active, sig: `${online}|${unread}|${active}`, data: { user: name, online: online ? 'yes' : 'no' },
      onclick: () => open(key),
      content: () => [Object.assign(document.createElement('span'), { className: `dot${online ? ' on' : ''}` }), name, ...badge(unread)],
    };
  }));
  syncList($('groups'), GROUPS.map((g) => {
    const key = `g:${g}`;
    const unread = state.unread[key] || 0;
    const active = key === state.current;
    return {
      key, active, sig: `${unread}|${active}`, data: { group: g }, onclick: () => open(key),
      content: () => [`# ${g}`, ...badge(unread)],
    };
  }));
  syncList($('agents'), state.agents.map((a) => {
    const key = `u:${a.agent_id}`;
    const unread = state.unread[key] || 0;
    const active = key === state.current;
    return {
      key, active, sig: `${unread}|${active}`, data: { agent: a.agent_id }, onclick: () => open(key),
      content: () => {
        const item = [span('agent-mark', 'AI'), a.name, ...badge(unread)];
        if (a.description) item.push(span('desc', a.description));
        return item;
      },
    };
  }));
  const devices = state.presence[state.me]?.devices || [state.device];
  syncList($('devices'), devices.map((d) => ({
    key: d, sig: d, data: { device: d }, content: () => [d === state.device ? `${d} (this tab)` : d],
  })));
}

function span(className, text) {
  return Object.assign(document.createElement('span'), { className, textContent: text });
}

function action(name, label, onclick) {
  return Object.assign(document.createElement('button'), { className: `act ${name}`, textContent: label, type: 'button', onclick });
}

function renderMessages() {
  const list = $('messages');
  list.replaceChildren();
  const entries = state.conversations[state.current] || [];
  const byId = new Map(entries.map((e) => [e.msg_id, e]));
  for (const m of entries) {
    const item = li('', { msgId: m.msg_id });
    item.className = [m.system ? 'system' : m.mine ? 'mine' : '', m.recalled ? 'recalled' : '',
      m.mentions?.includes(state.me) ? 'mentions-me' : '', m.agent ? 'agent' : '', m.streaming ? 'streaming' : '',
    ].filter(Boolean).join(' ');
    if (m.stream_id) item.dataset.streamId = m.stream_id;
    if (m.reply_to) {
      const quoted = byId.get(m.reply_to);
      item.append(span('quote', quoted ? (quoted.recalled ? 'message recalled' : `${quoted.from}: ${quoted.text}`) : 'an earlier message'));
    }
    const from = state.current?.startsWith('g:') && !m.mine && !m.system ? `${m.from}: ` : '';
    item.append(span('text', m.recalled ? 'message recalled' : `${from}${m.text}`));
    if (m.mine && m.status) item.dataset.status = m.status;
    if (!m.system && !m.streaming) {
      const meta = span('meta', new Date(m.ts).toLocaleTimeString() + (m.edited && !m.recalled ? ' · edited' : '')
        + (m.mine && m.status ? ` · ${m.status}` : ''));
      if (!m.recalled) {
        meta.append(action('reply', 'reply', () => setComposer(m, null)));
        if (m.mine && Date.now() - m.ts < RECALL_WINDOW_MS) {
          meta.append(action('edit', 'edit', () => setComposer(null, m)), action('recall', 'recall', () => recallEntry(m)));
        }
      }
      item.append(meta);
    }
    list.append(item);
  }
  list.scrollTop = list.scrollHeight;
  if (state.current?.startsWith('u:') && !isAgent(state.current.slice(2))) markRead(state.current.slice(2), state.current);
}

// -- page wiring -----------------------------------------------------------------------------------
$('login-device').value = defaultDevice();
$('login-form').onsubmit = (e) => {
  e.preventDefault();
  signIn($('login-user').value.trim(), $('login-device').value.trim());
};
$('logout').onclick = () => signOut();
$('composer').onsubmit = (e) => {
  e.preventDefault();
  const text = $('text').value.trim();
  if (!text || !state.current) return;
  $('text').value = '';
  sendCurrent(text);
};
$('text').oninput = () => {
  if (!state.current || !state.client || state.editing || !$('text').value) return;
  const [kind, name] = state.current.split(':');
  if (isAgent(name)) return;
  state.client.typing(kind === 'g' ? { groupId: name } : { toUserId: name }).catch(() => {});
};
$('composer-cancel').onclick = () => {
  if (state.editing) $('text').value = '';
  setComposer(null, null);
};
setInterval(renderTyping, 1000); // "is typing…" fades when no new signal came
$('add-person').onsubmit = (e) => {
  e.preventDefault();
  const name = $('add-person-name').value.trim();
  if (!name) return;
  state.people.add(name);
  $('add-person-name').value = '';
  open(`u:${name}`);
  watchPeople();
};
document.addEventListener('visibilitychange', () => {
  const name = state.current?.startsWith('u:') ? state.current.slice(2) : null;
  if (document.visibilityState === 'visible' && name && !isAgent(name)) markRead(name, state.current);
});

const remembered = JSON.parse(sessionStorage.getItem('mics-demo:login') || 'null');
if (remembered) {
  $('login-user').value = remembered.user;
  $('login-device').value = remembered.device;
  signIn(remembered.user, remembered.device);
}
window.micsDemo = state; // for the curious (and the browser test)
