// The Node examples run as documented (one command each) against a real node.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { connect, RejectedError } from '../../sdk/js/src/index.js';
import { ROOT, next, startNode } from './helpers.mjs';

let node;
const children = [];
before(async () => {
  node = await startNode();
});
after(async () => {
  for (const child of children) {
    if (child.exitCode === null) {
      child.kill('SIGTERM');
      await once(child, 'exit');
    }
  }
  await node?.stop();
});

/** Start an example; resolve with its first stdout line (its "ready" message). */
async function runExample(file, env) {
  const child = spawn(process.execPath, [`${ROOT}examples/${file}`], {
    cwd: ROOT,
    env: { ...process.env, MICS_URL: node.url, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  const [line] = await Promise.race([
    once(createInterface({ input: child.stdout }), 'line'),
    once(child, 'exit').then(([code]) => {
      throw new Error(`${file} exited with ${code}`);
    }),
  ]);
  return line;
}

test('the Node bot answers a demo user', async () => {
  const ready = await runExample('node_bot.mjs', {});
  assert.match(ready, /bot "bot" online in tenant demo/);
  const carol = await connect({ url: node.url, tenant: 'demo', token: 'demo-carol', deviceId: 'test' });
  try {
    const reply = next(carol, 'message', (m) => m.from_user_id === 'bot');
    const read = next(carol, 'receipt');
    const ack = await carol.send('bot', { text: 'ping' });
    assert.deepEqual((await reply).body, { text: 'pong' });
    assert.deepEqual((await read).body, { msg_ids: [ack.msg_id], kind: 'read' });
  } finally {
    await carol.close();
  }
});

test('the Node HTTP hooks backend creates its tenant and serves its users', async () => {
  const ready = await runExample('node_http_hooks.mjs', {
    MICS_ADMIN_SECRET: node.admin_secret, TENANT: 'acme', HOOK_PORT: '0',
  });
  assert.match(ready, /hooks for tenant "acme" at http:\/\/127\.0\.0\.1:\d+ \(created\)/);
  const ann = await connect({ url: node.url, tenant: 'acme', token: 'secret-ann', deviceId: 'laptop' });
  const ben = await connect({ url: node.url, tenant: 'acme', token: 'secret-ben', deviceId: 'phone', groups: true });
  try {
    const got = next(ben, 'message');
    assert.equal((await ann.sendGroup('general', { text: 'hello general' })).recipients, 3);
    assert.equal((await got).group_id, 'general');
    await assert.rejects(ann.send('ben', { text: 'buy spam now' }), (err) => err instanceof RejectedError);
  } finally {
    await ann.close();
    await ben.close();
  }
});
