// A tenant backend in Node with HTTP hooks: serves /auth, /check-message and /get-group-members
// (signed requests, checked by the SDK), then creates/updates its tenant through the admin API.
// Run (with a node up from scripts/run):  npm --prefix sdk/js ci && node examples/node_http_hooks.mjs
// Add `--encoding protobuf` for protobuf hook bodies (hook_encoding "protobuf"; JSON by default).
// Then connect users of tenant "acme" with tokens "secret-<user>" (e.g. from the quickstart).
// Env: MICS_URL, MICS_ADMIN_SECRET (the embedded default's dev-admin-secret), TENANT (acme),
//      TENANT_SECRET, HOOK_HOST (127.0.0.1), HOOK_PORT (9090; 0 = any free port)
import { HookRejection, connectAdmin, createHookServer } from '../sdk/js/src/hooks.js';

const url = process.env.MICS_URL || 'ws://localhost:8080/ws';
const tenantId = process.env.TENANT || 'acme';
const secret = process.env.TENANT_SECRET || 'acme-secret-change-me-0123456789';
const adminSecret = process.env.MICS_ADMIN_SECRET || 'dev-admin-secret';
const host = process.env.HOOK_HOST || '127.0.0.1';
const port = Number(process.env.HOOK_PORT ?? 9090);
const flag = process.argv.indexOf('--encoding');
const encoding = flag > 0 ? process.argv[flag + 1] : 'json';
if (encoding !== 'json' && encoding !== 'protobuf') {
  console.error('--encoding must be json or protobuf');
  process.exit(2);
}

// The tenant's own data: in a real app, your user database and group service.
const GROUPS = { general: ['ann', 'ben', 'cid'], ops: ['ann', 'cid'] };

const server = createHookServer({
  secret,
  tenantId,
  hooks: {
    auth({ token, device_id }) {
      if (!/^secret-[a-z0-9_-]{1,32}$/.test(token)) throw new HookRejection('unknown token');
      console.log(`auth: ${token.slice(7)} on ${device_id}`);
      return { user_id: token.slice(7) };
    },
    checkMessage(message) {
      const text = typeof message.body === 'object' && message.body ? String(message.body.text ?? '') : String(message.body);
      return /\bspam\b/i.test(text) ? { allow: false, reason: 'looks like spam' } : { allow: true };
    },
    groupMembers({ group_id }) {
      return { members: GROUPS[group_id] ?? [] };
    },
  },
  onError: (err) => console.error('hook failed:', err),
});
const baseUrl = await server.listenAsync(port, host);

// Point the tenant at this server (admin API, realm mics.control); upsert merges a partial config.
let admin;
try {
  admin = await connectAdmin({ url, secret: adminSecret });
} catch (err) {
  console.error(err.message);
  process.exit(1);
}
const config = { secret, hook_transport: 'http', hook_base_url: baseUrl, hook_encoding: encoding };
const result = await admin.call('mics.admin.tenant.upsert', [], { tenant_id: tenantId, config });
admin.connection.close();
console.log(`hooks for tenant "${tenantId}" at ${baseUrl} (${result.created ? 'created' : 'updated'}); ` +
  `${encoding} bodies; users sign in with tokens "secret-<name>"; groups: ${Object.keys(GROUPS).join(', ')}`);
process.on('SIGINT', () => process.exit(0));
process.on('SIGTERM', () => process.exit(0));
