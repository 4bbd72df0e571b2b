// Compiled (not run) by `npm --prefix sdk/js run typecheck` in scripts/test-js: the shipped .d.ts
// files must describe how the SDK is used in docs/sdk-js.md.
import { connect, MicsClient, RejectedError, MicsError, type Ack, type Message } from '../../sdk/js/src/index.js';
import { TenantBackend, checkEach, createHookServer, HookRejection } from '../../sdk/js/src/hooks.js';

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
  const server = createHookServer({ secret: 's', hooks: {} });
  const base: string = await server.listenAsync(0);
  console.log(base);
}
