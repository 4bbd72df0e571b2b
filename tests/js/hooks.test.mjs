// The Node hook SDK against a real node: HTTP hooks served by createHookServer (signed requests
// from the router), signature checks, and a TenantBackend using the backend procedures.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  EmptyGroupError,
  InvalidMessageError,
  InvalidTokenError,
  KickedError,
  MicsError,
  RejectedError,
  connect,
} from '../../sdk/js/src/index.js';
import {
  checkEach,
  createHookServer,
  createHttpClient,
  decodeRequest,
  decodeResponse,
  encodeRequest,
  signHeaders,
  signature,
} from '../../sdk/js/src/hooks.js';
import { makeHooks, next, tokenAuth, nodeForFile } from './helpers.mjs';

const file = nodeForFile();
const { withTenant } = file;

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
        connect({ url: file.node.url, tenant: tenant.id, token: 'wrong', deviceId: 'd1' }),
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

  test('a protobuf-encoding tenant: auth with config, checked 1:1 sends and group members over protobuf', async () => {
    const seen = { auth: [], check: [], members: [], encodings: new Set() };
    const hooks = {
      auth: (input, ctx) => {
        seen.auth.push(input);
        seen.encodings.add(ctx.encoding);
        return { ...tokenAuth(input), config: { heartbeat_timeout_s: 45 } };
      },
      checkMessage: (message, ctx) => {
        seen.check.push(message);
        seen.encodings.add(ctx.encoding);
        return message.body?.text === 'bad' ? { allow: false, reason: 'no bad words (protobuf)' } : { allow: true };
      },
      groupMembers: (input, ctx) => {
        seen.members.push(input);
        seen.encodings.add(ctx.encoding);
        return { members: input.group_id === 'pair' ? ['alice', 'bob'] : [] };
      },
    };
    await withTenant({ transport: 'http', hooks, config: { hook_encoding: 'protobuf' } }, async (tenant) => {
      const alice = await tenant.user('alice', 'laptop');
      assert.deepEqual(seen.auth[0], { token: 'tok-alice', device_id: 'laptop', tenant_id: tenant.id });
      assert.equal(alice.welcome.authextra.heartbeat_timeout_s, 45, 'the config override came back as an int');
      assert.equal(alice.heartbeatTimeoutS, 45);
      const bob = await tenant.user('bob', 'd1', { groups: true });

      const got = next(bob, 'message');
      const body = { text: 'over protobuf', n: 3, ratio: 0.5, tags: ['a', null, true], nested: { ok: false } };
      const ack = await alice.send('bob', body, { contentType: 'application/vnd.test+json' });
      assert.deepEqual((await got).body, body);
      const checked = seen.check.at(-1);
      assert.equal(checked.type, 'chat');
      assert.equal(checked.tenant_id, tenant.id);
      assert.equal(checked.from_user_id, 'alice');
      assert.equal(checked.from_device_id, 'laptop');
      assert.equal(checked.to_user_id, 'bob');
      assert.equal(checked.content_type, 'application/vnd.test+json');
      assert.equal(checked.group_id, undefined, 'empty strings are left out');
      assert.equal(typeof checked.ts, 'number');
      assert.ok(checked.ts > 1.6e12);
      assert.equal(typeof checked.msg_id, 'string');
      assert.equal(checked.msg_id, ack.msg_id);
      assert.deepEqual(checked.body, body);

      await assert.rejects(alice.send('bob', { text: 'bad' }), (err) => {
        assert.ok(err instanceof RejectedError);
        assert.match(String(err.message), /no bad words \(protobuf\)/);
        return true;
      });

      const inGroup = next(bob, 'message', (m) => m.type === 'group_chat');
      assert.equal((await alice.sendGroup('pair', 'to the pair')).recipients, 2);
      assert.equal((await inGroup).group_id, 'pair');
      assert.deepEqual(seen.members.at(-1), { group_id: 'pair', from_user_id: 'alice', tenant_id: tenant.id });

      await assert.rejects(
        connect({ url: file.node.url, tenant: tenant.id, token: 'wrong', deviceId: 'd1' }),
        (err) => err instanceof InvalidTokenError,
      );
      assert.deepEqual([...seen.encodings], ['protobuf']);
      assert.deepEqual(tenant.hookErrors, []);
    });
  });

  test('a signed protobuf request decodes to the same object as the JSON one and is answered in protobuf', async () => {
    const secret = 'hook-secret-0123456789';
    const calls = [];
    const record = (reply) => (input, ctx) => (calls.push({ input, encoding: ctx.encoding }), reply);
    const server = createHookServer({
      secret,
      tenantId: 'acme',
      hooks: {
        auth: record({ user_id: 'u1', config: { heartbeat_timeout_s: 45, flags: { beta: true } } }),
        checkMessage: record({ allow: false, reason: 'nope' }),
        groupMembers: record({ members: ['a', 'b'] }),
      },
    });
    const base = await server.listenAsync();
    const roundTrip = async (path, hook, fields, encoding) => {
      const [body, contentType] = encodeRequest(hook, fields, encoding);
      const res = await fetch(`${base}/hooks/${path}`, {
        method: 'POST',
        headers: { 'Content-Type': contentType, ...signHeaders('acme', secret, body) },
        body,
      });
      assert.equal(res.status, 200);
      const type = res.headers.get('content-type');
      assert.equal(type, contentType, 'answered in the encoding of the request');
      return decodeResponse(hook, Buffer.from(await res.arrayBuffer()), type);
    };
    const message = {
      msg_id: 'm-1', type: 'chat', tenant_id: 'acme', from_user_id: 'alice', from_device_id: 'd1',
      to_user_id: 'bob', content_type: 'text/plain', client_msg_id: 'c-1', ts: 1_700_000_000_123,
      body: { text: 'hi', n: [1, 2.5, null, true, { x: 'y' }] },
    }; // prettier-ignore
    try {
      const cases = [
        ['auth', 'auth', { token: 'tok-u1', device_id: 'd1', tenant_id: 'acme' }],
        ['check-message', 'checkMessage', message],
        ['get-group-members', 'groupMembers', { group_id: 'g1', from_user_id: 'alice', tenant_id: 'acme' }],
      ];
      for (const [path, hook, fields] of cases) {
        calls.length = 0;
        const viaJson = await roundTrip(path, hook, fields, 'json');
        const viaProtobuf = await roundTrip(path, hook, fields, 'protobuf');
        assert.deepEqual(calls.map((c) => c.encoding), ['json', 'protobuf']);
        assert.deepEqual(calls[1].input, calls[0].input, `${hook}: the same fields either way`);
        assert.deepEqual(calls[1].input, fields);
        if (hook === 'auth') {
          assert.deepEqual(viaJson, { user_id: 'u1', config: { heartbeat_timeout_s: 45, flags: { beta: true } } });
          assert.deepEqual(viaProtobuf, { ...viaJson, device_id: null });
        } else {
          assert.deepEqual(viaProtobuf, hook === 'checkMessage' ? { allow: false, reason: 'nope' } : viaJson);
          assert.deepEqual(viaJson, hook === 'checkMessage' ? { allow: false, reason: 'nope' } : { members: ['a', 'b'] });
        }
      }

      // the Python codec's conventions: empty strings dropped (from_device_id null), bytes bodies as Buffers
      const [sparse] = encodeRequest('check_message', { type: 'system', from_device_id: null, ts: 5, body: null }, 'protobuf');
      assert.deepEqual(decodeRequest('check_message', sparse, 'application/x-protobuf'),
        { type: 'system', from_device_id: null, ts: 5, body: null }); // prettier-ignore
      const [binary] = encodeRequest('checkMessage', { ...message, seq: 9, body: Buffer.from([0, 255]) }, 'protobuf');
      const decoded = decodeRequest('checkMessage', binary, 'application/x-protobuf');
      assert.ok(Buffer.isBuffer(decoded.body));
      assert.deepEqual([...decoded.body], [0, 255]);
      assert.equal(decoded.seq, 9);

      // a correctly signed but undecodable protobuf body is a 400, a forged one a 401
      const junk = Buffer.from([0xff, 0xff, 0xff]);
      const post = (headers) =>
        fetch(`${base}/auth`, { method: 'POST', headers: { 'Content-Type': 'application/x-protobuf', ...headers }, body: junk });
      assert.equal((await post(signHeaders('acme', secret, junk))).status, 400);
      assert.equal((await post(signHeaders('acme', 'other-secret', junk))).status, 401);
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

describe('batched checks (hook_batch_max > 1)', () => {
  const batching = { hook_batch_max: 8, hook_batch_wait_ms: 50, hook_timeout_ms: 400 };
  const transports = [['wamp', 'json'], ['http', 'json'], ['http', 'protobuf']];

  /** alice, carol, dave and erin send to bob at once: each sender's settled result. */
  async function sendTogether(tenant, bodies) {
    const senders = await Promise.all(Object.keys(bodies).map((u) => tenant.user(u)));
    return Promise.allSettled(senders.map((client, i) => client.send('bob', Object.values(bodies)[i])));
  }

  for (const [transport, encoding] of transports) {
    test(`a tenant's own checkMessages gets one call for concurrent sends (${transport}, ${encoding})`, async () => {
      const batches = [];
      const hooks = {
        ...makeHooks(),
        checkMessages: ({ messages, timeout_ms: timeoutMs }) => {
          batches.push([messages.length, timeoutMs]);
          return { verdicts: messages.map((m) => (m.body.text === 'bad' ? { allow: false, reason: 'no bad words' } : { allow: true })) };
        },
      };
      await withTenant({ transport, hooks, config: { ...batching, hook_encoding: encoding } }, async (tenant) => {
        const results = await sendTogether(tenant, { alice: { text: 'bad' }, carol: { text: 'hi' }, dave: { text: 'yo' } });
        assert.equal(results[0].status, 'rejected');
        assert.ok(results[0].reason instanceof RejectedError && results[0].reason.kwargs.reason === 'no bad words');
        assert.deepEqual(results.slice(1).map((r) => r.status), ['fulfilled', 'fulfilled']);
        assert.deepEqual(batches, [[3, 400]]);
      });
    });
  }

  for (const transport of ['wamp', 'http']) {
    test(`checkMessage serves batches; a check that throws or stalls cannot wave its batch-mates through (${transport})`, async () => {
      const checked = [];
      const hooks = {
        ...makeHooks(),
        checkMessage: (message) => {
          checked.push(message.body.text);
          if (message.body.text === 'crash') throw new Error('the check broke on this one');
          if (message.body.text === 'stall') return new Promise(() => {});
          return makeHooks().checkMessage(message);
        },
      };
      await withTenant({ transport, hooks, config: batching }, async (tenant) => {
        const results = await sendTogether(tenant, {
          alice: { text: 'bad' }, carol: { text: 'crash' }, dave: { text: 'stall' }, erin: { text: 'fine' },
        }); // prettier-ignore
        assert.equal(results[0].status, 'rejected', 'its batch-mates trouble changes nothing');
        assert.deepEqual(results.slice(1).map((r) => r.status), ['fulfilled', 'fulfilled', 'fulfilled'],
          'no verdict (threw, or too slow) degrades that message alone to allow'); // prettier-ignore
        assert.deepEqual(checked.sort(), ['bad', 'crash', 'fine', 'stall']);
        assert.equal(tenant.hookErrors.length, 1, 'the throw is reported to the tenant');
      });
    });
  }

  test('checkEach answers what is checked by 80% of the timeout and null for the rest', async () => {
    const slow = (ms, verdict) => new Promise((resolve) => setTimeout(() => resolve(verdict), ms));
    const batch = checkEach((m) => (m.ms ? slow(m.ms, true) : m.allow));
    const started = Date.now();
    const reply = await batch({ messages: [{ allow: false }, { ms: 5 }, { ms: 5000 }, { allow: 'maybe' }], timeout_ms: 100 });
    assert.deepEqual(reply, { verdicts: [{ allow: false }, { allow: true }, null, null] });
    assert.ok(Date.now() - started < 1000, 'answered at the deadline, not when the slow check ends');
    assert.deepEqual(await batch({ messages: [] }), { verdicts: [] });
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

describe('createHttpClient (backend HTTP API)', () => {
  test('a backend sends, lists, asks presence and kicks over signed HTTP; refusals are typed errors', () =>
    withTenant({}, async (tenant) => {
      const baseUrl = file.node.url.replace(/^ws/, 'http').replace(/\/ws$/, '');
      const api = createHttpClient({ baseUrl, tenantId: tenant.id, secret: tenant.secret });
      const bob = await tenant.user('bob', 'phone');
      const got = next(bob, 'message');
      const ack = await api.send('bob', { text: 'from a web service' }, 'shop', { clientMsgId: 'w-1' });
      const message = await got;
      assert.equal(message.msg_id, ack.msg_id);
      assert.equal(message.type, 'system');
      assert.equal(message.from_user_id, 'shop');
      assert.deepEqual(await api.send('bob', { text: 'from a web service' }, 'shop', { clientMsgId: 'w-1' }), ack);
      assert.deepEqual((await api.sessions('bob')).map((s) => s.device_id), ['phone']);
      assert.deepEqual(await api.presence(['bob']), { bob: { online: true, devices: ['phone'] } });
      await assert.rejects(api.send('b.b', 'x', 'shop'), (err) => err instanceof InvalidMessageError && err.code === 400);
      await assert.rejects(api.groupSend('nobody', 'x'), (err) => err instanceof EmptyGroupError);
      const wrong = createHttpClient({ baseUrl, tenantId: tenant.id, secret: 'not-the-secret-123' });
      await assert.rejects(
        wrong.sessions(),
        (err) => err instanceof MicsError && err.uri === 'mics.error.bad_signature' && err.code === 401,
      );
      const closed = next(bob, 'close');
      assert.equal(await api.kick('bob'), 1);
      const { reason, error } = await closed;
      assert.equal(reason, 'mics.close.kicked');
      assert.ok(error instanceof KickedError);
    }));
});
