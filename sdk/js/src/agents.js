// Writing an AI agent for MICS in a few lines (protocol.md section 12), in Node.
// An agent is a function of the request `{agentId, tenantId, streamId, message, context, text}` that
// yields its answer piece by piece (an async generator): each piece reaches the conversation at once as
// an `agent_chunk`; the final message is the pieces joined (when they are strings), or what it yields
// last as `new Reply(body, contentType)`. A plain (async) function that returns a value answers in one go.
//
//   const agents = { echo: async function* ({ text }) { for (const w of text.split(' ')) yield `${w} `; } };
//   new TenantBackend({ url, tenant, secret, hooks, agents })    // WAMP: mics.agent.<agent_id>
//   createHookServer({ secret, hooks, agents })                  // HTTP: POST /agents/<agent_id>, NDJSON
import autobahn from './autobahn.js';

export const AGENT_PREFIX = 'mics.agent.';
export const NDJSON = 'application/x-ndjson';

/** The final answer, when it is not simply the pieces joined: yield it last (or return it). */
export class Reply {
  constructor(body, contentType) {
    this.body = body;
    this.contentType = contentType;
  }
}

/** The text of a message body: a string body, or an object body's `text`. */
export function textOf(body) {
  if (typeof body === 'string') return body;
  return body && typeof body === 'object' && typeof body.text === 'string' ? body.text : '';
}

/** What an agent function gets, from the call's fields. */
export function agentRequest(fields = {}) {
  const message = fields.message && typeof fields.message === 'object' ? fields.message : {};
  return {
    agentId: String(fields.agent_id ?? ''),
    tenantId: String(fields.tenant_id ?? ''),
    streamId: String(fields.stream_id ?? ''),
    message,
    /** up to the agent's `context_messages` held messages of that conversation, oldest first */
    context: Array.isArray(fields.context) ? fields.context : [],
    text: textOf(message.body),
  };
}

/** Run an agent function: `emit(delta)` for each piece; resolves with the final `{body, content_type?}`. */
export async function runAgent(fn, request, emit) {
  const result = fn(request);
  const pieces = [];
  let final = null;
  const take = async (item) => {
    if (item instanceof Reply) final = item;
    else if (item !== undefined && item !== null) {
      pieces.push(item);
      await emit(item);
    }
  };
  if (result && typeof result[Symbol.asyncIterator] === 'function') {
    for await (const item of result) await take(item);
  } else if (result && typeof result.next === 'function' && typeof result[Symbol.iterator] === 'function') {
    for (const item of result) await take(item);
  } else {
    const value = await result;
    final = value instanceof Reply ? value : new Reply(value);
  }
  final ??= new Reply(pieces.every((p) => typeof p === 'string') ? pieces.join('') : pieces);
  const answer = { body: final.body };
  if (final.contentType) answer.content_type = final.contentType;
  return answer;
}

/** An Autobahn endpoint for `mics.agent.<agent_id>`: pieces as progressive results, the answer as the result. */
export function wampAgent(fn, crashed) {
  return async (args, kwargs, details) => {
    const emit = (delta) => details?.progress?.([], { delta });
    try {
      return new autobahn.Result([], await runAgent(fn, agentRequest(kwargs || {}), emit));
    } catch (err) {
      crashed(err);
      throw new autobahn.Error('tenant.error.agent_failed', ['the agent failed']);
    }
  };
}

/**
 * Answer one verified HTTP agent call on `res` as NDJSON, each piece as it comes. Once the status went
 * out, a failure is said in the stream (`{"error": ...}`); a node that hangs up stops the agent.
 */
export async function streamAgent(fn, fields, req, res, onError) {
  res.writeHead(200, { 'Content-Type': NDJSON });
  let gone = false;
  res.on('close', () => {
    gone = !res.writableFinished;
  });
  const line = (obj) => res.write(`${JSON.stringify(obj)}\n`);
  try {
    const answer = await runAgent(fn, agentRequest(fields), (delta) => {
      if (gone) throw new HungUp();
      line({ delta });
    });
    if (!gone) line(answer);
  } catch (err) {
    if (err instanceof HungUp) return;
    onError?.(err);
    if (!gone) line({ error: 'the agent failed' });
  }
  res.end();
}

class HungUp extends Error {}
