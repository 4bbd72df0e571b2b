// The Node hook SDK against a real node: HTTP hooks served by createHookServer (signed requests
// from the router), signature checks, and a TenantBackend using the backend procedures.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { InvalidTokenError, RejectedError, connect } from '../../sdk/js/src/index.js';
import { createHookServer, signHeaders, signature } from '../../sdk/js/src/hooks.js';
import { makeHooks, makeTenant, next, startNode } from './helpers.mjs';

let node;
before(async () => {
  node = await startNode();
});
after(async () => {
  await node?.stop();
});

async function withTenant(options, fn) {
  const tenant = await makeTenant(node, options);
  try {
    await fn(tenant);
  } finally {
    await tenant.close();
  }
}

describe('HTTP hooks', () => {
  test('users of an HTTP-hook tenant join, chat and are checked through the signed hook server', () =>
    withTenant({ transport: 'http', hooks: makeHooks({ pair: ['alice', 'bob'] }) }, async (tenant) => {
      const alice = await tenant.user('alice');
      const bob = await tenant.user('bob', 'd1', { groups: true });
      const got = next(bob, 'message');
      await alice.send('bob', { text: 'over http hooks' });
      assert.deepEqual((await got).body, { text: 'over http hooks' });
      await assert.rejects(alice.send('bob', { text: 'bad' }), (err) => err instanceof RejectedError);
      const inGroup = next(bob, 'message', (m) => m.type === 'group_chat');
      assert.equal((await alice.sendGroup('pair', 'to the pair')).recipients, 2);
      assert.equal((await inGroup).group_id, 'pair');
      await assert.rejects(
        connect({ url: node.url, tenant: tenant.id, token: 'wrong', deviceId: 'd1' }),
        (err) => err instanceof InvalidTokenError,
      );
      assert.deepEqual(tenant.hookErrors, []);
    }));

  test('the hook server refuses unsigned, forged, stale and replayed requests', async () => {
    const secret = 'hook-secret-0123456789';
    const calls = [];
    const server = createHookServer({ secret, hooks: { auth: (f) => (calls.push(f), { user_id: 'u1' }) } });
    const base = await server.listenAsync();
    const post = (headers, body) =>
      fetch(`${base}/auth`, { method: 'POST', headers: { 'Content-Type': 'application/json', ...headers }, body });
    try {
      const body = JSON.stringify({ token: 't', device_id: 'd', tenant_id: 'acme' });
      const good = signHeaders('acme', secret, body);
      const ok = await post(good, body);
      assert.equal(ok.status, 200);
      assert.deepEqual(await ok.json(), { user_id: 'u1' });
      assert.equal((await post(good, body)).status, 401, 'replayed nonce');
      assert.equal((await post({}, body)).status, 401, 'unsigned');
      assert.equal((await post(signHeaders('acme', 'other-secret', body), body)).status, 401, 'wrong secret');
      const tampered = signHeaders('acme', secret, body);
      assert.equal((await post(tampered, body.replace('"t"', '"x"'))).status, 401, 'tampered body');
      const stale = signHeaders('acme', secret, body, Date.now() - 6 * 60 * 1000);
      assert.equal((await post(stale, body)).status, 401, 'stale timestamp');
      assert.equal(calls.length, 1);
    } finally {
      server.close();
      server.closeAllConnections();
    }
  });

  test('signatures are lowercase hex HMAC-SHA256 over timestamp.nonce.body', () => {
    // the value Python's hmac gives for the same input (mics.hooks.signing.signature)
    assert.equal(
      signature('s3cret', '1700000000000', 'abc', '{"a":1}'),
      '19fa7d29e4bc4910485c209a0ca5d9f920c96bab2fee456130a8409e699f7a22',
    );
  });
});

describe('TenantBackend', () => {
  test('the backend sends system messages, lists sessions and kicks', () =>
    withTenant({}, async (tenant) => {
      const bob = await tenant.user('bob', 'phone');
      const got = next(bob, 'message');
      await tenant.backend.sendMessage('bob', { text: 'welcome' }, { fromUserId: 'support' });
      const message = await got;
      assert.equal(message.type, 'system');
      assert.equal(message.from_user_id, 'support');
      const { sessions } = await tenant.backend.listSessions('bob');
      assert.deepEqual(sessions.map((s) => [s.user_id, s.device_id]), [['bob', 'phone']]);
    }));

  test('a membership change reaches group members as a system message', () =>
    withTenant({ hooks: makeHooks({ team: ['alice', 'bob'] }) }, async (tenant) => {
      const bob = await tenant.user('bob', 'd1', { groups: ['team'] });
      const got = next(bob, 'message', (m) => m.type === 'system');
      await tenant.backend.membersChanged('team', { added: ['carol'] });
      const message = await got;
      assert.equal(message.group_id, 'team');
      assert.deepEqual(message.body, { added: ['carol'], removed: [] });
    }));

  test('users call tenant procedures and receive tenant topics from the backend', () =>
    withTenant({}, async (tenant) => {
      await tenant.backend.register('tenant.whoami', (kwargs, caller) => ({ you: caller.callerAuthid, ...kwargs }));
      const bob = await tenant.user('bob');
      assert.deepEqual(await bob.call('tenant.whoami', { x: 1 }), { you: 'bob', x: 1 });
      let heard;
      const news = new Promise((resolve) => {
        heard = resolve;
      });
      await bob.subscribe('tenant.news', heard); // in place once subscribe() resolves
      tenant.backend.publish('tenant.news', { headline: 'MICS ships' });
      assert.deepEqual(await news, { headline: 'MICS ships' });
    }));

  test('the backend receives message events from the wamp event sink', () =>
    withTenant({ config: { event_sinks: ['wamp'] } }, async (tenant) => {
      const events = [];
      const got = new Promise((resolve) =>
        tenant.backend.subscribe('mics.event.single_chat_msg', (e) => (events.push(e), resolve(e))),
      );
      const alice = await tenant.user('alice');
      const ack = await alice.send('bob', 'tracked');
      const event = await got;
      assert.equal(event.event_type, 'SINGLE_CHAT_MSG');
      assert.equal(event.msg_id, ack.msg_id);
      assert.equal(event.tenant_id, tenant.id);
    }));
});
