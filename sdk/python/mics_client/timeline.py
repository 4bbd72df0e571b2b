"""What an app shows: messages by msg_id, with recalls and edits applied (protocol.md section 11).

A recall or an edit arrives as its own Message (type `recall` / `edit`, `ref_msg_id` = the
original), live or from sync; held copies of the original already carry the change (a tombstone
with `recalled: true` and no body, or the new body with `edited_at`). `Timeline.apply` folds
either into the original, whichever comes first, so the app never shows a recalled body.
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict

from mics_client.types import Message

SHOWN = ("chat", "group_chat", "system")


class Timeline:
    """Messages in arrival order with changes applied; bounded (the oldest go first)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._messages: OrderedDict[str, Message] = OrderedDict()
        self._pending: OrderedDict[str, Message] = OrderedDict()  # changes whose original has not come yet
        self._limit = limit

    def __len__(self) -> int:
        return len(self._messages)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(list(self._messages.values()))

    def get(self, msg_id: str) -> Message | None:
        return self._messages.get(msg_id)

    def apply(self, message: Message) -> Message | None:
        """Take any message; returns what to show now for the message it concerns (the new one, or
        the original after a recall/edit), or None when nothing shown changed (receipts, signals, a
        change of a message not seen yet)."""
        if message.is_change:
            assert message.ref_msg_id is not None
            original = self._messages.get(message.ref_msg_id)
            if original is None:
                self._remember(self._pending, message.ref_msg_id, message)
                return None
            changed = _changed(original, message)
            self._messages[message.ref_msg_id] = changed
            return changed
        if message.type not in SHOWN:
            return None
        known = self._messages.get(message.msg_id)
        if known is not None and (known.recalled or (known.edited_at or 0) >= (message.edited_at or 0)):
            return None  # a repeat, or an older copy of what is shown
        change = self._pending.pop(message.msg_id, None)
        shown = _changed(message, change) if change is not None else message
        self._remember(self._messages, message.msg_id, shown)
        return shown

    def _remember(self, store: OrderedDict[str, Message], key: str, message: Message) -> None:
        store[key] = message
        if len(store) > self._limit:
            store.popitem(last=False)


def _changed(original: Message, change: Message) -> Message:
    if original.recalled:
        return original  # nothing undoes a recall
    if change.type == "recall":
        return dataclasses.replace(original, body=None, recalled=True)
    if (original.edited_at or 0) > change.ts:
        return original  # a newer edit is shown already
    return dataclasses.replace(original, body=change.body, edited_at=change.ts,
                               content_type=change.content_type or original.content_type)  # fmt: skip
