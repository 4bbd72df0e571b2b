// A Node bot on the demo tenant: answers every 1:1 message, and group messages that mention @bot.
// Run (with a node up from scripts/run):  npm --prefix sdk/js ci && node examples/node_bot.mjs
// Env: MICS_URL (ws://localhost:8080/ws), MICS_TENANT (demo), MICS_TOKEN (demo-bot), BOT_DEVICE (bot-1)
import { connect, RejectedError } from '../sdk/js/src/index.js';

const url = process.env.MICS_URL || 'ws://localhost:8080/ws';
const tenant = process.env.MICS_TENANT || 'demo';
const token = process.env.MICS_TOKEN || 'demo-bot';

function answer(text) {
  const t = String(text || '').trim().toLowerCase();
  if (t === 'help' || t === '@bot help') return 'I answer "time", "ping" and echo anything else.';
  if (t.includes('time')) return `It is ${new Date().toISOString()} here.`;
  if (t.includes('ping')) return 'pong';
  return `You said: ${text}`;
}

const textOf = (body) => (body && typeof body === 'object' ? body.text : body);

let bot = null; // set once connect() resolves; messages before that are the initial catch-up
bot = await connect({
  url,
  tenant,
  token,
  deviceId: process.env.BOT_DEVICE || 'bot-1',
  groups: true,
  onMessage: async (m, { source }) => {
    if (!bot || source === 'sync' || m.from_user_id === bot.userId || m.type === 'system') return;
    try {
      if (m.type === 'chat') {
        await bot.receipt(m.from_user_id, [m.msg_id], 'read');
        await bot.send(m.from_user_id, { text: answer(textOf(m.body)) });
      } else if (m.type === 'group_chat' && /@bot\b/i.test(textOf(m.body) || '')) {
        await bot.sendGroup(m.group_id, { text: `@${m.from_user_id} ${answer(textOf(m.body))}` });
      }
    } catch (err) {
      console.error(err instanceof RejectedError ? `refused: ${err.kwargs.reason}` : err);
    }
  },
});
bot.on('disconnect', ({ reason, delayMs }) => console.log(`disconnected (${reason}), retrying in ${delayMs} ms`));
bot.on('connect', ({ reconnected }) => reconnected && console.log('reconnected'));
bot.on('close', ({ reason, error }) => {
  console.log(`closed: ${reason}`);
  process.exit(error ? 1 : 0);
});
console.log(`bot "${bot.userId}" online in tenant ${tenant}; message it from the demo page`);
process.on('SIGINT', () => bot.close().then(() => process.exit(0)));
process.on('SIGTERM', () => bot.close().then(() => process.exit(0)));
