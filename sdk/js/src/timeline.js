// What an app shows: messages by msg_id, with recalls and edits applied (protocol.md section 11).
// A recall or an edit arrives as its own message (type `recall` / `edit`, `ref_msg_id` = the
// original), live or from sync; held copies of the original already carry the change (a tombstone
// with `recalled: true` and no body, or the new body with `edited_at`). `apply` folds either into the
// original, whichever comes first, so an app never shows a recalled body.

const SHOWN = new Set(['chat', 'group_chat', 'system']);

export class Timeline {
  #messages = new Map(); // msg_id -> message as shown, in arrival order
  #pending = new Map(); // ref_msg_id -> a change whose original has not come yet
  #limit;

  constructor({ limit = 10_000 } = {}) {
    this.#limit = limit;
  }

  get size() {
    return this.#messages.size;
  }

  /** The messages as shown, oldest first. */
  messages() {
    return [...this.#messages.values()];
  }

  get(msgId) {
    return this.#messages.get(msgId);
  }

  /**
   * Take any message; returns what to show now for the message it concerns (the new one, or the
   * original after a recall/edit), or null when nothing shown changed.
   */
  apply(message) {
    if (message.type === 'recall' || message.type === 'edit') {
      const original = this.#messages.get(message.ref_msg_id);
      if (!original) {
        this.#remember(this.#pending, message.ref_msg_id, message);
        return null;
      }
      const changed = applyChange(original, message);
      this.#messages.set(message.ref_msg_id, changed);
      return changed;
    }
    if (!SHOWN.has(message.type)) return null;
    const known = this.#messages.get(message.msg_id);
    if (known && (known.recalled || (known.edited_at ?? 0) >= (message.edited_at ?? 0))) return null;
    const change = this.#pending.get(message.msg_id);
    this.#pending.delete(message.msg_id);
    const shown = change ? applyChange(message, change) : message;
    this.#remember(this.#messages, message.msg_id, shown);
    return shown;
  }

  #remember(store, key, value) {
    store.set(key, value);
    if (store.size > this.#limit) store.delete(store.keys().next().value);
  }
}

/** The original as it is after `change` (a recall or an edit); nothing undoes a recall. */
export function applyChange(original, change) {
  if (original.recalled) return original;
  if (change.type === 'recall') return { ...original, body: null, recalled: true };
  if ((original.edited_at ?? 0) > change.ts) return original; // a newer edit is shown already
  return { ...original, body: change.body, edited_at: change.ts, content_type: change.content_type ?? original.content_type };
}
