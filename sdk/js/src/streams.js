// AI agents' answers as they stream (protocol.md section 12), on the client side.
// An agent's answer is live `agent_chunk` messages (`chunk_seq` 1, 2, ...; `body: {delta}`), then one
// final message with the same `stream_id` (`chat` / `group_chat`, or `system` with `body.error` when the
// call failed). The final message is held like any message, so a device that missed the chunks gets it
// by sync. `AgentStream` gathers one answer; `StreamTable` keeps the recent ones, so a stream asked for
// after its first chunks came (an Ack is awaited, then the stream) still gives them from the start.

export const MAX_STREAMS = 100; // streams kept per client (the most recent)
export const MAX_CHUNKS = 10_000; // chunks kept per stream (the node sends at most this many)

/** The piece of the answer an `agent_chunk` carries (`body.delta`); undefined for other messages. */
export const deltaOf = (message) => (message?.type === 'agent_chunk' ? message.body?.delta : undefined);

/** `{code, message}` of a `system` message that ends an agent's stream without an answer, else null. */
export function agentErrorOf(message) {
  const error = message?.type === 'system' && message.stream_id ? message.body?.error : null;
  return error && typeof error === 'object' ? error : null;
}

export class AgentStream {
  constructor(streamId) {
    this.streamId = streamId;
    this.agentId = null;
    this.chunks = [];
    this.final = null;
  }

  #listeners = new Set();

  get ended() {
    return this.final !== null;
  }

  /** The string deltas so far, joined: what a chat UI shows while the answer grows. */
  get text() {
    return this.chunks.map(deltaOf).filter((d) => typeof d === 'string').join('');
  }

  /** `{code, message}` when the stream ended without an answer (504 timeout, 503 error). */
  get error() {
    return agentErrorOf(this.final);
  }

  /** A chunk (in chunk_seq order; repeats and chunks after the end are dropped) or the final message. */
  add(message) {
    if (this.final) return false;
    this.agentId ??= message.from_user_id;
    if (message.type === 'agent_chunk') {
      const last = this.chunks.length ? this.chunks[this.chunks.length - 1].chunk_seq : 0;
      if (!(message.chunk_seq > last) || this.chunks.length >= MAX_CHUNKS) return false;
      this.chunks.push(message);
    } else {
      this.final = message;
    }
    for (const listener of [...this.#listeners]) listener(message, this);
    return true;
  }

  /**
   * `callback(message, stream)` for each chunk, then the final message: what came already first, then
   * as it comes. Returns a function that stops it.
   */
  on(callback) {
    for (const message of [...this.chunks, ...(this.final ? [this.final] : [])]) callback(message, this);
    if (this.final) return () => {};
    this.#listeners.add(callback);
    return () => this.#listeners.delete(callback);
  }

  /** Resolves with the final message. */
  done() {
    if (this.final) return Promise.resolve(this.final);
    return new Promise((resolve) => {
      const listener = (message) => {
        if (message !== this.final) return;
        this.#listeners.delete(listener);
        resolve(message);
      };
      this.#listeners.add(listener);
    });
  }

  /** `for await (const message of stream)`: each chunk, then the final message, from the start. */
  async *[Symbol.asyncIterator]() {
    let next = 0;
    for (;;) {
      if (next < this.chunks.length) {
        yield this.chunks[next];
        next += 1;
      } else if (this.final) {
        yield this.final;
        return;
      } else {
        await new Promise((resolve) => {
          const listener = () => {
            this.#listeners.delete(listener);
            resolve();
          };
          this.#listeners.add(listener);
        });
      }
    }
  }
}

/** The client's recent streams by id (bounded: the oldest go first). */
export class StreamTable {
  constructor(onNew, limit = MAX_STREAMS) {
    this.onNew = onNew;
    this.limit = limit;
    this.streams = new Map();
  }

  get(streamId) {
    let stream = this.streams.get(streamId);
    if (!stream) {
      stream = new AgentStream(streamId);
      this.streams.set(streamId, stream);
      if (this.streams.size > this.limit) this.streams.delete(this.streams.keys().next().value);
    }
    return stream;
  }

  /** A chunk or a final message into its stream; the stream when the message was new to it. */
  arrived(message) {
    const stream = this.get(message.stream_id);
    const first = !stream.chunks.length && !stream.final;
    if (!stream.add(message)) return null;
    if (first) this.onNew(stream);
    return stream;
  }
}
