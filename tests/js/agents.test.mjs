// The JS SDK's side of section 12 against a real node: agents written as plain (async generator)
// functions, served by TenantBackend (WAMP, progressive results) and createHookServer (HTTP, NDJSON),
// and clients following their answers as streams (async iterator and callbacks).
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Reply, signHeaders } from '../../sdk/js/src/hooks.js';
import { makeHooks, next, nodeForFile } from './helpers.mjs';

const { withTenant } = nodeForFile();

const agents = {
  // streams word by word; the final answer says how much came before
  echo: async function* ({ text, context }) {
    const words = text.split(' ');
    for (const [n, word] of words.entries()) yield n ? ` ${word}` : word;
    yield new Reply({ text: `${text} (after ${context.length} earlier)` }, 'application/json');
  },
  // answers in one go
  counter: ({ text }) => text.split(' ').length,
  broken: async function* () {
    yield 'starting';
    throw new Error('the model fell over');
  },
};
const agentConfig = { counter: { keywords: ['count!'] } };

for (const transport of ['wamp', 'http']) {
  test(`${transport}: a client iterates an agent's answer, chunk by chunk, to its final message`, () =>
    withTenant({ transport, agents, agentConfig }, async (tenant) => {
      const alice = await tenant.user('alice');
      const chunks = [];
      alice.onAgentChunk((m) => chunks.push(m));
      const warm = await alice.send('echo', { text: 'warm up' });
      await alice.stream(warm.agents[0].stream_id).done();
      const ack = await alice.send('echo', { text: 'one two three' });
      const [call] = ack.agents;
      assert.equal(call.status, 'started');
      const stream = alice.stream(call.stream_id);
      const seen = [];
      for await (const message of stream) seen.push(message);
      assert.deepEqual(seen.slice(0, -1).map((m) => [m.chunk_seq, m.body.delta]), [[1, 'one'], [2, ' two'], [3, ' three']]);
      const final = seen.at(-1);
      assert.deepEqual([final.type, final.stream_id, final.reply_to], ['chat', call.stream_id, ack.msg_id]);
      assert.deepEqual(final.body, { text: 'one two three (after 2 earlier)' });
      assert.equal(final.content_type, 'application/json');
      assert.equal(stream.text, 'one two three');
      assert.equal(stream.error, null);
      assert.equal(stream.agentId, 'echo');
      const replayed = [];
      stream.on((m) => replayed.push(m.msg_id));
      assert.deepEqual(replayed, seen.map((m) => m.msg_id), 'a callback gets what came already');
      assert.deepEqual(chunks.filter((m) => m.stream_id === call.stream_id).map((m) => m.chunk_seq), [1, 2, 3]);
    }));

  test(`${transport}: a group member hears of a new stream; a one-shot answer has no chunks; errors are readable`, () =>
    withTenant({ transport, agents, agentConfig, hooks: makeHooks({ team: ['alice', 'bob'] }) }, async (tenant) => {
      const alice = await tenant.user('alice');
      const bob = await tenant.user('bob', 'd1', { groups: ['team'] });
      const started = next(bob, 'agentStream');
      const ack = await alice.sendGroup('team', { text: 'count! these four words' });
      assert.deepEqual(ack.agents.map((a) => a.agent_id), ['counter']);
      const stream = await started;
      const final = await stream.done();
      assert.deepEqual([stream.chunks.length, final.type, final.body, final.from_user_id], [0, 'group_chat', 4, 'counter']);
      const failed = await alice.send('broken', 'go');
      const broken = alice.stream(failed.agents[0].stream_id);
      await broken.done();
      assert.equal(broken.final.type, 'system');
      assert.equal(broken.error.code, 503);
      assert.deepEqual(await alice.agents(), ['broken', 'counter', 'echo'].map((id) => ({ agent_id: id, name: id }))
        .sort((a, b) => Object.keys(agents).indexOf(a.agent_id) - Object.keys(agents).indexOf(b.agent_id)));
    }));
}

test('the http hook server streams only signed calls of the agents it serves', () =>
  withTenant({ transport: 'http', agents }, async (tenant) => {
    const base = tenant.server.address();
    const url = (id) => `http://127.0.0.1:${base.port}/agents/${id}`;
    const body = JSON.stringify({ agent_id: 'echo', tenant_id: tenant.id, stream_id: 's1', message: { body: 'a b' } });
    const post = async (id, headers) => {
      const res = await fetch(url(id), { method: 'POST', headers, body });
      return [res.status, await res.text()];
    };
    const signed = () => ({ ...signHeaders(tenant.id, tenant.secret, body), 'Content-Type': 'application/json' });
    const [status, text] = await post('echo', signed());
    assert.equal(status, 200);
    assert.deepEqual(text.trim().split('\n').map((line) => JSON.parse(line)), [
      { delta: 'a' }, { delta: ' b' }, { body: { text: 'a b (after 0 earlier)' }, content_type: 'application/json' },
    ]);
    assert.equal((await post('nobody', signed()))[0], 404);
    assert.equal((await post('echo', { ...signHeaders(tenant.id, 'wrong', body) }))[0], 401);
  }));
