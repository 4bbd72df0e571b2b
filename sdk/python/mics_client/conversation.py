"""Section 11 of the client (protocol.md): recall and edit, group signals and throttled typing
indicators, live presence watches, and the callbacks for them. A mixin of `ClientCore`, which
provides the session, `_call`, `_own`, `_spawn`, `_fire` and the callback table."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from autobahn.exception import Disconnected
from autobahn.wamp.exception import ApplicationError, TransportLost

from mics_client import errors
from mics_client.types import Ack, PresenceChange

PRESENCE_PREFIX = "mics.presence."
TYPING_INTERVAL_S = 3.0  # a typing signal per conversation at most this often (receivers show ~5 s)

Callback = Callable[..., Any]


class ConversationFeatures:
    """Mentions and replies are arguments of `send`/`send_group`; the rest is here."""

    _callbacks: dict[str, list[Callback]]
    _session: Any
    _watches: dict[str, list[Callback]]
    _presence_subscriptions: dict[str, Any]
    _typing_sent: dict[tuple[str, str], float]
    _typing_interval_s: float
    log: Any

    if TYPE_CHECKING:  # provided by ClientCore

        async def _call(self, procedure: str, **kwargs: Any) -> Any: ...
        def _own(self, result: dict[str, Any]) -> Ack: ...
        def _now(self) -> float: ...
        async def presence(self, user_ids: list[str]) -> Any: ...
        async def signal(self, to_user_id: str, body: Any) -> Ack: ...

    # -- callbacks ------------------------------------------------------------------------------------
    def on_recall(self, callback: Callback) -> Callback:
        """`callback(Message)` for each `recall` (its `ref_msg_id` is the recalled message); it also goes
        to `on_message`. `mics_client.Timeline.apply` folds it into what the app shows."""
        self._callbacks["recall"].append(callback)
        return callback

    def on_edit(self, callback: Callback) -> Callback:
        """`callback(Message)` for each `edit` (new body, `ref_msg_id` = the edited message)."""
        self._callbacks["edit"].append(callback)
        return callback

    def on_typing(self, callback: Callback) -> Callback:
        """`callback(Message)` for each typing signal (`message.typing` is True or False; `group_id` set
        for a group). Show "typing…" for about 5 s after the last True, or until False."""
        self._callbacks["typing"].append(callback)
        return callback

    # -- recall and edit -----------------------------------------------------------------------------
    async def recall(self, msg_id: str) -> Ack:
        """Take back a message you sent, within the tenant's recall window (`NotFound` after it,
        `Rejected` for someone else's). Everyone's held copy becomes a tombstone."""
        return self._own(await self._call("mics.message.recall", msg_id=msg_id))

    async def edit(self, msg_id: str, body: Any, content_type: str | None = None) -> Ack:
        """Replace the body of a message you sent, within the recall window; the new body passes the
        tenant's check-message hook (`Rejected`) and size limit (`PayloadTooLarge`)."""
        kwargs = {"content_type": content_type} if content_type is not None else {}
        return self._own(await self._call("mics.message.edit", msg_id=msg_id, body=body, **kwargs))

    # -- signals and typing --------------------------------------------------------------------------
    async def signal_group(self, group_id: str, body: Any) -> Ack:
        """A signal to a group's online members (you must be one); never buffered."""
        return self._own(await self._call("mics.signal.send", group_id=group_id, body=body))

    async def typing(self, to_user_id: str | None = None, group_id: str | None = None,
                     active: bool = True) -> Ack | None:  # fmt: skip
        """Tell a user or a group that you are typing (`active=False`: stopped). Throttled: at most one
        "typing" per conversation every `typing_interval_s`; a throttled call sends nothing (None)."""
        if (to_user_id is None) == (group_id is None):
            raise ValueError("typing: give to_user_id or group_id")
        key = ("u", to_user_id) if to_user_id is not None else ("g", group_id)
        now = self._now()
        if active:
            last = self._typing_sent.get(key)  # type: ignore[arg-type]
            if last is not None and now - last < self._typing_interval_s:
                return None
            self._typing_sent[key] = now  # type: ignore[index]
        elif self._typing_sent.pop(key, None) is None:  # type: ignore[arg-type]
            return None  # never said it was typing: nothing to take back
        body = {"typing": active}
        if group_id is not None:
            return await self.signal_group(group_id, body)
        return await self.signal(to_user_id, body)  # type: ignore[arg-type]

    # -- live presence -------------------------------------------------------------------------------
    async def watch_presence(self, user_id: str, callback: Callback) -> None:
        """`callback(PresenceChange)` whenever `user_id`'s online devices change (live, on every node),
        first with the current state (`snapshot=True`), and again after each reconnect. Kept across
        reconnects; `NotAuthorized` when the tenant turns presence queries off."""
        callbacks = self._watches.setdefault(user_id, [])
        callbacks.append(callback)
        session = self._session
        if session is not None and session.is_attached():
            if len(callbacks) == 1:
                try:
                    await self._subscribe_presence(session, user_id)
                except (Disconnected, TransportLost):
                    return  # the watch is kept: it subscribes (and snapshots) when the client reconnects
                except ApplicationError as e:
                    if e.error == errors.TRANSPORT_LOST:
                        return
                    self._watches.pop(user_id, None)
                    raise errors.from_application_error(e) from None
            await self._presence_snapshot([user_id], only=callback)

    async def unwatch_presence(self, user_id: str) -> None:
        """Stop watching `user_id` (every callback)."""
        self._watches.pop(user_id, None)
        session = self._session
        subscription = self._presence_subscriptions.pop(user_id, None)
        if subscription is not None and session is not None and session.is_attached():
            try:
                await subscription.unsubscribe()
            except (Disconnected, TransportLost, ApplicationError):
                pass  # the connection dropped: the subscription went with it, and no reconnect renews it

    async def _subscribe_presence(self, session: Any, user_id: str) -> None:
        def on_event(*args: Any, **kwargs: Any) -> None:
            self._presence_changed(PresenceChange(
                str(kwargs.get("user_id") or user_id), bool(kwargs.get("online")), list(kwargs.get("devices") or []),
                int(kwargs.get("ts") or 0),
            ))  # fmt: skip

        self._presence_subscriptions[user_id] = await session.subscribe(on_event, PRESENCE_PREFIX + user_id)

    async def _presence_snapshot(self, user_ids: list[str], only: Callback | None = None) -> None:
        states: dict[str, Any] = {}
        try:
            for at in range(0, len(user_ids), 100):  # mics.presence.get takes at most 100 at a time
                states.update(await self.presence(user_ids[at : at + 100]))
        except errors.MicsError as e:
            self.log.info("presence snapshot failed: {error}", error=str(e))
            return
        ts = int(time.time() * 1000)
        for user_id, state in states.items():
            change = PresenceChange(user_id, state.online, state.devices, ts, snapshot=True)
            self._presence_changed(change, only)

    def _presence_changed(self, change: PresenceChange, only: Callback | None = None) -> None:
        for callback in [only] if only is not None else list(self._watches.get(change.user_id, ())):
            try:
                callback(change)
            except Exception:
                self.log.failure("mics client presence callback failed")
