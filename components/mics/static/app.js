// The MICS web chat demo: the SDK's showcase. Signs in to the `demo` tenant (token `demo-<name>`),
// shows who is online, chats 1:1 and in groups, sends delivered/read receipts, lists your devices,
// and keeps its history plus the inbox position (last seq, epoch) in localStorage so a reload
// catches up through sync.
import { MicsClient, RejectedError } from './sdk/index.js';

const TENANT = 'demo';
const KNOWN_PEOPLE = ['alice', 'bob', 'carol', 'dave'];
const GROUPS = ['lobby', 'team'];
const KEEP_PER_CONVERSATION = 200;
const $ = (id) => document.getElementById(id);

const state = {
  client: null,
  me: null,
  device: null,
  people: new Set(KNOWN_PEOPLE),
  presence: {},
  conversations: {}, // key "u:<user>" | "g:<group>" -> [{msg_id, from, text, ts, mine, status, system}]
  unread: {},
  current: null,
  presenceTimer: null,
};

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
    for (const m of list) if (!m.mine && m.from) state.people.add(m.from);
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
  open(state.current && state.conversations[state.current] ? state.current : null);
  refreshPresence();
  state.presenceTimer = setInterval(refreshPresence, 2000);
  save();
}

async function signOut() {
  clearInterval(state.presenceTimer);
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
  client.on('position', save);
  client.on('connect', () => setStatus('online'));
  client.on('disconnect', ({ error, delayMs }) => setStatus(`reconnecting in ${Math.ceil(delayMs / 1000)} s (${error.uri})`, 'reconnecting'));
  client.on('close', ({ error }) => {
    if (error) setStatus(`closed: ${error.uri}`, 'offline');
  });
  client.on('gap', () => addSystem(state.current, 'Some messages expired before this device caught up.'));
}

function onMessage(m) {
  const text = typeof m.body === 'object' && m.body !== null ? (m.body.text ?? JSON.stringify(m.body)) : String(m.body);
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
  if (!mine) state.people.add(m.from_user_id);
  const added = add(key, { msg_id: m.msg_id, from: m.from_user_id, text, ts: m.ts, mine, status: mine ? 'sent' : null });
  if (added && !mine && m.type === 'chat') {
    const kind = key === state.current && document.visibilityState === 'visible' ? 'read' : 'delivered';
    state.client.receipt(m.from_user_id, [m.msg_id], kind).catch(() => {});
  }
  renderPeople();
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
  $('send-error').textContent = '';
  renderPeople();
  renderMessages();
  if (key && kind === 'u') markRead(name, key);
  if (key) $('text').focus();
}

function markRead(user, key) {
  const unread = (state.conversations[key] || []).filter((e) => !e.mine && !e.system && !e.readSent).map((e) => e.msg_id);
  if (!unread.length || !state.client) return;
  for (const e of state.conversations[key]) if (unread.includes(e.msg_id)) e.readSent = true;
  state.client.receipt(user, unread, 'read').catch(() => {});
  save();
}

async function sendCurrent(text) {
  const [kind, name] = state.current.split(':');
  $('send-error').textContent = '';
  try {
    const ack = kind === 'g' ? await state.client.sendGroup(name, { text }) : await state.client.send(name, { text });
    const status = kind === 'g' ? null : ack.delivered === 'online' ? 'sent' : 'sent (offline: held)';
    add(state.current, { msg_id: ack.msg_id, from: state.me, text, ts: ack.ts, mine: true, status });
  } catch (err) {
    const why = err instanceof RejectedError ? `rejected by the tenant: ${err.kwargs.reason}` : `${err.name}: ${err.message}`;
    $('send-error').textContent = why;
  }
}

// -- presence and devices ------------------------------------------------------------------------
async function refreshPresence() {
  if (!state.client?.connected) return;
  try {
    state.presence = await state.client.presence([...new Set([state.me, ...state.people])].slice(0, 100));
  } catch {
    return;
  }
  renderPeople();
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
  const people = [...state.people].filter((p) => p !== state.me).sort();
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
  const devices = state.presence[state.me]?.devices || [state.device];
  syncList($('devices'), devices.map((d) => ({
    key: d, sig: d, data: { device: d }, content: () => [d === state.device ? `${d} (this tab)` : d],
  })));
}

function renderMessages() {
  const list = $('messages');
  list.replaceChildren();
  for (const m of state.conversations[state.current] || []) {
    const item = li('', { msgId: m.msg_id });
    item.className = m.system ? 'system' : m.mine ? 'mine' : '';
    const from = state.current?.startsWith('g:') && !m.mine && !m.system ? `${m.from}: ` : '';
    item.append(`${from}${m.text}`);
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = new Date(m.ts).toLocaleTimeString() + (m.mine && m.status ? ` · ${m.status}` : '');
    if (m.mine && m.status) item.dataset.status = m.status;
    if (!m.system) item.append(meta);
    list.append(item);
  }
  list.scrollTop = list.scrollHeight;
  if (state.current?.startsWith('u:')) markRead(state.current.slice(2), state.current);
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
$('add-person').onsubmit = (e) => {
  e.preventDefault();
  const name = $('add-person-name').value.trim();
  if (!name) return;
  state.people.add(name);
  $('add-person-name').value = '';
  open(`u:${name}`);
  refreshPresence();
};
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible' && state.current?.startsWith('u:')) markRead(state.current.slice(2), state.current);
});

const remembered = JSON.parse(sessionStorage.getItem('mics-demo:login') || 'null');
if (remembered) {
  $('login-user').value = remembered.user;
  $('login-device').value = remembered.device;
  signIn(remembered.user, remembered.device);
}
window.micsDemo = state; // for the curious (and the browser test)
