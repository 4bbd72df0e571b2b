"""The router-embedded component of one tenant realm: sends, sync, receipts, signals, sessions.

A send is a CALL into this session and one delivery per recipient inbox (or one per group to the
members: the router's fan-out filters, we never loop over members to deliver; see delivery.py). The
session also registers the realm's authorizer and tracks joins and leaves from the meta API.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from autobahn.twisted.wamp import ApplicationSession
from autobahn.wamp.exception import ApplicationError
from autobahn.wamp.types import CallDetails, RegisterOptions
from twisted.internet.defer import Deferred
from txaio import make_logger

from mics import authz, errors, events, metrics, uris
from mics.buffer.redis import RedisBuffer
from mics.cluster import DELIVER, KICK, frame_header, unavailable_on_redis_failure
from mics.cluster.redis import node_channel
from mics.config import is_valid_entity_id
from mics.delivery import make_delivery
from mics.errors import SendFailed
from mics.hooks.policy import HookUnavailable
from mics.node import NODE
from mics.sessions import SessionInfo
from mics.tenants import TenantRuntime
from mics.types import CHAT, GROUP_CHAT, RECEIPT, RECEIPT_KINDS, SIGNAL, SYSTEM, Ack, Message, now_ms

log = make_logger()

MAX_RECEIPT_IDS = 1000
MAX_PRESENCE_IDS = 100
MAX_TEXT_FIELD = 128
ENTRY_OVERHEAD = 256  # bytes a held message costs beyond its body, for the byte cap
_MISSING: Any = object()


@dataclass(frozen=True, slots=True)
class Sender:
    """Who is calling: a user's device, or the tenant backend sending as `user_id`."""

    user_id: str
    device_id: str | None
    session_id: int
    is_system: bool

    @property
    def own_session(self) -> int | None:
        """The calling device's session, which never gets its own message back (None for system)."""
        return None if self.is_system else self.session_id


def body_size(body: Any) -> int:
    """The body's encoded size: bytes as is, everything else as compact UTF-8 JSON."""
    if isinstance(body, bytes | bytearray):
        return len(body)
    if isinstance(body, str):
        return len(body.encode("utf-8")) + 2
    try:
        return len(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8"))
    except (TypeError, ValueError):
        raise SendFailed(errors.INVALID_MESSAGE, "body is not a JSON value or bytes") from None


def _optional_text(name: str, value: Any, client_msg_id: str | None = None) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not 0 < len(value) <= MAX_TEXT_FIELD:
        raise SendFailed(errors.INVALID_MESSAGE, f"{name} must be a string of 1..{MAX_TEXT_FIELD} chars", client_msg_id)
    return value


def _entity(name: str, value: Any, client_msg_id: str | None = None) -> str:
    if not is_valid_entity_id(value):
        raise SendFailed(errors.INVALID_MESSAGE, f"{name} is missing or invalid", client_msg_id)
    return value  # type: ignore[no-any-return]


class TenantComponent(ApplicationSession):
    """One per tenant realm, joined with the trusted `mics` role."""

    log = log

    async def onJoin(self, details: Any) -> None:
        self.tenant_id: str = self.config.realm
        tenant = NODE.tenants.get(self.tenant_id) if NODE.tenants else None
        if tenant is None:
            raise RuntimeError(f"no tenant {self.tenant_id}")
        assert NODE.settings is not None and NODE.msg_ids is not None
        self.tenant: TenantRuntime = tenant
        self.node_id = NODE.settings.node_id
        self._clock = NODE.reactor.seconds
        self._ids = NODE.msg_ids
        self._inflight: dict[tuple[str, str], list[Deferred[dict[str, Any]]]] = {}
        self._messages = {
            (t, d): metrics.MESSAGES.labels(self.tenant_id, t, d)
            for t in (CHAT, GROUP_CHAT, RECEIPT, SIGNAL, SYSTEM)
            for d in ("online", "buffered", "offline")
        }
        self._connections = metrics.CONNECTIONS.labels(self.tenant_id)
        self._delivery = make_delivery(self)
        opts = RegisterOptions(details_arg="details")
        procedures: dict[str, Callable[..., Any]] = {
            uris.MESSAGE_SEND: self.message_send,
            uris.GROUP_SEND: self.group_send,
            uris.INBOX_SYNC: self.inbox_sync,
            uris.MESSAGE_RECEIPT: self.message_receipt,
            uris.SIGNAL_SEND: self.signal_send,
            uris.PING: self.ping,
            uris.PRESENCE_GET: self.presence_get,
            uris.SESSION_LIST: self.session_list,
            uris.SESSION_KICK: self.session_kick,
            uris.GROUP_MEMBERS_CHANGED: self.group_members_changed,
        }
        for uri, fn in procedures.items():
            if NODE.cluster is not None:
                fn = unavailable_on_redis_failure(fn, self._count_unavailable)
            await self.register(fn, uri, options=opts)
        await self.register(self.authorize, uris.AUTHORIZE)
        await self.subscribe(self._on_session_join, uris.SESSION_ON_JOIN)
        await self.subscribe(self._on_session_leave, uris.SESSION_ON_LEAVE)
        tenant.attach(self)

    def _count_unavailable(self) -> None:
        metrics.SEND_FAILURES.labels(self.tenant_id, "unavailable").inc()

    def onLeave(self, details: Any) -> None:
        """The realm goes away only when the node stops: say goodbye to every user first."""
        tenant = getattr(self, "tenant", None)
        if tenant is not None:
            for info in list(tenant.sessions.by_id.values()):
                self.close_session(info.session_id, errors.CLOSE_SHUTDOWN, "the node is shutting down")
                NODE.drained += 1
            if tenant.component is self:
                tenant.detach()
        super().onLeave(details)

    # -- authorization and sessions ---------------------------------------------------------------
    def authorize(self, session: dict[str, Any], uri: str, action: str, options: dict[str, Any]) -> dict[str, Any]:
        if action == "call" and uri.startswith(uris.TENANT_PREFIX):
            info = self.tenant.sessions.by_id.get(session.get("session"))  # type: ignore[arg-type]
            if info is not None:
                info.last_active = self._clock()
        return authz.decide(session.get("authid") or "", uri, action, (options or {}).get("match"))

    def _on_session_join(self, joined: dict[str, Any]) -> None:
        if joined.get("authrole") != uris.ROLE_USER:
            return
        self._adopt(joined)

    def _adopt(self, joined: dict[str, Any]) -> SessionInfo | None:
        extra = joined.get("authextra") or {}
        device_id = extra.get("device_id")
        if not device_id:
            return None
        info = SessionInfo(
            session_id=joined["session"],
            tenant_id=self.tenant_id,
            user_id=joined["authid"],
            device_id=device_id,
            online_at=now_ms(),
            last_active=self._clock(),
        )
        sessions = self.tenant.sessions
        if info.session_id in sessions.by_id:
            return sessions.by_id[info.session_id]
        older = sessions.add(info)
        self.tenant.presence.joined(info)
        self._connections.set(sessions.connections)
        if older is not None:
            self.close_session(older.session_id, errors.CLOSE_REPLACED, "the same device connected again")
        self._emit_connection(events.CONNECT_ONLINE, info, None)
        return info

    def _on_session_leave(self, session_id: int, *args: Any, **kwargs: Any) -> None:
        info = self.tenant.sessions.remove(session_id)
        if info is None:
            return
        self.tenant.presence.left(info)
        self._connections.set(self.tenant.sessions.connections)
        self._emit_connection(events.CONNECT_OFFLINE, info, None)

    def _emit_connection(self, event_type: str, info: SessionInfo, reason: str | None) -> None:
        data = {**info.to_kwargs(self.node_id)}
        if reason:
            data["reason"] = reason
        self.tenant.events.put(
            events.Event(
                tenant_id=self.tenant_id,
                event_type=event_type,
                timestamp=now_ms(),
                node_id=self.node_id,
                data=data,
                user_id=info.user_id,
                device_id=info.device_id,
            )
        )

    def close_session(self, session_id: int, reason: errors.Reason, message: str) -> None:
        """End a session with a MICS GOODBYE reason.

        What `wamp.session.kill` does, done in-process on the router (no WAMP round trip), which also
        works while the node shuts down and our own session is already leaving.
        """
        metrics.CLOSES.labels(self.tenant_id, reason.uri.rsplit(".", 1)[-1]).inc()
        router = getattr(self._transport, "_router", None)
        sessions = getattr(router, "_session_id_to_session", None)
        if sessions is None:  # not router-embedded (or Crossbar changed): use the meta API
            d = self.call(uris.SESSION_KILL, session_id, reason=reason.uri, message=message)
            d.addErrback(lambda f: log.debug("kill of {sid} failed: {f}", sid=session_id, f=f.getErrorMessage()))
            return
        session = sessions.get(session_id)
        if session is not None:
            session.leave(reason=reason.uri, message=message)

    async def _sender(self, details: CallDetails, from_user_id: Any = None, cmid: str | None = None) -> Sender:
        """Resolve the caller; a user's call also counts as heartbeat activity."""
        role = details.caller_authrole
        if role == uris.ROLE_USER:
            info = self.tenant.sessions.by_id.get(details.caller)  # type: ignore[arg-type]
            if info is None:  # the call overtook the on_join event: look the session up
                joined = await self.call(uris.SESSION_GET, details.caller)
                info = self._adopt(joined)
                if info is None:
                    raise ApplicationError(errors.NOT_AUTHORIZED.uri, "unknown session")
            info.last_active = self._clock()
            return Sender(info.user_id, info.device_id, info.session_id, False)
        if role == uris.ROLE_BACKEND:
            user_id = _entity("from_user_id", from_user_id, cmid) if from_user_id is not None else details.caller_authid
            return Sender(user_id or "backend", None, details.caller or 0, True)
        raise ApplicationError(errors.NOT_AUTHORIZED.uri, "not allowed for this role")

    # -- shared send pipeline -----------------------------------------------------------------------
    def _admit(self, body: Any, cmid: str | None) -> int:
        """Checks every send passes before any work: body, size, tenant QPS. Returns the body size."""
        if body is _MISSING or body is None:
            raise SendFailed(errors.INVALID_MESSAGE, "body is required", cmid)
        size = body_size(body)
        if size > self.tenant.config.max_payload_bytes:
            metrics.SEND_FAILURES.labels(self.tenant_id, "payload_too_large").inc()
            raise SendFailed(
                errors.PAYLOAD_TOO_LARGE, f"body is {size} bytes, over {self.tenant.config.max_payload_bytes}", cmid
            )
        return size

    def _take_rate(self, cmid: str | None) -> None:
        if not self.tenant.bucket.try_take():
            metrics.SEND_FAILURES.labels(self.tenant_id, "rate_limited").inc()
            raise SendFailed(errors.RATE_LIMITED, "the tenant's message rate limit is exceeded", cmid)

    async def _once(
        self, sender: Sender, cmid: str | None, work: Callable[[], Awaitable[dict[str, Any]]]
    ) -> dict[str, Any]:
        """Run a send once per (user, client_msg_id): a repeat gets the first Ack, even mid-flight."""
        if cmid is None:
            return await work()
        key = (sender.user_id, cmid)
        waiters = self._inflight.get(key)
        if waiters is not None:
            waiter: Deferred[dict[str, Any]] = Deferred()
            waiters.append(waiter)
            return await waiter
        self._inflight[key] = waiters = []
        buffer = self.tenant.buffer
        try:
            ack = await buffer.seen(sender.user_id, cmid)
            if ack is None:
                ack = await work()
                await buffer.remember(sender.user_id, cmid, ack)
        except BaseException as e:
            for w in waiters:
                w.errback(e)
            raise
        finally:
            del self._inflight[key]
        for w in waiters:
            w.callback(ack)
        return ack

    def _new_message(self, sender: Sender, kind: str, body: Any, **fields: Any) -> Message:
        ts = now_ms()
        msg_id = self._ids.make(ts)
        return Message(
            msg_id=msg_id,
            type=SYSTEM if sender.is_system else kind,
            tenant_id=self.tenant_id,
            from_user_id=sender.user_id,
            from_device_id=sender.device_id,
            body=body,
            ts=ts,
            trace_id=msg_id,  # a send starts its trace; hooks, events and logs carry it
            **fields,
        )

    async def _check(self, sender: Sender, payload: dict[str, Any], cmid: str | None) -> None:
        """The check-message hook: a rejection fails the send; trouble degrades to allow."""
        tenant = self.tenant
        if sender.is_system or not tenant.config.check_message_hook or tenant.hook is None:
            return
        verdict = await tenant.hook.check_message(payload)
        if not verdict.allow:
            metrics.SEND_FAILURES.labels(self.tenant_id, "rejected").inc()
            raise SendFailed(errors.REJECTED, verdict.reason or "rejected by the tenant", cmid)

    def _fanout(
        self, topic: str, authids: Iterable[str], exclude: int | None, kwargs: dict[str, Any], nodes: Iterable[str]
    ) -> None:
        """Deliver on this node and forward to the other nodes where the users have devices."""
        cluster = NODE.cluster
        for node_id in set(nodes):
            if node_id == self.node_id:
                self._delivery.to_users(topic, authids, exclude, kwargs)
            elif cluster is not None:
                cluster.send_to(node_id, [DELIVER, self.tenant_id, topic, list(authids), kwargs])

    def _to_group(self, topic: str, authids: list[str], exclude: int | None, kwargs: dict[str, Any]) -> None:
        """Every node's router picks its own subscribers among the members: broadcast in a cluster."""
        self._delivery.to_users(topic, authids, exclude, kwargs)
        if NODE.cluster is not None:
            NODE.cluster.broadcast([DELIVER, self.tenant_id, topic, authids, kwargs])

    def deliver_forwarded(self, topic: str, authids: list[str], kwargs: dict[str, Any]) -> None:
        """Another node's delivery to users on this node."""
        self._delivery.to_users(topic, authids, None, kwargs)

    async def _deliver_inbox(
        self, sender: Sender, to_user_id: str, payload: dict[str, Any], size: int
    ) -> tuple[int, int | None, str]:
        """Hold and deliver an inbox message for the recipient and the sender's other devices.

        Returns (recipient seq, sender copy seq, delivered).
        """
        if NODE.cluster is not None and to_user_id != sender.user_id:
            return await self._deliver_routed(sender, to_user_id, payload, size)
        tenant = self.tenant
        config = tenant.config
        where = await tenant.presence.where((to_user_id, sender.user_id))
        to_devices = where[to_user_id]
        online = bool(to_devices)
        delivered = "online" if online else "buffered"
        cost = size + ENTRY_OVERHEAD
        entry = dict(payload)
        hold = config.replay_window_s if online else config.offline_ttl_s
        seq = await tenant.buffer.append(to_user_id, entry, cost, hold)
        topic = uris.inbox_topic(to_user_id)
        if to_user_id == sender.user_id:  # a note to self: one stream, other devices only
            if len(to_devices) > (0 if sender.is_system else 1):
                self._fanout(topic, (to_user_id,), sender.own_session, entry, to_devices.values())
            return seq, seq, delivered
        self._fanout(topic, (to_user_id,), None, entry, to_devices.values())
        if sender.is_system:
            return seq, None, delivered
        copy = dict(payload)
        copy_seq = await tenant.buffer.append(sender.user_id, copy, cost, config.replay_window_s)
        own_devices = where[sender.user_id]
        if len(own_devices) > 1:
            own_topic = uris.inbox_topic(sender.user_id)
            self._fanout(own_topic, (sender.user_id,), sender.own_session, copy, own_devices.values())
        return seq, copy_seq, delivered

    async def _deliver_routed(
        self, sender: Sender, to_user_id: str, payload: dict[str, Any], size: int
    ) -> tuple[int, int | None, str]:
        """Cluster mode: one Redis script looks both users up, holds, numbers and forwards to the
        other nodes (RedisBuffer.append_routed); we deliver to the devices on this node."""
        buffer = self.tenant.buffer
        assert isinstance(buffer, RedisBuffer)
        config = self.tenant.config
        to_topic, from_topic = uris.inbox_topic(to_user_id), uris.inbox_topic(sender.user_id)
        frames = (
            frame_header(self.node_id, self.tenant_id, to_user_id),
            frame_header(self.node_id, self.tenant_id, sender.user_id),
        )
        routed = await buffer.append_routed(
            to_user_id,
            None if sender.is_system else sender.user_id,
            payload,
            size + ENTRY_OVERHEAD,
            (config.replay_window_s, config.offline_ttl_s, config.replay_window_s),
            self.node_id,
            frames,
            node_channel(""),
        )
        # this node's devices from its own session table: exact even before a join's presence
        # write has reached Redis (the script forwarded to the devices elsewhere)
        deliver, local = self._delivery.to_users, self.tenant.sessions.devices
        to_here = bool(local(to_user_id))
        if to_here:
            deliver(to_topic, (to_user_id,), None, {**payload, "seq": routed.seq_to})
        if routed.seq_from is not None and len(local(sender.user_id)) > 1:
            deliver(from_topic, (sender.user_id,), sender.own_session, {**payload, "seq": routed.seq_from})
        return routed.seq_to, routed.seq_from, "online" if routed.to_online or to_here else "buffered"

    async def _prepare(
        self, details: CallDetails, from_user_id: Any, client_msg_id: Any, content_type: Any, body: Any
    ) -> tuple[Sender, str | None, str | None, int]:
        """What 1:1 and group sends check first: caller, client_msg_id, content_type, body size."""
        cmid = client_msg_id if isinstance(client_msg_id, str) else None
        cmid = _optional_text("client_msg_id", client_msg_id, cmid)
        sender = await self._sender(details, from_user_id, cmid)
        return sender, cmid, _optional_text("content_type", content_type, cmid), self._admit(body, cmid)

    # -- user procedures -------------------------------------------------------------------------------
    async def message_send(
        self,
        to_user_id: Any = None,
        body: Any = _MISSING,
        client_msg_id: Any = None,
        content_type: Any = None,
        from_user_id: Any = None,
        details: CallDetails = None,  # type: ignore[assignment]
        **_ignored: Any,
    ) -> dict[str, Any]:
        sender, cmid, content_type, size = await self._prepare(details, from_user_id, client_msg_id, content_type, body)
        to_user_id = _entity("to_user_id", to_user_id, cmid)

        async def work() -> dict[str, Any]:
            self._take_rate(cmid)
            message = self._new_message(
                sender, CHAT, body, to_user_id=to_user_id, content_type=content_type, client_msg_id=cmid
            )
            payload = message.to_kwargs()
            await self._check(sender, payload, cmid)
            seq, copy_seq, delivered = await self._deliver_inbox(sender, to_user_id, payload, size)
            self._messages[(message.type, delivered)].inc()
            self._emit_message(events.SINGLE_CHAT_MSG, message, payload, sender)
            ack_seq = seq if sender.is_system else copy_seq
            return Ack(message.msg_id, message.ts, delivered, ack_seq, cmid).to_kwargs()

        return await self._once(sender, cmid, work)

    async def group_send(
        self,
        group_id: Any = None,
        body: Any = _MISSING,
        client_msg_id: Any = None,
        content_type: Any = None,
        from_user_id: Any = None,
        details: CallDetails = None,  # type: ignore[assignment]
        **_ignored: Any,
    ) -> dict[str, Any]:
        sender, cmid, content_type, size = await self._prepare(details, from_user_id, client_msg_id, content_type, body)
        group_id = _entity("group_id", group_id, cmid)

        async def work() -> dict[str, Any]:
            self._take_rate(cmid)
            tenant = self.tenant
            message = self._new_message(
                sender, GROUP_CHAT, body, group_id=group_id, content_type=content_type, client_msg_id=cmid
            )
            payload = message.to_kwargs()
            # ask both hooks at once; members decide delivery, the check may reject
            checked = Deferred.fromCoroutine(self._check(sender, payload, cmid))
            try:
                members = await self._members(group_id, sender.user_id, cmid)
            except BaseException:
                checked.addErrback(lambda _f: None)  # the send failed already; drop the check's outcome
                raise
            await checked
            eligible = members if sender.user_id in members or sender.is_system else [*members, sender.user_id]
            self._to_group(uris.group_topic(group_id), eligible, sender.own_session, payload)
            others = [m for m in members if m != sender.user_id]
            if tenant.config.group_buffering:  # offline members find it with sync (an entry each)
                online = await tenant.presence.online_among(others)
                offline = [m for m in others if m not in online]
                await tenant.buffer.append_many(offline, payload, size + ENTRY_OVERHEAD, tenant.config.offline_ttl_s)
                any_online = bool(online)
            else:
                any_online = await tenant.presence.any_online(others)
            # nobody else online: held for them with group_buffering, otherwise gone (best effort)
            delivered = "online" if any_online else ("buffered" if tenant.config.group_buffering else "offline")
            self._messages[(message.type, delivered)].inc()
            self._emit_message(events.GROUP_CHAT_MSG, message, payload, sender)
            return Ack(message.msg_id, message.ts, delivered, None, cmid, recipients=len(members)).to_kwargs()

        return await self._once(sender, cmid, work)

    async def _members(self, group_id: str, from_user_id: str, cmid: str | None) -> list[str]:
        hook = self.tenant.hook
        try:
            if hook is None:
                raise HookUnavailable("no_hook")
            members = await hook.group_members(group_id, from_user_id)
        except HookUnavailable as e:
            metrics.SEND_FAILURES.labels(self.tenant_id, "hook_unavailable").inc()
            log.warn(
                "group-members hook unavailable: tenant_id={tenant_id} cause={cause}",
                tenant_id=self.tenant_id,
                cause=e.cause,
            )
            raise SendFailed(errors.HOOK_UNAVAILABLE, "the group-members hook is unavailable", cmid) from None
        if not members:
            metrics.SEND_FAILURES.labels(self.tenant_id, "empty_group").inc()
            raise SendFailed(errors.EMPTY_GROUP, f"group {group_id!r} has no members", cmid)
        return members

    def _emit_message(self, event_type: str, message: Message, payload: dict[str, Any], sender: Sender) -> None:
        """`payload` is the message's kwargs, already built for delivery (never mutated after)."""
        self.tenant.events.put(
            events.Event(
                tenant_id=self.tenant_id,
                event_type=event_type,
                timestamp=message.ts,
                node_id=self.node_id,
                data=payload,
                msg_id=message.msg_id,
                user_id=message.from_user_id,
                device_id=sender.device_id or "",
                to_user_id=message.to_user_id or "",
                group_id=message.group_id or "",
                trace_id=message.trace_id,
            )
        )

    async def inbox_sync(
        self,
        since_seq: Any = 0,
        epoch: Any = None,
        details: CallDetails = None,
        **_ignored: Any,  # type: ignore[assignment]
    ) -> dict[str, Any]:
        sender = await self._sender(details)
        if sender.is_system:
            raise ApplicationError(errors.NOT_AUTHORIZED.uri, "only users have an inbox")
        if since_seq is None:
            since_seq = 0
        if isinstance(since_seq, bool) or not isinstance(since_seq, int) or since_seq < 0:
            raise SendFailed(errors.INVALID_MESSAGE, "since_seq must be an integer >= 0")
        if epoch is not None and not isinstance(epoch, str):
            raise SendFailed(errors.INVALID_MESSAGE, "epoch must be a string")
        result = await self.tenant.buffer.since(sender.user_id, since_seq, epoch)
        return result.to_kwargs()

    async def message_receipt(
        self,
        to_user_id: Any = None,
        msg_ids: Any = None,
        kind: Any = None,
        details: CallDetails = None,  # type: ignore[assignment]
        **_ignored: Any,
    ) -> dict[str, Any]:
        sender = await self._sender(details)
        to_user_id = _entity("to_user_id", to_user_id)
        if (
            not isinstance(msg_ids, list)
            or not 0 < len(msg_ids) <= MAX_RECEIPT_IDS
            or not all(isinstance(m, str) and 0 < len(m) <= MAX_TEXT_FIELD for m in msg_ids)
        ):
            raise SendFailed(errors.INVALID_MESSAGE, f"msg_ids must be a list of 1..{MAX_RECEIPT_IDS} message ids")
        if kind not in RECEIPT_KINDS:
            raise SendFailed(errors.INVALID_MESSAGE, "kind must be 'delivered' or 'read'")
        self._take_rate(None)
        body = {"msg_ids": msg_ids, "kind": kind}
        message = self._new_message(sender, RECEIPT, body, to_user_id=to_user_id)
        seq, copy_seq, delivered = await self._deliver_inbox(sender, to_user_id, message.to_kwargs(), body_size(body))
        self._messages[(message.type, delivered)].inc()
        return Ack(message.msg_id, message.ts, delivered, copy_seq if copy_seq is not None else seq).to_kwargs()

    async def signal_send(
        self,
        to_user_id: Any = None,
        body: Any = _MISSING,
        details: CallDetails = None,
        **_ignored: Any,  # type: ignore[assignment]
    ) -> dict[str, Any]:
        sender = await self._sender(details)
        to_user_id = _entity("to_user_id", to_user_id)
        self._admit(body, None)
        self._take_rate(None)
        message = self._new_message(sender, SIGNAL, body, to_user_id=to_user_id)
        devices = (await self.tenant.presence.where((to_user_id,)))[to_user_id]
        online = bool(devices)
        if online:  # signals are live only: never held, no seq
            exclude = sender.own_session if to_user_id == sender.user_id else None
            self._fanout(uris.inbox_topic(to_user_id), (to_user_id,), exclude, message.to_kwargs(), devices.values())
        delivered = "online" if online else "offline"
        self._messages[(message.type, delivered)].inc()
        return Ack(message.msg_id, message.ts, delivered).to_kwargs()

    async def ping(self, details: CallDetails = None, **_ignored: Any) -> dict[str, Any]:  # type: ignore[assignment]
        await self._sender(details)
        return {"ts": now_ms(), "heartbeat_timeout_s": self.tenant.config.heartbeat_timeout_s}

    async def presence_get(self, user_ids: Any = None, details: CallDetails = None, **_ignored: Any) -> dict[str, Any]:  # type: ignore[assignment]
        sender = await self._sender(details)
        if not sender.is_system and not self.tenant.config.presence_queries:
            raise ApplicationError(errors.NOT_AUTHORIZED.uri, "presence queries are disabled for this tenant")
        if (
            not isinstance(user_ids, list)
            or len(user_ids) > MAX_PRESENCE_IDS
            or not all(is_valid_entity_id(u) for u in user_ids)
        ):
            raise SendFailed(errors.INVALID_MESSAGE, f"user_ids must be a list of at most {MAX_PRESENCE_IDS} user ids")
        return await self.tenant.presence.get(user_ids)

    # -- backend procedures ------------------------------------------------------------------------------
    def _require_backend(self, details: CallDetails) -> None:
        if details is None or details.caller_authrole != uris.ROLE_BACKEND:
            raise ApplicationError(errors.NOT_AUTHORIZED.uri, "backend sessions only")

    async def list_sessions(self, user_id: str | None) -> list[dict[str, Any]]:
        """Sessions of the tenant (or of one user) on every node."""
        return await self.tenant.presence.sessions(user_id)

    async def kick(self, user_id: str, device_id: str | None) -> int:
        """End the user's sessions (or one device's) here and, in a cluster, on the other nodes."""
        kicked = self.kick_local(user_id, device_id)
        cluster = NODE.cluster
        if cluster is not None:
            remote = [
                s for s in await self.tenant.presence.sessions(user_id)
                if s["node_id"] != self.node_id and (device_id is None or s["device_id"] == device_id)
            ]  # fmt: skip
            for node_id in {s["node_id"] for s in remote}:
                cluster.send_to(node_id, [KICK, self.tenant_id, user_id, device_id])
            kicked += len(remote)
        return kicked

    def kick_local(self, user_id: str, device_id: str | None) -> int:
        targets = self.tenant.sessions.sessions_of(user_id, device_id)
        for info in targets:
            self.close_session(info.session_id, errors.CLOSE_KICKED, "kicked")
        return len(targets)

    async def session_list(self, user_id: Any = None, details: CallDetails = None, **_ignored: Any) -> dict[str, Any]:  # type: ignore[assignment]
        self._require_backend(details)
        if user_id is not None:
            _entity("user_id", user_id)
        return {"sessions": await self.list_sessions(user_id)}

    async def session_kick(
        self,
        user_id: Any = None,
        device_id: Any = None,
        details: CallDetails = None,
        **_ignored: Any,  # type: ignore[assignment]
    ) -> dict[str, Any]:
        self._require_backend(details)
        user_id = _entity("user_id", user_id)
        if device_id is not None:
            _entity("device_id", device_id)
        return {"kicked": await self.kick(user_id, device_id)}

    async def group_members_changed(
        self,
        group_id: Any = None,
        added: Any = None,
        removed: Any = None,
        details: CallDetails = None,  # type: ignore[assignment]
        **_ignored: Any,
    ) -> dict[str, Any]:
        self._require_backend(details)
        group_id = _entity("group_id", group_id)
        added = [] if added is None else added
        removed = [] if removed is None else removed
        for name, ids in (("added", added), ("removed", removed)):
            if not isinstance(ids, list) or not all(is_valid_entity_id(u) for u in ids):
                raise SendFailed(errors.INVALID_MESSAGE, f"{name} must be a list of user ids")
        if not added and not removed:
            raise SendFailed(errors.INVALID_MESSAGE, "added or removed must name someone")
        sender = Sender(details.caller_authid or "backend", None, details.caller or 0, True)
        body = {"added": added, "removed": removed}
        message = self._new_message(sender, SYSTEM, body, group_id=group_id)
        try:
            members = await self.tenant.hook.group_members(group_id, sender.user_id) if self.tenant.hook else []
        except HookUnavailable:
            members = []  # still tell those whose membership changed
        eligible = list(dict.fromkeys([*members, *added, *removed]))
        self._to_group(uris.group_topic(group_id), eligible, None, message.to_kwargs())
        self.tenant.events.put(
            events.Event(
                tenant_id=self.tenant_id,
                event_type=events.GROUP_MEMBER_CHANGE,
                timestamp=message.ts,
                node_id=self.node_id,
                data={"group_id": group_id, "added": added, "removed": removed},
                msg_id=message.msg_id,
                user_id=sender.user_id,
                group_id=group_id,
                trace_id=message.trace_id,
            )
        )
        return {"msg_id": message.msg_id, "ts": message.ts, "recipients": len(eligible)}
