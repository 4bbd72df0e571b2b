// The MICS admin console: the admin API of protocol.md section 7 (realm mics.control) from a page.
// The admin secret is typed in, kept in this module's memory only, and used to answer the wampcra
// challenge here: it is never sent, stored or put in the page.
const autobahn = window.autobahn;
const $ = (selector) => document.querySelector(selector);
const HOOK_OUTCOMES = ['ok', 'rejected', 'timeout', 'failure', 'queue_full', 'breaker_open'];

let session = null;
let current = null; // the tenant shown
let shown = {}; // field -> the text its input started with

// -- connection ------------------------------------------------------------------------------------
function wsUrl() {
  return `${location.protocol === 'https:' ? 'wss' : 'ws'}://${location.host}/ws`;
}

function signIn(secret) {
  return new Promise((resolve, reject) => {
    let opened = false;
    const connection = new autobahn.Connection({
      url: wsUrl(),
      realm: 'mics.control',
      authmethods: ['wampcra'],
      authid: 'admin',
      onchallenge: (_session, method, extra) => {
        if (method !== 'wampcra') throw new Error(`unexpected auth method ${method}`);
        const key = extra.salt
          ? autobahn.auth_cra.derive_key(secret, extra.salt, extra.iterations, extra.keylen)
          : secret;
        return autobahn.auth_cra.sign(key, extra.challenge);
      },
      max_retries: 0,
      retry_if_unreachable: false,
    });
    connection.onopen = (s) => {
      opened = true;
      resolve(s);
    };
    connection.onclose = (reason, details) => {
      if (!opened) reject(new Error(`${details?.reason || reason}${details?.message ? `: ${details.message}` : ''}`));
      else signedOut(`session closed: ${details?.reason || reason}`);
      return true; // no reconnect: sign in again
    };
    connection.open();
  });
}

function call(procedure, kwargs = {}) {
  const args = Object.fromEntries(Object.entries(kwargs).filter(([, v]) => v !== undefined && v !== null));
  return session.call(procedure, [], args);
}

function describe(err) {
  if (err && err.error) return `${err.error}: ${err.kwargs?.message || err.args?.[0] || ''}`;
  return String(err?.message || err);
}

function showError(err) {
  const box = $('#error');
  box.textContent = describe(err);
  box.hidden = false;
  clearTimeout(showError.timer);
  showError.timer = setTimeout(() => (box.hidden = true), 8000);
}

// -- small DOM helpers -----------------------------------------------------------------------------
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : String(child ?? ''));
  return node;
}

function fill(tbody, rows) {
  tbody.replaceChildren(...rows);
}

function when(ms) {
  return typeof ms === 'number' ? new Date(ms).toISOString().replace('.000Z', 'Z') : '-';
}

function asText(value) {
  return typeof value === 'string' ? value : JSON.stringify(value);
}

function parseValue(text) {
  try {
    return JSON.parse(text);
  } catch {
    return text;
  }
}

// -- tenants ---------------------------------------------------------------------------------------
async function loadTenants() {
  const [{ tenants }, stats] = await Promise.all([call('mics.admin.tenant.list'), call('mics.admin.stats')]);
  $('#node-id').textContent = `node ${stats.node_id}`;
  tenants.sort((a, b) => a.tenant_id.localeCompare(b.tenant_id));
  fill(
    $('#tenants tbody'),
    tenants.map((t) =>
      el(
        'tr',
        { dataset: { tenant: t.tenant_id, enabled: t.enabled ? 'yes' : 'no' }, class: t.tenant_id === current ? 'selected' : '',
          onclick: guarded(() => selectTenant(t.tenant_id)) },
        el('td', {}, t.tenant_id),
        el('td', {}, t.enabled ? 'yes' : 'no'),
        el('td', { class: 'num' }, t.connections),
      ),
    ),
  );
}

async function selectTenant(tenantId) {
  current = tenantId;
  for (const row of document.querySelectorAll('#tenants tr[data-tenant]')) {
    row.classList.toggle('selected', row.dataset.tenant === tenantId);
  }
  $('#pick').hidden = true;
  $('#tenant-view').hidden = false;
  $('#tenant-title').textContent = tenantId;
  await loadConfig();
  const active = document.querySelector('.tabs button.active').dataset.tab;
  if (active !== 'config') await loadPane(active);
}

async function loadConfig() {
  const { config } = await call('mics.admin.tenant.get', { tenant_id: current });
  const state = $('#tenant-state');
  state.textContent = config.enabled ? 'enabled' : 'disabled';
  state.dataset.state = config.enabled ? 'enabled' : 'disabled';
  $('#disable').disabled = !config.enabled;
  $('#config-status').textContent = '';
  shown = {};
  const rows = Object.keys(config)
    .sort()
    .map((field) => {
      const secret = field === 'secret';
      const text = secret ? '' : asText(config[field]);
      shown[field] = text;
      const input = el('input', { name: field, autocomplete: 'off', spellcheck: 'false' });
      if (secret) {
        input.type = 'password';
        input.placeholder = `${config.secret} (unchanged)`;
        input.autocomplete = 'new-password';
      } else input.value = text;
      return el('tr', { dataset: { field } }, el('th', {}, field), el('td', {}, input), el('td', { class: 'field-error' }));
    });
  const extraName = el('input', { id: 'extra-name', placeholder: 'other field', autocomplete: 'off' });
  const extraValue = el('input', { id: 'extra-value', placeholder: 'value', autocomplete: 'off' });
  rows.push(el('tr', { dataset: { field: '' }, class: 'extra' }, el('th', {}, extraName), el('td', {}, extraValue),
    el('td', { class: 'field-error' })));
  fill($('#config tbody'), rows);
}

function changedFields() {
  const changes = {};
  for (const input of document.querySelectorAll('#config input[name]')) {
    const field = input.name;
    if (field === 'secret') {
      if (input.value) changes.secret = input.value;
    } else if (input.value !== shown[field]) changes[field] = parseValue(input.value);
  }
  const extra = $('#extra-name').value.trim();
  if (extra) changes[extra] = parseValue($('#extra-value').value);
  return changes;
}

function markFieldError(field, message) {
  const row = document.querySelector(`#config tr[data-field="${CSS.escape(field)}"]`) ||
    document.querySelector('#config tr.extra');
  row.classList.add('invalid');
  row.querySelector('.field-error').textContent = message;
}

async function saveConfig(event) {
  event.preventDefault();
  for (const row of document.querySelectorAll('#config tr.invalid')) {
    row.classList.remove('invalid');
    row.querySelector('.field-error').textContent = '';
  }
  const changes = changedFields();
  const status = $('#config-status');
  if (!Object.keys(changes).length) {
    status.textContent = 'nothing changed';
    return;
  }
  try {
    await call('mics.admin.tenant.upsert', { tenant_id: current, config: changes });
  } catch (err) {
    if (err.error === 'mics.error.invalid_config' && err.kwargs?.field) {
      markFieldError(err.kwargs.field, err.kwargs.message);
      status.textContent = 'not saved';
      return;
    }
    throw err;
  }
  await loadConfig();
  status.textContent = `saved: ${Object.keys(changes).join(', ')}`;
  await loadTenants();
}

async function createTenant(event) {
  event.preventDefault();
  const errorBox = $('#new-tenant-error');
  errorBox.textContent = '';
  let config;
  try {
    config = JSON.parse($('#new-tenant-config').value);
  } catch (err) {
    errorBox.textContent = `config is not valid JSON: ${err.message}`;
    return;
  }
  const tenantId = $('#new-tenant-id').value.trim();
  try {
    await call('mics.admin.tenant.upsert', { tenant_id: tenantId, config });
  } catch (err) {
    errorBox.textContent = err.kwargs?.field ? `${err.kwargs.field}: ${err.kwargs.message}` : describe(err);
    return;
  }
  $('#new-tenant').open = false;
  await loadTenants();
  await selectTenant(tenantId);
}

async function disableTenant() {
  if (!window.confirm(`Disable ${current}? New joins are refused and live sessions are closed.`)) return;
  await call('mics.admin.tenant.disable', { tenant_id: current });
  await loadTenants();
  await selectTenant(current);
}

// -- panes -----------------------------------------------------------------------------------------
async function loadSessions() {
  const { sessions } = await call('mics.admin.session.list', { tenant_id: current });
  sessions.sort((a, b) => a.user_id.localeCompare(b.user_id) || a.device_id.localeCompare(b.device_id));
  $('#sessions-empty').hidden = sessions.length > 0;
  fill(
    $('#sessions tbody'),
    sessions.map((s) =>
      el(
        'tr',
        { dataset: { user: s.user_id, device: s.device_id } },
        el('td', {}, s.user_id),
        el('td', {}, s.device_id),
        el('td', {}, s.node_id),
        el('td', {}, when(s.online_at)),
        el('td', {}, el('button', { class: 'kick', onclick: guarded(() => kick(s.user_id, s.device_id)) }, 'Kick')),
      ),
    ),
  );
}

async function kick(userId, deviceId) {
  const { kicked } = await call('mics.admin.session.kick', { tenant_id: current, user_id: userId, device_id: deviceId });
  if (kicked) {
    // the session leaves a moment after the kick answers: drop its row now, list again after that
    document.querySelector(`#sessions tr[data-user="${CSS.escape(userId)}"][data-device="${CSS.escape(deviceId)}"]`)?.remove();
    await new Promise((resolve) => setTimeout(resolve, 1000));
  }
  await Promise.all([loadSessions(), loadTenants()]);
}

async function loadHealth() {
  const stats = (await call('mics.admin.stats', { tenant_id: current })).tenants[current];
  const { hooks, ...counters } = stats;
  fill(
    $('#stats tbody'),
    Object.entries(counters).map(([k, v]) => el('tr', { dataset: { stat: k } }, el('th', {}, k), el('td', { class: 'num' }, asText(v)))),
  );
  fill(
    $('#hooks tbody'),
    Object.entries(hooks).map(([hook, h]) =>
      el(
        'tr',
        { dataset: { hook, breaker: h.breaker ?? 'none' } },
        el('td', {}, hook),
        el('td', { class: `breaker ${h.breaker ?? 'none'}` }, h.breaker ?? 'no hook'),
        el('td', { class: 'num' }, h.in_flight),
        ...HOOK_OUTCOMES.map((o) => el('td', { class: 'num', dataset: { outcome: o } }, h.calls[o] ?? 0)),
      ),
    ),
  );
}

async function loadDeadLetters() {
  const listing = await call('mics.admin.dlq.list', { tenant_id: current });
  fill(
    $('#dlq tbody'),
    listing.dead_letters.map((d) =>
      el(
        'tr',
        { dataset: { id: d.id } },
        el('td', { class: 'num' }, d.id),
        el('td', {}, when(d.failed_at)),
        el('td', {}, d.event_type),
        el('td', {}, d.key),
        el('td', { class: 'num' }, d.attempts),
        el('td', { class: 'wrap' }, d.error),
      ),
    ),
  );
  $('#dlq-summary').textContent = `${listing.total} held (first ${listing.dead_letters.length} shown), ${listing.dropped} dropped`;
  $('#repush').disabled = listing.total === 0;
}

async function repush() {
  const status = $('#dlq-status');
  try {
    const { repushed } = await call('mics.admin.dlq.repush', { tenant_id: current });
    status.textContent = `re-pushed ${repushed}`;
  } catch (err) {
    status.textContent = describe(err);
  }
  await loadDeadLetters();
}

const PANES = { config: loadConfig, sessions: loadSessions, health: loadHealth, dlq: loadDeadLetters };

function loadPane(name) {
  return PANES[name]();
}

async function showTab(name) {
  for (const button of document.querySelectorAll('.tabs button')) button.classList.toggle('active', button.dataset.tab === name);
  for (const pane of document.querySelectorAll('[data-pane]')) pane.hidden = pane.dataset.pane !== name;
  await loadPane(name);
}

// -- sign in / out ---------------------------------------------------------------------------------
function signedOut(message = '') {
  session = null;
  current = null;
  $('#console').hidden = true;
  $('#logout').hidden = true;
  $('#login').hidden = false;
  $('#node-id').textContent = '';
  $('#login-error').textContent = message;
}

async function onLogin(event) {
  event.preventDefault();
  const input = $('#login-secret');
  const secret = input.value;
  input.value = ''; // not kept in the DOM
  $('#login-error').textContent = '';
  $('#login-button').disabled = true;
  try {
    session = await signIn(secret);
  } catch (err) {
    $('#login-error').textContent = `sign-in refused: ${err.message}`;
    return;
  } finally {
    $('#login-button').disabled = false;
  }
  $('#login').hidden = true;
  $('#console').hidden = false;
  $('#logout').hidden = false;
  await loadTenants();
}

function guarded(fn) {
  return (...args) => Promise.resolve(fn(...args)).catch(showError);
}

$('#login-form').addEventListener('submit', guarded(onLogin));
$('#logout').addEventListener('click', () => {
  const s = session;
  signedOut();
  s?.leave?.('wamp.close.normal', 'signed out');
});
$('#refresh').addEventListener('click', guarded(async () => {
  await loadTenants();
  if (current) await selectTenant(current);
}));
$('#config-form').addEventListener('submit', guarded(saveConfig));
$('#new-tenant-form').addEventListener('submit', guarded(createTenant));
$('#disable').addEventListener('click', guarded(disableTenant));
$('#sessions-refresh').addEventListener('click', guarded(loadSessions));
$('#health-refresh').addEventListener('click', guarded(loadHealth));
$('#dlq-refresh').addEventListener('click', guarded(loadDeadLetters));
$('#repush').addEventListener('click', guarded(repush));
for (const button of document.querySelectorAll('.tabs button')) {
  button.addEventListener('click', guarded(() => showTab(button.dataset.tab)));
}