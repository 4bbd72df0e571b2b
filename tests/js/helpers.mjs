// Test helpers: a real MICS node (tests/js/node_fixture.py over tests/harness.py), the admin API,
// fresh tenants whose hooks are served by the SDK's own TenantBackend or HTTP hook server.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';
import { connect } from '../../sdk/js/src/index.js';
import { HookRejection, TenantBackend, connectAdmin, createHookServer } from '../../sdk/js/src/hooks.js';

export const ROOT = fileURLToPath(new URL('../..', import.meta.url));
/** Screenshots of the browser tests (kept by CI as artifacts, ignored by git). */
export const ARTIFACTS = join(ROOT, 'test-artifacts');
let counter = 0;

/** Start one node for this test file (`options`: `{node: {...settings}, env: {...}}`); `stop()` ends it. */
export async function startNode(options = {}) {
  const python = process.env.MICS_PYTHON || `${ROOT}.venv/bin/python`;
  const argv = [`${ROOT}tests/js/node_fixture.py`, JSON.stringify(options)];
  const child = spawn(python, argv, { cwd: ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => {
    stderr = (stderr + d).slice(-8000);
  });
  const lines = createInterface({ input: child.stdout });
  const first = await Promise.race([
    once(lines, 'line').then(([line]) => line),
    once(child, 'exit').then(([code]) => {
      throw new Error(`node fixture exited with ${code}:\n${stderr}`);
    }),
  ]);
  const info = JSON.parse(first);
  const adminSession = await connectAdmin({ url: info.url, secret: info.admin_secret });
  return {
    ...info,
    admin: adminSession,
    async stop() {
      try {
        adminSession.connection.close();
      } catch {
        // closed already
      }
      child.stdin.end();
      await once(child, 'exit');
    },
  };
}

/** One node for the calling test file (started before its tests, stopped after). */
export function nodeForFile() {
  const ref = { node: undefined };
  before(async () => {
    ref.node = await startNode();
  });
  after(async () => {
    await ref.node?.stop();
  });
  return {
    get node() {
      return ref.node;
    },
    /** A fresh tenant on this file's node for `fn`, closed afterwards. */
    withTenant: (options, fn) => withTenant(ref.node, options, fn),
  };
}

/** Tokens are `tok-<user>`; anything else is refused. */
export function tokenAuth({ token }) {
  if (typeof token !== 'string' || !token.startsWith('tok-')) throw new HookRejection('bad token');
  return { user_id: token.slice(4) };
}

/** Default hook logic: groups are listed in `groups`, bodies with `{text: "bad"}` are rejected. */
export function makeHooks(groups = {}) {
  return {
    auth: tokenAuth,
    checkMessage: (message) =>
      message.body && message.body.text === 'bad' ? { allow: false, reason: 'no bad words' } : { allow: true },
    groupMembers: ({ group_id }) => {
      if (group_id === 'broken') throw new Error('directory down');
      return { members: groups[group_id] || [] };
    },
  };
}

/**
 * A fresh tenant on `node`; `hooks: "wamp"` serves the hooks with TenantBackend, `"http"` with
 * createHookServer. `agents: {<agent_id>: fn}` are served the same way and declared in the tenant's
 * config (`agentConfig: {<agent_id>: {...}}` adds to an agent's entry).
 */
export async function makeTenant(node, {
  transport = 'wamp', hooks = makeHooks(), config = {}, backend = true, agents = {}, agentConfig = {},
} = {}) {
  const tenantId = `js${process.pid % 10000}x${++counter}`;
  const secret = `secret-${tenantId}-0123456789`;
  const cfg = { secret, hook_transport: transport, ...config };
  let server = null;
  let tenant = null;
  let base = null;
  if (transport === 'http') {
    server = createHookServer({ secret, hooks, agents, tenantId, onError: (err) => tenant?.hookErrors.push(err) });
    base = await server.listenAsync();
    cfg.hook_base_url = base + '/hooks/';
  }
  const declared = Object.keys(agents).map((id) => ({
    agent_id: id, name: id, transport, ...(base ? { url: `${base}/agents/${id}` } : {}), ...agentConfig[id],
  }));
  if (declared.length) cfg.agents = declared;
  await node.admin.call('mics.admin.tenant.upsert', [], { tenant_id: tenantId, config: cfg });
  tenant = {
    id: tenantId,
    secret,
    server,
    backend: null,
    hookErrors: [],
    clients: [],
    /** Connect `userId` (token tok-<userId>) as `deviceId`. */
    async user(userId, deviceId = 'd1', options = {}) {
      const client = await connect({ url: node.url, tenant: tenantId, token: `tok-${userId}`, deviceId, ...options });
      this.clients.push(client);
      return client;
    },
    configure(config) {
      return node.admin.call('mics.admin.tenant.upsert', [], { tenant_id: tenantId, config });
    },
    async close() {
      await Promise.all(this.clients.map((c) => c.close()));
      await this.backend?.stop();
      if (server) await new Promise((resolve) => server.close(resolve));
      server?.closeAllConnections?.();
    },
  };
  if (transport === 'wamp' && backend) {
    const backendSession = new TenantBackend({ url: node.url, tenant: tenantId, secret, hooks, agents });
    backendSession.on('error', (err) => tenant.hookErrors.push(err));
    tenant.backend = await backendSession.start();
  }
  return tenant;
}

/** Resolve with the next `event` from `emitter` that satisfies `pred`. */
/** Run `fn(tenant)` on a fresh tenant of `node` and close everything it opened. */
export async function withTenant(node, options, fn) {
  const tenant = await makeTenant(node, options);
  try {
    await fn(tenant);
  } finally {
    await tenant.close();
  }
}

export function next(emitter, event, pred = () => true) {
  return new Promise((resolve) => {
    const off = emitter.on(event, (value, meta) => {
      if (pred(value, meta)) {
        off();
        resolve(value);
      }
    });
  });
}

const CHROMIUM = process.env.MICS_CHROMIUM || '/usr/bin/chromium';
const CHROMIUM_FLAGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

/** Headless Chromium with a fresh profile: `{context, close()}` (playwright-core, a dev dependency of sdk/js). */
export async function openBrowser() {
  const { chromium } = createRequire(new URL('../../sdk/js/package.json', import.meta.url))('playwright-core');
  const profile = mkdtempSync(join(tmpdir(), 'mics-chromium-'));
  // a persistent context is how playwright takes a fresh --user-data-dir
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: CHROMIUM_FLAGS,
  });
  mkdirSync(ARTIFACTS, { recursive: true });
  return {
    context,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}
