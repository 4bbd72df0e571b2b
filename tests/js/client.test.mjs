import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { connect, InvalidTokenError } from '../../sdk/js/src/index.js';
import { makeTenant, next, startNode } from './helpers.mjs';

let node;
before(async () => {
  node = await startNode();
});
after(async () => {
  await node?.stop();
});

describe('client', () => {
  test('two users exchange a 1:1 message and a read receipt', async () => {
    const tenant = await makeTenant(node);
    try {
      const alice = await tenant.user('alice');
      const bob = await tenant.user('bob');
      const got = next(bob, 'message');
      const ack = await alice.send('bob', { text: 'hi bob' });
      assert.equal(ack.status, 'SENT');
      assert.equal(ack.delivered, 'online');
      const message = await got;
      assert.equal(message.msg_id, ack.msg_id);
      assert.equal(message.from_user_id, 'alice');
      assert.deepEqual(message.body, { text: 'hi bob' });
      const receipt = next(alice, 'receipt');
      await bob.receipt('alice', [message.msg_id], 'read');
      const r = await receipt;
      assert.deepEqual(r.body, { msg_ids: [message.msg_id], kind: 'read' });
    } finally {
      await tenant.close();
    }
  });

  test('a bad token is refused with InvalidTokenError and no reconnect', async () => {
    const tenant = await makeTenant(node);
    try {
      await assert.rejects(
        connect({ url: node.url, tenant: tenant.id, token: 'nope', deviceId: 'd1' }),
        (err) => err instanceof InvalidTokenError && err.code === 4001 && err.uri === 'mics.error.invalid_token',
      );
    } finally {
      await tenant.close();
    }
  });
});
