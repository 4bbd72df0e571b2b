// The client SDK against a real node: messages, groups, receipts, signals, presence, sync,
// heartbeat, reconnect and one typed error per rejection in protocol.md sections 2-3.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import {
  ConnectionLimitError,
  EmptyGroupError,
  HeartbeatTimeoutError,
  HookUnavailableError,
  InvalidMessageError,
  InvalidTenantError,
  InvalidTokenError,
  KickedError,
  MicsError,
  NotAuthorizedError,
  NotConnectedError,
  PayloadTooLargeError,
  RateLimitedError,
  RejectedError,
  ReplacedError,
  connect,
} from '../../sdk/js/src/index.js';
import { makeHooks, next, nodeForFile } from './helpers.mjs';

const file = nodeForFile();
const { withTenant } = file;

function isError(cls, code) {
  return (err) => {
    assert.ok(err instanceof cls, `expected ${cls.name}, got ${err?.name}: ${err?.message}`);
    assert.ok(err instanceof MicsError);
    assert.equal(err.uri, cls.uri);
    assert.equal(err.code, code);
    return true;
  };
}

describe('messages', () => {
  test('two users exchange a 1:1 message and a read receipt', () =>
    withTenant({}, async (tenant) => {
      const alice = await tenant.user('alice');
      const bob = await tenant.user('bob');
      const got = next(bob, 'message');
      const ack = await alice.send('bob', { text: 'hi bob' }, { clientMsgId: 'c-1' });
      assert.equal(ack.status, 'SENT');
      assert.equal(ack.delivered, 'online');
      assert.equal(ack.client_msg_id, 'c-1');
      const message = await got;
      assert.equal(message.msg_id, ack.msg_id);
      assert.equal(message.type, 'chat');
      assert.equal(message.from_user_id, 'alice');
      assert.equal(message.from_device_id, 'd1');
      assert.deepEqual(message.body, { text: 'hi bob' });
      assert.equal(bob.position.lastSeq, message.seq);
      const receipt = next(alice, 'receipt');
      await bob.receipt('alice', [message.msg_id], 'read');
      assert.deepEqual((await receipt).body, { msg_ids: [message.msg_id], kind: 'read' });
    }));

  test('a repeated clientMsgId returns the first ack and delivers once', () =>
    withTenant({}, async (tenant) => {
      const alice = await tenant.user('alice');
      const bob = await tenant.user('bob');
      const seen = [];
      bob.onMessage((m) => seen.push(m.msg_id));
      const first = await alice.send('bob', 'once', { clientMsgId: 'dup-1' });
      const second = await alice.send('bob', 'once', { clientMsgId: 'dup-1' });
      assert.equal(second.msg_id, first.msg_id);
      const marker = next(bob, 'message', (m) => m.body === 'after');
      await alice.send('bob', 'after');
      await marker;
      assert.deepEqual(seen.filter((id) => id === first.msg_id), [first.msg_id]);
    }));

  test('a message sent from one device reaches the sender\'s other device', () =>
    withTenant({}, async (tenant) => {
      const phone = await tenant.user('alice', 'phone');
      const laptop = await tenant.user('alice', 'laptop');
      await tenant.user('bob');
      const copy = next(laptop, 'message');
      const ack = await phone.send('bob', 'from my phone');
      const message = await copy;
      assert.equal(message.msg_id, ack.msg_id);
      assert.equal(message.from_device_id, 'phone');
      assert.equal(message.to_user_id, 'bob');
    }));

  test('group messages reach subscribed members with the member count in the ack', () =>
    withTenant({ hooks: makeHooks({ team: ['alice', 'bob', 'carol'] }) }, async (tenant) => {
      const alice = await tenant.user('alice');
      const bob = await tenant.user('bob', 'd1', { groups: ['team'] });
      const carol = await tenant.user('carol');
      await carol.subscribeGroups();
      const toBob = next(bob, 'message');
      const toCarol = next(carol, 'message');
      const ack = await alice.sendGroup('team', { text: 'standup' });
      assert.equal(ack.recipients, 3);
      for (const m of [await toBob, await toCarol]) {
        assert.equal(m.type, 'group_chat');
        assert.equal(m.group_id, 'team');
        assert.equal(m.msg_id, ack.msg_id);
      }
    }));

  test('a signal reaches an online user live and takes no seq', () =>
    withTenant({}, async (tenant) => {
      const alice = await tenant.user('alice');
      const bob = await tenant.user('bob');
      const got = next(bob, 'signal');
      const ack = await alice.signal('bob', { sdp: 'offer' });
      assert.equal(ack.delivered, 'online');
      const signal = await got;
      assert.equal(signal.type, 'signal');
      assert.deepEqual(signal.body, { sdp: 'offer' });
      assert.equal(signal.seq, undefined);
    }));

  test('presence lists online users and their devices', () =>
    withTenant({}, async (tenant) => {
      const alice = await tenant.user('alice', 'phone');
      await tenant.user('bob', 'laptop');
      const presence = await alice.presence(['bob', 'zed']);
      assert.deepEqual(presence.bob, { online: true, devices: ['laptop'] });
      assert.equal(presence.zed.online, false);
    }));

  test('the msgpack serializer speaks the same protocol', () =>
    withTenant({}, async (tenant) => {
      const alice = await tenant.user('alice', 'd1', { serializer: 'msgpack' });
      const bob = await tenant.user('bob', 'd1', { serializer: 'msgpack' });
      const got = next(bob, 'message');
      await alice.send('bob', { n: 1, list: [1, 2, 3] });
      assert.deepEqual((await got).body, { n: 1, list: [1, 2, 3] });
      assert.equal((await alice.ping()).heartbeat_timeout_s, 30);
    }));
});

describe('sync', () => {
  test('messages sent while offline arrive through sync on connect', () =>
    withTenant({}, async (tenant) => {
      const alice = await tenant.user('alice');
      const first = await alice.send('bob', 'while you were out 1');
      const second = await alice.send('bob', 'while you were out 2');
      assert.equal(first.delivered, 'buffered');
      const seen = [];
      const bob = await connect({ url: file.node.url, tenant: tenant.id, token: 'tok-bob', deviceId: 'd1', autoSync: false });
      tenant.clients.push(bob);
      bob.onMessage((m, meta) => seen.push([m.msg_id, meta.source]));
      const result = await bob.sync();
      assert.equal(result.complete, true);
      assert.deepEqual(seen, [[first.msg_id, 'sync'], [second.msg_id, 'sync']]);
      assert.equal(bob.position.lastSeq, 2);
      assert.equal(typeof bob.position.epoch, 'string');
      const again = await bob.sync();
      assert.deepEqual(again.messages, []);
    }));

  test('one sync catches up an inbox a hostile sender filled past the frame cap, over many pages, in order', () =>
    withTenant({ config: { max_payload_bytes: 512 * 1024, max_user_message_qps: 1000 } }, async (tenant) => {
      const body = 'x'.repeat(512 * 1024 - 64); // 40 of these are 20 MiB: one page each under the 1 MiB frame cap
      const mallory = await tenant.user('mallory');
      const sent = [];
      for (let i = 0; i < 40; i += 1) sent.push((await mallory.send('bob', body)).msg_id);
      const bob = await connect({ url: file.node.url, tenant: tenant.id, token: 'tok-bob', deviceId: 'd1', autoSync: false });
      tenant.clients.push(bob);
      const seen = [];
      const positions = [];
      bob.onMessage((m) => seen.push([m.msg_id, m.seq, m.body === body]));
      bob.on('position', (p) => positions.push(p.lastSeq));
      const syncing = bob.sync();
      const live = await mallory.send('bob', 'after the flood'); // held until the catch-up is done
      const result = await syncing;
      assert.equal(result.complete, true);
      assert.ok(result.messages.length >= 40); // the live one too when a later page found it held
      assert.deepEqual(seen.slice(0, 40), sent.map((id, i) => [id, i + 1, true]));
      assert.ok(positions.length >= 40, `one position per page, got ${positions.length}`);
      if (seen.length === 40) await next(bob, 'message');
      assert.deepEqual(seen[40], [live.msg_id, 41, false]);
      assert.equal(bob.position.lastSeq, 41);
    }));

  test('a device that resumes from a saved position gets only what it missed', () =>
    withTenant({}, async (tenant) => {
      const alice = await tenant.user('alice');
      let bob = await tenant.user('bob');
      const got = next(bob, 'message');
      await alice.send('bob', 'seen live');
      await got;
      const saved = bob.position;
      await bob.close();
      const missed = await alice.send('bob', 'missed');
      const seen = [];
      bob = await connect({ url: file.node.url, tenant: tenant.id, token: 'tok-bob', deviceId: 'd1', position: saved });
      tenant.clients.push(bob);
      // connect() resolves after the automatic sync; replay it through a fresh listener to check
      assert.equal(bob.position.lastSeq, saved.lastSeq + 1);
      const later = await connect({ url: file.node.url, tenant: tenant.id, token: 'tok-bob', deviceId: 'd2', position: saved, autoSync: false });
      tenant.clients.push(later);
      later.onMessage((m) => seen.push(m.msg_id));
      await later.sync();
      assert.deepEqual(seen, [missed.msg_id]);
    }));

  test('a live message that skips seqs is held while the client fetches the skipped ones, then both come in order', () =>
    withTenant({}, async (tenant) => {
      const alice = await tenant.user('alice');
      const phone = await tenant.user('bob', 'phone');
      const first = next(phone, 'message');
      const missed = await alice.send('bob', 'the laptop was not listening');
      await first;
      // the laptop resumes from a position before that message and does not sync on connect
      const laptop = await connect({
        url: file.node.url, tenant: tenant.id, token: 'tok-bob', deviceId: 'laptop', autoSync: false,
        position: { lastSeq: 0, epoch: phone.position.epoch }, gapWaitMs: 100,
      });
      tenant.clients.push(laptop);
      const seen = [];
      laptop.onMessage((m, meta) => seen.push([m.body, meta.source]));
      const filled = next(laptop, 'sync');
      await alice.send('bob', 'live');
      await filled;
      assert.deepEqual(seen, [['the laptop was not listening', 'sync'], ['live', 'sync']]);
      assert.equal(laptop.position.lastSeq, 2);
      assert.equal(missed.delivered, 'online');
    }));

  test('a device\'s own sends take seqs of its inbox without looking like gaps', () =>
    withTenant({}, async (tenant) => {
      const alice = await tenant.user('alice');
      const phone = await tenant.user('bob', 'phone');
      await tenant.user('bob', 'laptop');
      let syncs = 0;
      phone.on('sync', () => { syncs += 1; });
      phone.gapWaitMs = 50;
      const ack = await phone.send('alice', 'from the phone'); // the copy's seq: the laptop's, not the phone's
      const got = next(phone, 'message');
      await alice.send('bob', 'reply');
      const reply = await got;
      assert.equal(reply.seq, ack.seq + 1);
      await new Promise((resolve) => setTimeout(resolve, 200));
      assert.equal(syncs, 0);
    }));

  test('a sync with an unknown epoch is reported as a gap', () =>
    withTenant({}, async (tenant) => {
      await tenant.user('alice');
      const bob = await connect({
        url: file.node.url, tenant: tenant.id, token: 'tok-bob', deviceId: 'd1', autoSync: false,
        position: { lastSeq: 5, epoch: 'not-the-epoch' },
      });
      tenant.clients.push(bob);
      const gap = next(bob, 'gap');
      const result = await bob.sync();
      assert.equal(result.complete, false);
      assert.equal((await gap).complete, false);
      assert.notEqual(bob.position.epoch, 'not-the-epoch');
    }));
});

describe('heartbeat and reconnect', () => {
  test('after a heartbeat timeout the client reconnects and syncs what it missed', () =>
    withTenant({ config: { heartbeat_timeout_s: 1 } }, async (tenant) => {
      const alice = await tenant.user('alice');
      const bob = await tenant.user('bob', 'd1', { heartbeat: false, reconnect: { initialDelayMs: 50 } });
      assert.equal(bob.heartbeatTimeoutS, 1);
      const dropped = await next(bob, 'disconnect');
      assert.ok(dropped.error instanceof HeartbeatTimeoutError);
      assert.equal(dropped.error.code, 4100);
      assert.equal(dropped.willRetry, true);
      const missed = await alice.send('bob', 'sent while bob was away');
      const caughtUp = next(bob, 'message', (m, meta) => m.msg_id === missed.msg_id);
      const back = await next(bob, 'connect');
      assert.equal(back.reconnected, true);
      await caughtUp;
    }));

  test('the heartbeat keeps an idle client connected past the timeout', () =>
    withTenant({ config: { heartbeat_timeout_s: 2 } }, async (tenant) => {
      const drops = [];
      const alice = await tenant.user('alice'); // heartbeat on (pings every ~667 ms when idle)
      alice.on('disconnect', (d) => drops.push(d));
      const bob = await tenant.user('bob', 'd1', { heartbeat: false, reconnect: false });
      const closed = await next(bob, 'close'); // bob is silent: closed after 2 s (+ up to 2 s)
      assert.ok(closed.error instanceof HeartbeatTimeoutError);
      const second = await tenant.user('carol', 'd1', { heartbeat: false, reconnect: false });
      await next(second, 'close'); // another full timeout later, alice is still there
      assert.deepEqual(drops, []);
      assert.equal(alice.connected, true);
      assert.equal((await alice.ping()).heartbeat_timeout_s, 2);
    }));

  test('given several nodes, the client passes over one it cannot reach', () =>
    withTenant({}, async (tenant) => {
      const dead = 'ws://127.0.0.1:9/ws'; // nothing listens there
      const bob = await tenant.user('bob', 'd1', { url: [dead, file.node.url] });
      assert.equal(bob.url, file.node.url);
      assert.deepEqual(bob.urls, [dead, file.node.url]);
    }));

  test('a call cut by the end of its session fails with NotConnectedError instead of waiting forever', () =>
    withTenant({}, async (tenant) => {
      await tenant.backend.session.register('tenant.slow', () => new Promise(() => {})); // never answers
      const bob = await tenant.user('bob', 'd1', { reconnect: false });
      const pending = bob.call('tenant.slow');
      await new Promise((resolve) => setTimeout(resolve, 100));
      await tenant.backend.kick('bob');
      await assert.rejects(pending, isError(NotConnectedError, 0));
    }));

  test('a kicked client is closed for good with KickedError', () =>
    withTenant({}, async (tenant) => {
      const bob = await tenant.user('bob');
      const closed = next(bob, 'close');
      const reconnects = [];
      bob.on('disconnect', (d) => reconnects.push(d));
      assert.deepEqual(await tenant.backend.kick('bob'), { kicked: 1 });
      const { error } = await closed;
      assert.ok(error instanceof KickedError);
      assert.equal(error.code, 4000);
      assert.deepEqual(reconnects, []);
      assert.equal(bob.connected, false);
    }));

  test('the same device connecting again replaces the older session for good', () =>
    withTenant({}, async (tenant) => {
      const older = await tenant.user('bob', 'phone');
      const closed = next(older, 'close');
      const newer = await tenant.user('bob', 'phone');
      const { error } = await closed;
      assert.ok(error instanceof ReplacedError);
      assert.equal(error.code, 4009);
      assert.equal(newer.connected, true);
    }));
});

describe('typed errors', () => {
  test('a bad token is refused with InvalidTokenError', () =>
    withTenant({}, async (tenant) => {
      await assert.rejects(
        connect({ url: file.node.url, tenant: tenant.id, token: 'nope', deviceId: 'd1' }),
        isError(InvalidTokenError, 4001),
      );
    }));

  test('an unknown tenant is refused with InvalidTenantError', async () => {
    await assert.rejects(
      connect({ url: file.node.url, tenant: 'no-such-tenant', token: 'tok-a', deviceId: 'd1' }),
      isError(InvalidTenantError, 4002),
    );
  });

  test('the per-user connection limit is refused with ConnectionLimitError', () =>
    withTenant({ config: { max_connections_per_user: 1 } }, async (tenant) => {
      await tenant.user('bob', 'phone');
      await assert.rejects(tenant.user('bob', 'laptop'), isError(ConnectionLimitError, 4429));
    }));

  test('a join while no backend serves the auth hook fails with HookUnavailableError', () =>
    withTenant({ backend: false, config: { hook_auth_timeout_ms: 200 } }, async (tenant) => {
      await assert.rejects(tenant.user('bob'), isError(HookUnavailableError, 4503));
    }));

  test('an invalid recipient fails with InvalidMessageError carrying the client msg id', () =>
    withTenant({}, async (tenant) => {
      const alice = await tenant.user('alice');
      await assert.rejects(alice.send('not valid!', 'x', { clientMsgId: 'c-9' }), (err) => {
        isError(InvalidMessageError, 400)(err);
        assert.equal(err.kwargs.status, 'FAILED');
        assert.equal(err.kwargs.client_msg_id, 'c-9');
        return true;
      });
    }));

  test('a body over max_payload_bytes fails with PayloadTooLargeError', () =>
    withTenant({ config: { max_payload_bytes: 64 } }, async (tenant) => {
      const alice = await tenant.user('alice');
      await assert.rejects(alice.send('bob', 'x'.repeat(100)), isError(PayloadTooLargeError, 413));
    }));

  test('sends over the tenant rate fail with RateLimitedError', () =>
    withTenant({ config: { max_message_qps: 1 } }, async (tenant) => {
      const alice = await tenant.user('alice');
      const results = await Promise.allSettled([1, 2, 3, 4, 5].map((i) => alice.send('bob', `m${i}`)));
      const refused = results.filter((r) => r.status === 'rejected').map((r) => r.reason);
      assert.ok(refused.length >= 3, `expected most of 5 sends refused, got ${refused.length}`);
      for (const err of refused) isError(RateLimitedError, 429)(err);
    }));

  test('a message the check hook refuses fails with RejectedError and its reason', () =>
    withTenant({}, async (tenant) => {
      const alice = await tenant.user('alice');
      await assert.rejects(alice.send('bob', { text: 'bad' }), (err) => {
        isError(RejectedError, 403)(err);
        assert.equal(err.kwargs.reason, 'no bad words');
        return true;
      });
    }));

  test('a group without members fails with EmptyGroupError', () =>
    withTenant({}, async (tenant) => {
      const alice = await tenant.user('alice');
      await assert.rejects(alice.sendGroup('ghosts', 'hello?'), isError(EmptyGroupError, 404));
    }));

  test('a failing group-members hook fails the send with HookUnavailableError 503', () =>
    withTenant({}, async (tenant) => {
      const alice = await tenant.user('alice');
      await assert.rejects(alice.sendGroup('broken', 'hello'), isError(HookUnavailableError, 503));
      assert.deepEqual(tenant.hookErrors.map((e) => e.message), ['directory down']);
    }));

  test('presence on a tenant without presence queries fails with NotAuthorizedError', () =>
    withTenant({ config: { presence_queries: false } }, async (tenant) => {
      const alice = await tenant.user('alice');
      await assert.rejects(alice.presence(['bob']), isError(NotAuthorizedError, 403));
    }));
});
