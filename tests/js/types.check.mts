// Compiled (not run) by `npm --prefix sdk/js run typecheck` in scripts/test-js: the shipped .d.ts
// files must describe how the SDK is used in docs/sdk-js.md.
import {
  connect, MicsClient, NotFoundError, RejectedError, MicsError, Timeline, type Ack, type Message, type PresenceChange,
  type AgentStream,
} from '../../sdk/js/src/index.js';
import { TenantBackend, checkEach, createHookServer, HookRejection, Reply, type AgentRequest } from '../../sdk/js/src/hooks.js';

export async function client(): Promise<void> {
  const c: MicsClient = await connect({
    url: 'ws://localhost:8080/ws', tenant: 'demo', token: 'demo-alice', deviceId: 'd1',
    serializer: 'msgpack', groups: true, reconnect: { initialDelayMs: 100 },
    onMessage: (m: Message, meta) => console.log(m.body, meta.source),
  });
  const ack: Ack = await c.send('bob', { text: 'hi' }, { clientMsgId: 'x' });
  const group = await c.sendGroup('team', 'hello');
  const n: number = group.recipients;
  const presence = await c.presence(['bob']);
  const online: boolean = presence.bob.online;
  c.on('disconnect', ({ error, delayMs }) => console.log(error.uri, error.code, delayMs));
  c.on('gap', ({ complete, lastSeq }) => console.log(complete, lastSeq));
  const { lastSeq, epoch } = c.position;
  try {
    await c.receipt('bob', [ack.msg_id], 'read');
  } catch (err) {
    if (err instanceof RejectedError) console.log(err.kwargs.reason, err.code);
    if (err instanceof MicsError && err.isFinal) console.log('final');
  }
  console.log(n, online, lastSeq, epoch, RejectedError.uri);
  const reply = await c.sendGroup('team', 'hi @bob', { mentions: ['bob'], replyTo: ack.msg_id });
  await c.edit(reply.msg_id, 'hi @bob!', { contentType: 'text/plain' });
  try {
    await c.recall(reply.msg_id);
  } catch (err) {
    if (err instanceof NotFoundError) console.log(err.code);
  }
  const timeline = new Timeline();
  c.onMessage((m) => timeline.apply(m));
  c.onRecall((m) => console.log(timeline.apply(m)?.recalled, m.ref_msg_id));
  c.onEdit((m) => console.log(timeline.apply(m)?.edited_at));
  c.onTyping((m) => console.log(m.body.typing, m.group_id));
  const sent: Ack | null = await c.typing({ groupId: 'team' });
  await c.typing({ toUserId: 'bob' }, false);
  const unwatch = await c.watchPresence('bob', (p: PresenceChange) => console.log(p.online, p.devices, p.snapshot));
  unwatch();
  const shown: Message[] = timeline.messages();
  console.log(sent, shown.length, shown[0]?.mentions, shown[0]?.reply_to);
  const asked = await c.send('helper', { text: 'summarize' });
  for (const call of asked.agents ?? []) {
    if (call.status !== 'started' || !call.stream_id) continue;
    const stream: AgentStream = c.stream(call.stream_id);
    for await (const m of stream) console.log(m.type === 'agent_chunk' ? m.body : m.stream_id, m.chunk_seq);
    const stop = stream.on((m, s) => console.log(m.msg_id, s.text));
    stop();
    const final: Message = await stream.done();
    console.log(final.reply_to, stream.error?.code, stream.agentId);
  }
  c.onAgentStream((s) => console.log(s.streamId, s.ended));
  c.onAgentChunk((m) => console.log(m.body.delta, m.chunk_seq));
  const listed = await c.agents();
  console.log(listed[0]?.agent_id, listed[0]?.description);
  await c.close();
}

export async function backend(): Promise<void> {
  const b = await new TenantBackend({
    url: 'ws://localhost:8080/ws', tenant: 'acme', secret: 's',
    hooks: {
      auth: ({ token }) => {
        if (!token) throw new HookRejection('no');
        return { user_id: token };
      },
      checkMessage: () => ({ allow: true }),
      checkMessages: ({ messages }) => ({ verdicts: messages.map((m) => (m.body ? { allow: true } : null)) }),
      groupMembers: async () => ({ members: ['a'] }),
    },
  }).start();
  await b.membersChanged('g', { added: ['a'] });
  const batched = await checkEach((m) => m.type === 'chat')({ messages: [], timeout_ms: 150 });
  console.log(batched.verdicts.length);
  const agents = {
    echo: async function* ({ text, context }: AgentRequest) {
      for (const word of text.split(' ')) yield `${word} `;
      yield new Reply({ text, earlier: context.length }, 'application/json');
    },
    counter: ({ text }: AgentRequest) => text.split(' ').length,
  };
  await new TenantBackend({ url: 'ws://localhost:8080/ws', tenant: 'acme', secret: 's', agents }).start();
  const server = createHookServer({ secret: 's', hooks: {}, agents });
  const base: string = await server.listenAsync(0);
  console.log(base);
}
