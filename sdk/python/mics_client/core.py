"""The client logic shared by the Twisted and asyncio flavours: state machine, sync bookkeeping, dedupe,
heartbeat, reconnect with backoff + jitter, and error mapping.

Everything here is written once as `async def` over Autobahn sessions and txaio futures, which both
flavours provide; a flavour only adds its ApplicationSession base class, how to open the WebSocket and
how to run a background coroutine (see twisted.py / asyncio.py).
"""

from __future__ import annotations

import random
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import Any
from urllib.parse import urlparse

import txaio
from autobahn.exception import Disconnected
from autobahn.wamp.exception import ApplicationError, TransportLost
from autobahn.wamp.types import ComponentConfig, SubscribeOptions

from mics_client import errors
from mics_client.conversation import TYPING_INTERVAL_S, ConversationFeatures
from mics_client.streams import AgentFeatures, StreamTable
from mics_client.types import Ack, Message, Presence, SyncGap, SyncResult, Welcome

INBOX_PREFIX = "mics.inbox."
GROUP_PREFIX = "mics.group."
DEFAULT_HEARTBEAT_TIMEOUT_S = 30.0
NORMAL_CLOSE = "wamp.close.normal"

# connection states
NEW, CONNECTING, CONNECTED, RECONNECTING, CLOSED = "new", "connecting", "connected", "reconnecting", "closed"


def make_serializer(name: str) -> Any:
    """Autobahn's serializer for `json` | `msgpack` | `cbor` (msgpack and cbor need their extra installed)."""
    from autobahn.wamp import serializer

    classes = {"json": "JsonSerializer", "msgpack": "MsgPackSerializer", "cbor": "CBORSerializer"}
    if name not in classes or not hasattr(serializer, classes[name]):
        raise ValueError(f"serializer must be one of json, msgpack, cbor (installed), got {name!r}")
    return getattr(serializer, classes[name])()


class Backoff:
    """Exponential backoff with jitter: attempt n waits uniform(cap/2, cap), cap = min(maximum, initial * 2**n).

    The jitter spreads the reconnects of many clients after a node restart.
    """

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, rng: Callable[[], float] = random.random) -> None:
        self.initial = initial
        self.maximum = maximum
        self._rng = rng

    def delay(self, attempt: int) -> float:
        cap = min(self.maximum, self.initial * 2 ** min(attempt, 30))
        return cap / 2 + self._rng() * cap / 2


class RecentIds:
    """A bounded set of recently delivered msg_ids: what makes delivery once-only across live events and sync."""

    def __init__(self, limit: int = 10_000) -> None:
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._limit = limit

    def add(self, msg_id: str) -> bool:
        """True if `msg_id` is new."""
        if msg_id in self._ids:
            return False
        self._ids[msg_id] = None
        if len(self._ids) > self._limit:
            self._ids.popitem(last=False)
        return True

    def __contains__(self, msg_id: object) -> bool:
        return msg_id in self._ids


class SessionMixin:
    """Combined with a flavour's ApplicationSession: joins with the ticket and reports lifecycle to the core."""

    config: ComponentConfig

    def __init__(self, config: ComponentConfig) -> None:
        super().__init__(config)  # type: ignore[call-arg]
        self._core: ClientCore = config.extra["core"]
        self._joined: Any = config.extra["joined"]

    def onConnect(self) -> None:
        core = self._core
        self.join(self.config.realm, ["ticket"], authextra={"device_id": core.device_id})  # type: ignore[attr-defined]

    def onChallenge(self, challenge: Any) -> str:
        if challenge.method != "ticket":
            raise ValueError(f"unexpected auth challenge {challenge.method!r}")
        return self._core._token

    def onJoin(self, details: Any) -> None:
        if not txaio.is_called(self._joined):
            txaio.resolve(self._joined, (self, details))

    def onLeave(self, details: Any) -> None:
        if not txaio.is_called(self._joined):
            txaio.reject(self._joined, errors.from_wamp(details.reason, details.message, joining=True))
        else:
            self._core._session_left(self, details.reason, details.message)
        self.disconnect()  # type: ignore[attr-defined]

    def onDisconnect(self) -> None:
        # calls still waiting for an answer fail (TransportLost -> NotConnected): never hang
        super().onDisconnect()  # type: ignore[misc]
        if not txaio.is_called(self._joined):
            txaio.reject(self._joined, errors.TransportFailed("connection closed before the session joined"))
        else:
            self._core._session_lost(self)


Callback = Callable[..., Any]


class ClientCore(ConversationFeatures, AgentFeatures):
    """One user device's connection to a tenant realm; see docs/sdk-python.md for the behaviour.

    Subclasses set `_session_class` and implement `_open_transport()` and `_spawn()`.
    """

    _session_class: type

    def __init__(
        self,
        url: str | Sequence[str],
        tenant: str,
        token: str,
        device_id: str,
        serializer: str = "json",
        *,
        reconnect: bool = True,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 30.0,
        heartbeat: bool = True,
        join_timeout_s: float = 10.0,
        call_timeout_s: float | None = None,
        dedupe_limit: int = 10_000,
        gap_wait_s: float = 0.5,
        typing_interval_s: float = TYPING_INTERVAL_S,
        on_message: Callback | None = None,
        on_gap: Callback | None = None,
        on_close: Callback | None = None,
        on_connect: Callback | None = None,
    ) -> None:
        self.urls = [url] if isinstance(url, str) else list(url)
        for one in self.urls or [""]:
            parsed = urlparse(one)
            if parsed.scheme not in ("ws", "wss") or not parsed.hostname:
                raise ValueError(f"url must be ws:// or wss:// (or a list of them), got {one!r}")
        make_serializer(serializer)  # fail early on an unknown or missing serializer
        self.url = self.urls[0]  # the node this client dials now
        self.tenant = tenant
        self.device_id = device_id
        self.serializer = serializer
        self.state = NEW
        self.welcome: Welcome | None = None
        self.last_seq = 0
        self.epoch: str | None = None
        self._token = token
        self._reconnect = reconnect
        self._backoff = Backoff(backoff_initial_s, backoff_max_s)
        self._heartbeat = heartbeat
        self._join_timeout_s = join_timeout_s
        self._call_timeout_ms = int(call_timeout_s * 1000) if call_timeout_s else None
        self._seen = RecentIds(dedupe_limit)
        self._synced = False
        self._syncing = False
        self._held: dict[int, Message] = {}  # live inbox messages waiting for earlier seqs, by seq
        self._own_seqs: set[int] = set()  # seqs of this device's own sends (their copies never come here)
        self._gap_timer: Any = None
        self._gap_wait_s = gap_wait_s
        self._session: Any = None
        self._left: tuple[str, str | None] | None = None
        self._closing = False
        self._close_waiters: list[Any] = []
        self._groups: set[str] = set()
        self._all_groups = False
        self._watches: dict[str, list[Callback]] = {}  # user_id -> presence callbacks
        self._presence_subscriptions: dict[str, Any] = {}
        self._typing_interval_s = typing_interval_s
        self._typing_sent: dict[tuple[str, str], float] = {}  # ("u"|"g", id) -> when typing was last sent
        self._last_activity = 0.0
        self._callbacks: dict[str, list[Callback]] = {
            "message": [], "gap": [], "close": [], "connect": [], "recall": [], "edit": [], "typing": [],
            "agent_stream": [], "agent_chunk": [],
        }  # fmt: skip
        self._streams = StreamTable(lambda stream: self._fire("agent_stream", stream))
        self.log = txaio.make_logger()
        # callbacks given here see the first sync too (it runs inside connect())
        for name, callback in (("message", on_message), ("gap", on_gap), ("close", on_close), ("connect", on_connect)):
            if callback is not None:
                self._callbacks[name].append(callback)

    # -- flavour hooks ------------------------------------------------------------------------------------
    async def _open_transport(self, make_session: Callable[[], Any]) -> None:
        raise NotImplementedError

    def _spawn(self, coro: Awaitable[Any]) -> None:
        raise NotImplementedError

    @staticmethod
    def _now() -> float:
        return time.monotonic()

    # -- callbacks ----------------------------------------------------------------------------------------
    def on_message(self, callback: Callback) -> Callback:
        """`callback(Message)` for every inbox and group message, once per msg_id (live or from sync)."""
        self._callbacks["message"].append(callback)
        return callback

    def on_gap(self, callback: Callback) -> Callback:
        """`callback(SyncGap)` when a sync says `complete: false` (messages were lost: refresh from your store)."""
        self._callbacks["gap"].append(callback)
        return callback

    on_sync_incomplete = on_gap

    def on_close(self, callback: Callback) -> Callback:
        """`callback(reason_uri, message)` once, when the client is closed for good (final reason or close())."""
        self._callbacks["close"].append(callback)
        return callback

    def on_connect(self, callback: Callback) -> Callback:
        """`callback(Welcome)` after every (re)join, before the automatic sync."""
        self._callbacks["connect"].append(callback)
        return callback

    def _fire(self, name: str, *args: Any) -> None:
        for callback in list(self._callbacks[name]):
            try:
                result = callback(*args)
            except Exception:
                self.log.failure("mics client {name} callback failed", name=name)
                continue
            if result is not None and hasattr(result, "__await__"):
                self._spawn(self._guard(result, name))

    async def _guard(self, awaitable: Awaitable[Any], name: str) -> None:
        try:
            await awaitable
        except Exception:
            self.log.failure("mics client {name} callback failed", name=name)

    # -- connecting ---------------------------------------------------------------------------------------
    @property
    def is_connected(self) -> bool:
        return self.state == CONNECTED

    @property
    def user_id(self) -> str | None:
        return self.welcome.user_id if self.welcome else None

    async def connect(self) -> Welcome:
        """Join the tenant realm and sync; raises the typed join error (InvalidToken, ...) on refusal."""
        if self.state not in (NEW, CLOSED):
            raise RuntimeError(f"connect() while {self.state}")
        self._closing = False
        self.state = CONNECTING
        try:
            for _other in self.urls[1:]:  # several nodes: one that cannot be reached is passed over
                try:
                    return await self._establish()
                except errors.TransportFailed as e:
                    self.log.info("mics client cannot reach {url}: {error}", url=self.url, error=str(e))
                    self._next_url()
            return await self._establish()
        except BaseException:
            self.state = CLOSED
            raise

    def _next_url(self) -> None:
        """Dial the next of several nodes (after the current one dropped us or could not be reached)."""
        self.url = self.urls[(self.urls.index(self.url) + 1) % len(self.urls)]

    async def _join(self) -> tuple[Any, Any]:
        joined = txaio.create_future()

        def make_session() -> Any:
            return self._session_class(ComponentConfig(self.tenant, {"core": self, "joined": joined}))

        try:
            await self._open_transport(make_session)
        except errors.MicsError:
            raise
        except Exception as e:
            raise errors.TransportFailed(f"cannot open {self.url}: {e}") from e

        def expire() -> None:
            if not txaio.is_called(joined):
                txaio.reject(joined, errors.TransportFailed(f"no WELCOME within {self._join_timeout_s}s"))

        timer = txaio.call_later(self._join_timeout_s, expire)
        try:
            return await joined  # type: ignore[no-any-return]
        finally:
            if getattr(timer, "active", lambda: True)():  # Twisted's timers refuse a cancel after firing
                timer.cancel()

    async def _establish(self) -> Welcome:
        """Join, subscribe inbox (and groups), start the heartbeat, then sync what was missed."""
        session, details = await self._join()
        try:
            if not session.is_attached():
                raise errors.TransportFailed("session ended while joining")
            extra = dict(details.authextra or {})
            welcome = Welcome(
                user_id=details.authid,
                device_id=extra.get("device_id", self.device_id),
                node_id=extra.get("node_id"),
                session_id=details.session,
                heartbeat_timeout_s=float(extra.get("heartbeat_timeout_s") or DEFAULT_HEARTBEAT_TIMEOUT_S),
                offline_ttl_s=extra.get("offline_ttl_s"),
                authextra=extra,
            )
            self.welcome = welcome
            self._session = session
            self._left = None
            self._last_activity = self._now()
            await session.subscribe(self._on_inbox_event, INBOX_PREFIX + welcome.user_id)
            for group_id in sorted(self._groups):
                await self._subscribe_group(session, group_id)
            if self._all_groups:
                await self._subscribe_group(session, None)
            for user_id in list(self._watches):
                try:
                    await self._subscribe_presence(session, user_id)
                except ApplicationError as e:  # refused now (presence queries off): the join goes on
                    self.log.info("presence watch of {user_id} refused: {error}", user_id=user_id, error=str(e))
        except BaseException:
            if self._session is session:
                self._session = None
            if session.is_attached():
                session.leave(NORMAL_CLOSE, "setup failed")
            raise
        self.state = CONNECTED
        if self._heartbeat:
            self._spawn(self._heartbeat_loop(session))
        self._fire("connect", welcome)
        try:
            await self.sync()
        except Exception as e:  # the session dropped again: the reconnect loop syncs next time
            self.log.info("mics client sync after join failed: {error}", error=str(e))
        if self._watches:  # what changed while this device was away
            self._spawn(self._presence_snapshot(list(self._watches)))
        return welcome

    async def _subscribe_group(self, session: Any, group_id: str | None) -> None:
        if group_id is None:
            await session.subscribe(self._on_group_event, GROUP_PREFIX, options=SubscribeOptions(match="prefix"))
        else:
            await session.subscribe(self._on_group_event, GROUP_PREFIX + group_id)

    # -- session lifecycle (from SessionMixin) ----------------------------------------------------------------
    def _session_left(self, session: Any, reason: str, message: str | None) -> None:
        if session is self._session:
            self._left = (reason, message)

    def _session_lost(self, session: Any) -> None:
        if session is not self._session:
            return
        self._session = None
        reason, message = self._left or ("wamp.close.transport_lost", "connection lost")
        if self._closing:
            self._finish(NORMAL_CLOSE, "closed by the client")
        elif reason in errors.FINAL_CLOSE_REASONS or not self._reconnect:
            self._finish(reason, message)
        elif self.state == CONNECTED:
            self.log.info("mics client lost its session ({reason}); reconnecting", reason=reason)
            self.state = RECONNECTING
            self._spawn(self._reconnect_loop())

    def _finish(self, reason: str, message: str | None) -> None:
        if self.state == CLOSED:
            return
        self.state = CLOSED
        self._session = None
        waiters, self._close_waiters = self._close_waiters, []
        for waiter in waiters:
            txaio.resolve(waiter, None)
        self._fire("close", reason, message)

    async def _reconnect_loop(self) -> None:
        attempt = 0
        while not self._closing:
            self._next_url()  # the node we were on is going or gone: try another first
            await txaio.sleep(self._backoff.delay(attempt))
            attempt += 1
            if self._closing:
                break
            try:
                await self._establish()
                return
            except errors.MicsError as e:
                if e.final:
                    self._finish(e.uri, e.message)
                    return
                self.log.info("mics client reconnect attempt {attempt} failed: {error}", attempt=attempt, error=str(e))
            except Exception as e:
                self.log.info("mics client reconnect attempt {attempt} failed: {error}", attempt=attempt, error=str(e))
        self._finish(NORMAL_CLOSE, "closed by the client")

    async def _heartbeat_loop(self, session: Any) -> None:
        """Keep the session alive: ping when idle for about a third of heartbeat_timeout_s."""
        assert self.welcome is not None
        interval = max(0.2, self.welcome.heartbeat_timeout_s / 3)
        while self._session is session:
            idle = self._now() - self._last_activity
            if idle < interval:
                await txaio.sleep(interval - idle)
                continue
            try:
                await self.ping()
            except Exception as e:
                if self._session is session:
                    self.log.info("mics client heartbeat ping failed: {error}", error=str(e))
                    await txaio.sleep(interval)

    async def close(self) -> None:
        """Leave for good (no reconnect); `on_close` gets `wamp.close.normal`."""
        if self.state == CLOSED:
            return
        self._closing = True
        if self._gap_timer is not None:
            self._gap_timer.cancel()
            self._gap_timer = None
        session = self._session
        if session is None:
            self._finish(NORMAL_CLOSE, "closed by the client")
            return
        waiter = txaio.create_future()
        self._close_waiters.append(waiter)
        if session.is_attached():
            session.leave(NORMAL_CLOSE, "closed by the client")
        else:
            session.disconnect()
        timer = txaio.call_later(5.0, lambda: session.disconnect() if self._session is session else None)
        try:
            await waiter
        finally:
            timer.cancel()

    # -- receiving ------------------------------------------------------------------------------------
    def _on_inbox_event(self, *args: Any, **kwargs: Any) -> None:
        self._arrived(Message.from_kwargs(kwargs))

    # Inbox messages reach the app in seq order. A live message whose seq skips some (a device that
    # reconnects gets live messages while its sync runs; in a cluster a forwarded delivery can be
    # lost or overtaken) is held until the missing ones arrive, live or by a sync after `gap_wait_s`;
    # what is gone for good (expired, evicted) is skipped then, never waited for forever.
    def _arrived(self, message: Message) -> None:
        seq = message.seq
        if not seq:  # signals: live only, no place in the stream
            self._deliver(message)
            return
        if self._syncing or not self._synced or seq > self.last_seq + 1:
            self._held.setdefault(seq, message)
            self._release()
            return
        self.last_seq = max(self.last_seq, seq)  # (before the app's callback runs: it may read it)
        self._deliver(message)  # the next one (or an older one released late: better late than never)
        self._release()

    def _release(self, force: bool = False) -> None:
        """Deliver held messages that are next in seq order (`force`: everything held, in order:
        what is missing will not come); schedule a gap sync while some are still held."""
        if self._syncing or not self._synced:
            return
        held, own = self._held, self._own_seqs
        while held or own:
            following = self.last_seq + 1
            if following in own:
                own.discard(following)
                self.last_seq = following
            elif following in held or (force and held):
                following = following if following in held else min(held)
                self.last_seq = following
                self._deliver(held.pop(following))
            else:
                break
        if own:
            own.intersection_update({s for s in own if s > self.last_seq})
        for seq in [s for s in held if s <= self.last_seq]:
            self._deliver(held.pop(seq))
        if held and self._gap_timer is None:
            self._gap_timer = txaio.call_later(self._gap_wait_s, self._fill_gap)

    def _fill_gap(self) -> None:
        self._gap_timer = None
        if self._held and self.state == CONNECTED and not self._syncing:
            self._spawn(self._sync_quietly())

    async def _sync_quietly(self) -> None:
        try:
            await self.sync()
        except errors.MicsError as e:  # the next reconnect's sync covers it
            self.log.info("gap sync failed: {error}", error=e)
        self._release(force=True)  # what the sync did not bring is gone: go on in order

    def _on_group_event(self, *args: Any, **kwargs: Any) -> None:
        self._deliver(Message.from_kwargs(kwargs))

    def _deliver(self, message: Message) -> bool:
        """Drop repeats and this device's own sends; hand the rest to the app."""
        if message.type == "agent_chunk":  # live only (never synced): its stream drops repeats
            if message.stream_id and self._streams.arrived(message) is not None:
                self._fire("agent_chunk", message)
            return False
        if not self._seen.add(message.msg_id):
            return False
        if message.from_device_id == self.device_id and message.from_user_id == self.user_id:
            return False
        if message.stream_id:  # an agent's final message ends its stream (and is a message too)
            self._streams.arrived(message)
        if message.is_change:
            self._fire(message.type, message)
        elif message.typing is not None:
            self._fire("typing", message)
        self._fire("message", message)
        return True

    async def sync(self, since: int | None = None) -> SyncResult:
        """Fetch inbox messages after `last_seq` (runs by itself after every (re)connect, and when
        live delivery skipped seqs); `since` starts earlier. Live messages that arrive meanwhile are
        held and delivered after, in seq order."""
        since = self.last_seq if since is None else min(since, self.last_seq)
        epoch_before, initial = self.epoch, not self._synced
        kwargs: dict[str, Any] = {"since_seq": since}
        if epoch_before is not None:
            kwargs["epoch"] = epoch_before
        self._syncing = True
        try:
            result = await self._call("mics.inbox.sync", **kwargs)
        finally:
            self._syncing = False
        fresh = []
        for entry in result.get("messages", []):
            message = Message.from_kwargs(entry, replayed=True)
            self._held.pop(message.seq or 0, None)
            self.last_seq = max(self.last_seq, message.seq or 0)
            if self._deliver(message):
                fresh.append(message)
        last_seq = int(result.get("last_seq") or 0)
        complete = bool(result.get("complete"))
        self.epoch = result.get("epoch")
        # an incomplete answer resets our position to the router's (its stream may have restarted)
        self.last_seq = max(self.last_seq, last_seq) if complete else last_seq
        self._synced = True
        self._release(force=not complete)
        if not complete:
            self._fire("gap", SyncGap(since, epoch_before, last_seq, self.epoch, initial))
        return SyncResult(fresh, self.last_seq, self.epoch, complete)

    # -- calls ----------------------------------------------------------------------------------------
    async def _call(self, procedure: str, **kwargs: Any) -> Any:
        session = self._session
        if session is None or not session.is_attached():
            raise errors.NotConnected(f"not connected ({self.state})")
        self._last_activity = self._now()
        try:
            if self._call_timeout_ms:
                from autobahn.wamp.types import CallOptions

                kwargs["options"] = CallOptions(timeout=self._call_timeout_ms)
            return await session.call(procedure, **kwargs)
        except ApplicationError as e:
            if e.error == errors.TRANSPORT_LOST:
                raise errors.NotConnected("the connection dropped during the call (it reconnects)") from None
            raise errors.from_application_error(e) from None
        except (Disconnected, TransportLost):  # closed between our check and the send
            raise errors.NotConnected("the connection dropped during the call (it reconnects)") from None

    async def send(self, to_user_id: str, body: Any, client_msg_id: str | None = None,
                   content_type: str | None = None, reply_to: str | None = None) -> Ack:  # fmt: skip
        """Send a chat message to one user (all their devices and your other devices); `reply_to` quotes
        an earlier message by its msg_id."""
        kwargs = _optional(client_msg_id=client_msg_id, content_type=content_type, reply_to=reply_to)
        return self._own(await self._call("mics.message.send", to_user_id=to_user_id, body=body, **kwargs))

    async def send_group(self, group_id: str, body: Any, client_msg_id: str | None = None,
                         content_type: str | None = None, reply_to: str | None = None,
                         mentions: list[str] | None = None) -> Ack:  # fmt: skip
        """Send to a group; the tenant's group-members hook decides who gets it (`Ack.recipients`).
        `mentions` (at most 100 distinct user ids) also triggers a push for mentioned members offline."""
        kwargs = _optional(client_msg_id=client_msg_id, content_type=content_type, reply_to=reply_to,
                           mentions=list(mentions) if mentions else None)  # fmt: skip
        return self._own(await self._call("mics.group.send", group_id=group_id, body=body, **kwargs))

    async def receipt(self, to_user_id: str, msg_ids: list[str], kind: str = "read") -> Ack:
        """Tell `to_user_id` that `msg_ids` were `delivered` or `read`."""
        return self._own(
            await self._call("mics.message.receipt", to_user_id=to_user_id, msg_ids=list(msg_ids), kind=kind)
        )

    async def signal(self, to_user_id: str, body: Any) -> Ack:
        """A signal (e.g. WebRTC offer/answer/ICE) to the user's online devices; never buffered."""
        return self._own(await self._call("mics.signal.send", to_user_id=to_user_id, body=body))

    def _own(self, result: dict[str, Any]) -> Ack:
        """Our own send's Ack: the message is never delivered back to us, and the seq of our inbox
        copy (which this device does not receive) is ours, not a gap."""
        ack = Ack.from_result(result)
        self._seen.add(ack.msg_id)
        if ack.seq and ack.seq > self.last_seq:
            self._own_seqs.add(ack.seq)
            self._release()
        return ack

    async def presence(self, user_ids: list[str]) -> dict[str, Presence]:
        """Who of `user_ids` (at most 100) is online, with which devices."""
        result = await self._call("mics.presence.get", user_ids=list(user_ids))
        return {uid: Presence(bool(p.get("online")), list(p.get("devices") or [])) for uid, p in result.items()}

    async def ping(self) -> dict[str, Any]:
        """`{"ts", "heartbeat_timeout_s"}`; also what the heartbeat calls."""
        result: dict[str, Any] = await self._call("mics.ping")
        return result

    async def subscribe_group(self, group_id: str) -> None:
        """Receive `mics.group.<group_id>` (kept across reconnects); the router delivers only to members."""
        self._groups.add(group_id)
        if self._session is not None and self._session.is_attached():
            await self._subscribe_group(self._session, group_id)

    async def subscribe_groups(self) -> None:
        """Receive every group this user is a member of (prefix `mics.group.`), kept across reconnects."""
        self._all_groups = True
        if self._session is not None and self._session.is_attached():
            await self._subscribe_group(self._session, None)

    async def call(self, procedure: str, **kwargs: Any) -> Any:
        """Call a tenant procedure (`tenant.*`, registered by the tenant's backend)."""
        return await self._call(procedure, **kwargs)

    #: the coroutine methods a flavour exposes (the Twisted flavour wraps them to return Deferreds)
    ASYNC_API = ("connect", "close", "sync", "send", "send_group", "receipt", "signal", "presence", "ping",
                 "subscribe_group", "subscribe_groups", "call", "recall", "edit", "signal_group", "typing",
                 "watch_presence", "unwatch_presence", "agents")  # fmt: skip


def _optional(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}
