// A tiny event emitter that works the same in Node and the browser (no node:events import).
export class Emitter {
  #handlers = new Map();

  /** Add a handler; returns a function that removes it. */
  on(event, handler) {
    if (!this.#handlers.has(event)) this.#handlers.set(event, new Set());
    this.#handlers.get(event).add(handler);
    return () => this.off(event, handler);
  }

  off(event, handler) {
    this.#handlers.get(event)?.delete(handler);
  }

  /** Resolve with the next event's first argument. */
  once(event) {
    return new Promise((resolve) => {
      const off = this.on(event, (value) => {
        off();
        resolve(value);
      });
    });
  }

  emit(event, ...args) {
    const handlers = this.#handlers.get(event);
    if (!handlers || handlers.size === 0) return false;
    for (const handler of [...handlers]) {
      try {
        handler(...args);
      } catch (err) {
        if (event === 'error') throw err;
        this.emit('error', err);
      }
    }
    return true;
  }
}
