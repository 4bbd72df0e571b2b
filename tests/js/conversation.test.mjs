// The JS SDK's section 11 helpers against a real node: mentions and replies, recall and edit folded
// into a Timeline, throttled typing, presence watches with callbacks, typed errors.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { NotAuthorizedError, NotFoundError, RejectedError, Timeline } from '../../sdk/js/src/index.js';
import { makeHooks, next, nodeForFile } from './helpers.mjs';

const { withTenant } = nodeForFile();
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

test('mentions and replies are sent and received', () =>
  withTenant({ hooks: makeHooks({ team: ['alice', 'bob'] }) }, async (tenant) => {
    const alice = await tenant.user('alice');
    const bob = await tenant.user('bob', 'd1', { groups: ['team'] });
    const got = next(bob, 'message');
    const ack = await alice.sendGroup('team', 'hi @bob', { mentions: ['bob'], replyTo: 'm-0' });
    const message = await got;
    assert.equal(message.msg_id, ack.msg_id);
    assert.deepEqual(message.mentions, ['bob']);
    assert.equal(message.reply_to, 'm-0');
    const back = next(alice, 'message');
    await bob.send('alice', 'seen', { replyTo: message.msg_id });
    const reply = await back;
    assert.equal(reply.reply_to, message.msg_id);
    assert.equal(reply.mentions, undefined);
  }));

test('a timeline shows edits and recalls, live and for a device that syncs later', () =>
  withTenant({}, async (tenant) => {
    const alice = await tenant.user('alice');
    const bob = await tenant.user('bob');
    const timeline = new Timeline();
    for (const event of ['message', 'recall', 'edit']) bob.on(event, (m) => timeline.apply(m));
    const first = await alice.send('bob', 'frist');
    const second = await alice.send('bob', 'oops');
    await sleep(100);
    const edited = next(bob, 'edit');
    const recalled = next(bob, 'recall');
    await alice.edit(first.msg_id, 'first');
    await alice.recall(second.msg_id);
    assert.equal((await edited).ref_msg_id, first.msg_id);
    assert.equal((await recalled).ref_msg_id, second.msg_id);
    assert.deepEqual(timeline.messages().map((m) => [m.msg_id, m.body, Boolean(m.recalled)]), [
      [first.msg_id, 'first', false],
      [second.msg_id, null, true],
    ]);
    assert.ok(timeline.get(first.msg_id).edited_at >= first.ts);
    const later = new Timeline();
    const tablet = await tenant.user('bob', 'tablet', {
      onMessage: (m) => later.apply(m),
      position: { lastSeq: 0, epoch: null },
    });
    tablet.on('recall', (m) => later.apply(m));
    tablet.on('edit', (m) => later.apply(m));
    assert.deepEqual(later.messages().map((m) => [m.body, Boolean(m.recalled)]), [['first', false], [null, true]]);
  }));

test('recall and edit errors are typed', () =>
  withTenant({}, async (tenant) => {
    const alice = await tenant.user('alice');
    const mallory = await tenant.user('mallory');
    const sent = await alice.send('bob', 'mine');
    await assert.rejects(mallory.recall(sent.msg_id), (err) => err instanceof RejectedError && err.code === 403);
    await assert.rejects(alice.edit('0'.repeat(32), 'x'), (err) => err instanceof NotFoundError && err.code === 404);
    await assert.rejects(alice.edit(sent.msg_id, { text: 'bad' }), (err) => err instanceof RejectedError && err.kwargs.reason === 'no bad words');
  }));

test('typing is throttled per conversation and arrives as typing events, not as messages or signals', () =>
  withTenant({ hooks: makeHooks({ team: ['alice', 'bob'] }) }, async (tenant) => {
    const alice = await tenant.user('alice', 'd1', { typingIntervalMs: 400 });
    const bob = await tenant.user('bob', 'd1', { groups: ['team'] });
    const typing = [];
    const other = [];
    bob.onTyping((m) => typing.push([m.body.typing, m.group_id ?? null]));
    bob.onSignal((m) => other.push(m));
    bob.onMessage((m) => other.push(m));
    assert.ok(await alice.typing({ toUserId: 'bob' }));
    assert.equal(await alice.typing({ toUserId: 'bob' }), null, 'throttled');
    assert.ok(await alice.typing({ groupId: 'team' }), 'another conversation');
    assert.ok(await alice.typing({ toUserId: 'bob' }, false), 'stopping is never throttled');
    assert.equal(await alice.typing({ toUserId: 'bob' }, false), null, 'nothing more to stop');
    await sleep(450);
    assert.ok(await alice.typing({ toUserId: 'bob' }));
    await sleep(200);
    assert.deepEqual(typing, [[true, null], [true, 'team'], [false, null], [true, null]]);
    assert.deepEqual(other, []);
    await assert.rejects(alice.typing({}), TypeError);
  }));

test('a presence watch gets the current state, then every change, and stops when asked', () =>
  withTenant({}, async (tenant) => {
    const carol = await tenant.user('carol');
    const seen = [];
    const unwatch = await carol.watchPresence('alice', (change) => seen.push(change));
    assert.deepEqual(seen.map((c) => [c.online, c.snapshot]), [[false, true]]);
    const phone = await tenant.user('alice', 'phone');
    await sleep(300);
    assert.deepEqual([seen.at(-1).online, seen.at(-1).devices, seen.at(-1).snapshot], [true, ['phone'], false]);
    await phone.close();
    await sleep(300);
    assert.deepEqual([seen.at(-1).online, seen.at(-1).devices], [false, []]);
    unwatch();
    const count = seen.length;
    await tenant.user('alice', 'laptop');
    await sleep(300);
    assert.equal(seen.length, count, 'unwatched');
  }));

test('a presence watch is refused with a typed error when presence queries are off', () =>
  withTenant({ config: { presence_queries: false } }, async (tenant) => {
    const carol = await tenant.user('carol');
    await assert.rejects(carol.watchPresence('alice', () => {}), (err) => err instanceof NotAuthorizedError);
  }));
