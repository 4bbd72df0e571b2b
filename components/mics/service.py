"""The send service of one tenant: every user and backend procedure, with no WAMP in it.

A send runs admit -> dedup -> check -> hold -> deliver -> event:

- admit: the request was validated at the edge (mics.requests); here the tenant's own limits
  apply (`max_payload_bytes`, the message QPS bucket);
- dedup: a repeat of (user, client_msg_id) gets the first Ack, even while the first is in flight;
- check: the check-message hook (bounded; trouble degrades to allow, a "no" fails the send);
- hold and deliver: one engine call (mics.engine) holds the message for sync and delivers it to
  the recipient's devices wherever they are connected, and returns its seq;
- event: appended to the tenant's event queue; the sinks run later.

Section 11 adds to it: per-user limits beside the tenant's, `mentions` and `reply_to` carried in
the Message, the sender index (so the sender may recall or edit within `recall_window_s`: the held
copies change in place, and a `recall`/`edit` Message goes the way the original went), group
signals, and the offline push trigger (mics.push) for recipients with no online device.

Section 12 plugs in after hold-and-deliver: `TenantRuntime.agents.trigger` says which agents a
user's send calls (their statuses go into the Ack); the calls run after the Ack (mics.agents), and
their final messages come back through `post`. Nothing is held in an agent's inbox.

The service is reached through `TenantRuntime.service`; the WAMP adapter (mics.messaging) only
parses requests, resolves the caller and maps errors. Unit tests drive it with a memory engine
and a fake realm port.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from txaio import make_logger

from mics import errors, events, limit_log, metrics, uris
from mics.engine import Held, Holds
from mics.errors import MicsError, SendFailed
from mics.hooks.policy import HookUnavailable
from mics.logs import RateLimitedLog
from mics.requests import (
    MAX_MENTIONS,
    MAX_TEXT_FIELD,
    EditRequest,
    GroupSendRequest,
    MembersChangedRequest,
    NoArgs,
    PresenceRequest,
    RecallRequest,
    ReceiptRequest,
    SendRequest,
    SessionKickRequest,
    SessionListRequest,
    SignalRequest,
    SyncRequest,
)
from mics.types import CHAT, EDIT, GROUP_CHAT, RECALL, RECEIPT, SIGNAL, SYSTEM, Ack, Message, Sender, now_ms
from mics.values import body_size

if TYPE_CHECKING:
    from mics.tenants import TenantRuntime

log = make_logger()
_limited = RateLimitedLog(log)

HOLD_BACK_S = 0.1  # a refused sender's connection is not read this long (node saturated, tenant over its share)
ENTRY_OVERHEAD = 256  # bytes a held message costs beyond its body and mentions (byte cap, sync pages)
# what an edit or recall of a group message may leave held beyond its new body: the mentions it was
# sent with (the held size drives the sync page cut, mics.buffer.SYNC_PAGE_BYTES, so it must not shrink)
MENTIONS_ALLOWANCE = MAX_MENTIONS * (4 * MAX_TEXT_FIELD + 3)


def held_size(size: int, payload: dict[str, Any]) -> int:
    """What a held copy of `payload` (body of `size` bytes) costs: its body, its mentions (up to
    MAX_MENTIONS ids a message, which the body size does not count) and ENTRY_OVERHEAD for the rest."""
    mentions = payload.get("mentions")
    return size + ENTRY_OVERHEAD + (sum(len(m.encode()) + 3 for m in mentions) if mentions else 0)


_DELIVERED = ("online", "buffered", "offline")


class SendService:
    """One tenant's procedures (protocol.md sections 3 and 7)."""

    def __init__(self, tenant: TenantRuntime) -> None:
        self._tenant = tenant
        self.tenant_id = tenant.tenant_id
        self._inflight: dict[tuple[str, str], list[Deferred[dict[str, Any]]]] = {}
        self._messages = {
            (t, d): metrics.MESSAGES.labels(self.tenant_id, t, d)
            for t in (CHAT, GROUP_CHAT, RECEIPT, SIGNAL, SYSTEM, RECALL, EDIT)
            for d in _DELIVERED
        }
        self._failures = {r: metrics.SEND_FAILURES.labels(self.tenant_id, r) for r in _FAILURE_REASONS}

    # -- sends ------------------------------------------------------------------------------------------
    async def send(self, sender: Sender, req: SendRequest) -> dict[str, Any]:
        """`mics.message.send`: hold and deliver to the recipient, copy to the sender's other devices."""
        cmid = req.client_msg_id
        self._admit(req.size, cmid, sender)

        async def work() -> dict[str, Any]:
            self._take_rate(sender, cmid)
            message = self._new_message(
                sender, CHAT, req.body, to_user_id=req.to_user_id, content_type=req.content_type, client_msg_id=cmid,
                reply_to=req.reply_to,
            )  # fmt: skip
            payload = message.to_kwargs()
            await self._check(sender, payload, cmid)
            seq, held = await self._to_inbox(sender, req.to_user_id, payload, req.size, self._remember_s(sender))
            agents = self._tenant.agents
            to_agent = agents.serves(req.to_user_id)
            if to_agent:  # section 12: the agent gets it in its call, not in an inbox
                started = agents.trigger(sender, payload)
                delivered = "online" if any(a["status"] == "started" for a in started) else "offline"
            else:
                started = None
                delivered = "online" if held.online else "buffered"
            self._messages[(message.type, delivered)].inc()
            self._emit_message(events.SINGLE_CHAT_MSG, message, payload, sender)
            if not to_agent and not held.online:  # after the message's own event, as in every sink
                self._tenant.push.offline(req.to_user_id, {**payload, "seq": held.seq})
            return Ack(message.msg_id, message.ts, delivered, seq, cmid, agents=started).to_kwargs()

        return await self._once(sender, cmid, work)

    async def group_send(self, sender: Sender, req: GroupSendRequest) -> dict[str, Any]:
        """`mics.group.send`: one delivery to the members; held for offline ones with group_buffering."""
        cmid = req.client_msg_id
        self._admit(req.size, cmid, sender)

        async def work() -> dict[str, Any]:
            self._take_rate(sender, cmid)
            message = self._new_message(
                sender, GROUP_CHAT, req.body, group_id=req.group_id, content_type=req.content_type, client_msg_id=cmid,
                reply_to=req.reply_to, mentions=req.mentions,
            )  # fmt: skip
            payload = message.to_kwargs()
            # ask both hooks at once; members decide delivery, the check may reject
            checked = Deferred.fromCoroutine(self._check(sender, payload, cmid))
            try:
                members = await self._members(req.group_id, sender.user_id, cmid)
            except BaseException:
                checked.addErrback(lambda _f: None)  # the send failed already; drop the check's outcome
                raise
            await checked
            delivered, held = await self._to_group(sender, req.group_id, members, payload, req.size)
            remember_s = self._remember_s(sender)
            if remember_s:
                await self._tenant.engine.remember_sent(payload, held, remember_s)
            self._messages[(message.type, delivered)].inc()
            self._emit_message(events.GROUP_CHAT_MSG, message, payload, sender)
            if req.mentions:
                await self._push_mentioned(sender, members, req.mentions, payload)
            started = self._tenant.agents.trigger(sender, payload, members)  # section 12: mentions, keywords
            return Ack(message.msg_id, message.ts, delivered, None, cmid, recipients=len(members),
                       agents=started).to_kwargs()  # fmt: skip

        return await self._once(sender, cmid, work)

    async def _to_group(
        self, sender: Sender, group_id: str, members: list[str], payload: dict[str, Any], size: int
    ) -> tuple[str, tuple[tuple[str, int], ...]]:
        """One delivery to the members' sessions on every node (and the sender's other devices); with
        group_buffering a held copy for each offline member. Returns `delivered` and the held copies."""
        tenant = self._tenant
        engine = tenant.engine
        eligible = members if sender.user_id in members or sender.is_system else [*members, sender.user_id]
        await engine.group(uris.group_topic(group_id), eligible, sender.own_session, payload)
        others = [m for m in members if m != sender.user_id]
        config = tenant.config
        held: tuple[tuple[str, int], ...] = ()
        if config.group_buffering:  # offline members find it with sync (an entry each)
            online = await engine.online_among(others)
            offline = [m for m in others if m not in online]
            held = await engine.hold(offline, payload, held_size(size, payload), config.offline_ttl_s)
            any_online = bool(online)
        else:
            any_online = await engine.any_online(others)
        # nobody else online: held for them with group_buffering, otherwise gone (best effort)
        return "online" if any_online else ("buffered" if config.group_buffering else "offline"), held

    async def _push_mentioned(
        self, sender: Sender, members: list[str], mentions: list[str], payload: dict[str, Any]
    ) -> None:
        """An offline push trigger for each mentioned member with no online device (mentioning
        someone outside the group triggers nothing)."""
        in_group = set(members)
        mentioned = [m for m in mentions if m in in_group and m != sender.user_id]
        if not mentioned:
            return
        online = await self._tenant.engine.online_among(mentioned)
        for user_id in mentioned:
            if user_id not in online:
                self._tenant.push.offline(user_id, payload)

    async def receipt(self, sender: Sender, req: ReceiptRequest) -> dict[str, Any]:
        """`mics.message.receipt`: a `receipt` Message on the inbox path (held, with a seq)."""
        self._take_rate(sender, None)
        body = req.body
        message = self._new_message(sender, RECEIPT, body, to_user_id=req.to_user_id)
        seq, held = await self._to_inbox(sender, req.to_user_id, message.to_kwargs(), body_size(body))
        delivered = "online" if held.online else "buffered"
        self._messages[(message.type, delivered)].inc()
        return Ack(message.msg_id, message.ts, delivered, seq).to_kwargs()

    async def signal(self, sender: Sender, req: SignalRequest) -> dict[str, Any]:
        """`mics.signal.send`: live to the recipient's online devices only (or to a group's online
        members, section 11); never held, no seq, no event."""
        self._admit(req.size, None, sender)
        self._take_rate(sender, None)
        engine = self._tenant.engine
        if req.group_id is not None:
            members = await self._members(req.group_id, sender.user_id, None)
            if not sender.is_system and sender.user_id not in members:
                self._failures["rejected"].inc()
                raise SendFailed(errors.REJECTED, f"only members of {req.group_id!r} may signal it")
            message = self._new_message(sender, SIGNAL, req.body, group_id=req.group_id)
            others = [m for m in members if m != sender.user_id]
            await engine.group(uris.group_topic(req.group_id), others, sender.own_session, message.to_kwargs())
            online = await engine.any_online(others)
        else:
            assert req.to_user_id is not None
            message = self._new_message(sender, SIGNAL, req.body, to_user_id=req.to_user_id)
            online = await engine.live(req.to_user_id, sender.own_session, message.to_kwargs())
        delivered = "online" if online else "offline"
        self._messages[(message.type, delivered)].inc()
        return Ack(message.msg_id, message.ts, delivered).to_kwargs()

    # -- recall and edit (section 11) ---------------------------------------------------------------------
    async def recall(self, sender: Sender, req: RecallRequest) -> dict[str, Any]:
        """`mics.message.recall`: held copies become tombstones; a `recall` Message goes where the
        original went."""
        return await self._change(sender, req.msg_id, RECALL, None, 4, None)

    async def edit(self, sender: Sender, req: EditRequest) -> dict[str, Any]:
        """`mics.message.edit`: held copies get the new body; an `edit` Message goes where the
        original went. The new body passes the check-message hook like a send."""
        self._admit(req.size, None, sender)
        return await self._change(sender, req.msg_id, EDIT, req.body, req.size, req.content_type)

    async def _change(
        self, sender: Sender, msg_id: str, kind: str, body: Any, size: int, content_type: str | None
    ) -> dict[str, Any]:
        _require_user(sender)
        self._take_rate(sender, None)
        tenant = self._tenant
        window_s = tenant.config.recall_window_s
        if window_s <= 0:
            self._failures["rejected"].inc()
            raise SendFailed(errors.REJECTED, "recall and edit are turned off for this tenant")
        engine = tenant.engine
        sent = await engine.sent(msg_id)
        if sent is None or sent.recalled or sent.ts < now_ms() - window_s * 1000:
            self._failures["not_found"].inc()
            raise SendFailed(errors.NOT_FOUND, f"no message {msg_id!r} to change (unknown, recalled, or too old)")
        if sent.from_user_id != sender.user_id:
            self._failures["rejected"].inc()
            raise SendFailed(errors.REJECTED, "only its sender may recall or edit a message")
        where = {"to_user_id": sent.to_user_id} if sent.group_id is None else {"group_id": sent.group_id}
        message = self._new_message(sender, kind, body, content_type=content_type, ref_msg_id=msg_id, **where)
        payload = message.to_kwargs()
        members: list[str] = []
        if kind == EDIT:
            await self._check(sender, payload, None)
        if sent.group_id is not None:
            members = await self._members(sent.group_id, sender.user_id, None)
        if kind == RECALL:
            patch: dict[str, Any] = {"body": None, "recalled": True}
        else:
            patch = {"body": body, "edited_at": message.ts}
            if content_type is not None:
                patch["content_type"] = content_type
        held = size + ENTRY_OVERHEAD + (MENTIONS_ALLOWANCE if sent.group_id is not None else 0)
        if not await engine.amend(sent, patch, held, kind == RECALL):
            self._failures["not_found"].inc()
            raise SendFailed(errors.NOT_FOUND, f"message {msg_id!r} was recalled")
        pushed: int | None = None  # the recipient's seq of an edit that found them offline
        if sent.group_id is None:
            assert sent.to_user_id is not None
            seq, held = await self._to_inbox(sender, sent.to_user_id, payload, size)
            delivered = "online" if held.online else "buffered"
            pushed = held.seq if not held.online and kind == EDIT else None
            ack = Ack(message.msg_id, message.ts, delivered, seq)
        else:
            delivered, _held = await self._to_group(sender, sent.group_id, members, payload, size)
            ack = Ack(message.msg_id, message.ts, delivered, recipients=len(members))
        self._messages[(kind, delivered)].inc()
        self._emit_message(events.MESSAGE_RECALL if kind == RECALL else events.MESSAGE_EDIT, message, payload, sender)
        if pushed is not None and sent.to_user_id is not None:
            tenant.push.offline(sent.to_user_id, {**payload, "seq": pushed})
        return ack.to_kwargs()

    async def members_changed(self, sender: Sender, req: MembersChangedRequest) -> dict[str, Any]:
        """`mics.group.members_changed` (backends): GROUP_MEMBER_CHANGE, and a system message to the
        group's members and to those who joined or left."""
        _require_system(sender)
        tenant = self._tenant
        message = self._new_message(sender, SYSTEM, req.body, group_id=req.group_id)
        try:
            members = await tenant.hook.group_members(req.group_id, sender.user_id) if tenant.hook else []
        except HookUnavailable:
            members = []  # still tell those whose membership changed
        eligible = list(dict.fromkeys([*members, *req.added, *req.removed]))
        await tenant.engine.group(uris.group_topic(req.group_id), eligible, None, message.to_kwargs())
        self._emit(
            events.GROUP_MEMBER_CHANGE, message, {"group_id": req.group_id, **req.body}, user_id=sender.user_id,
            group_id=req.group_id,
        )  # fmt: skip
        return {"msg_id": message.msg_id, "ts": message.ts, "recipients": len(eligible)}

    # -- reads and sessions ----------------------------------------------------------------------------
    async def sync(self, sender: Sender, req: SyncRequest) -> dict[str, Any]:
        """`mics.inbox.sync`: what is held after `since_seq`, oldest first."""
        if sender.is_system:
            raise MicsError(errors.NOT_AUTHORIZED, "only users have an inbox")
        result = await self._tenant.engine.sync(sender.user_id, req.since_seq, req.epoch)
        return result.to_kwargs()

    async def ping(self, sender: Sender, req: NoArgs) -> dict[str, Any]:
        return {"ts": now_ms(), "heartbeat_timeout_s": self._tenant.config.heartbeat_timeout_s}

    async def presence(self, sender: Sender, req: PresenceRequest) -> dict[str, Any]:
        """`mics.presence.get` (users only where the tenant allows presence queries)."""
        if not sender.is_system and not self._tenant.config.presence_queries:
            raise MicsError(errors.NOT_AUTHORIZED, "presence queries are disabled for this tenant")
        return await self._tenant.engine.presence.get(req.user_ids)

    async def agent_list(self, sender: Sender, req: NoArgs) -> dict[str, Any]:
        """`mics.agent.list` (section 12): the tenant's agents, by id, name and description."""
        return {"agents": self._tenant.agents.listing()}

    async def post(self, sender: Sender, message: Message, size: int, members: Sequence[str] = ()) -> None:
        """Hold and deliver a message the node makes itself for `sender` (an agent's final message,
        section 12) as a send would be: 1:1 to `to_user_id`, or to the group's `members`; counted,
        evented and pushed. No hooks: the tenant's own agent wrote it."""
        payload = message.to_kwargs()
        if message.group_id is None:
            assert message.to_user_id is not None
            _seq, held = await self._to_inbox(sender, message.to_user_id, payload, size)
            delivered = "online" if held.online else "buffered"
            if not held.online:
                self._tenant.push.offline(message.to_user_id, {**payload, "seq": held.seq})
            event_type = events.SINGLE_CHAT_MSG
        else:
            delivered, _held = await self._to_group(sender, message.group_id, list(members), payload, size)
            event_type = events.GROUP_CHAT_MSG
        self._messages[(message.type, delivered)].inc()
        self._emit_message(event_type, message, payload, sender)

    async def session_list(self, sender: Sender, req: SessionListRequest) -> dict[str, Any]:
        """`mics.session.list` (backends): sessions on every node."""
        _require_system(sender)
        return {"sessions": await self._tenant.engine.presence.sessions(req.user_id)}

    async def session_kick(self, sender: Sender, req: SessionKickRequest) -> dict[str, Any]:
        """`mics.session.kick` (backends)."""
        _require_system(sender)
        return {"kicked": await self._tenant.kick(req.user_id, req.device_id)}

    # -- the pipeline's steps --------------------------------------------------------------------------
    def _admit(self, size: int, cmid: str | None, sender: Sender) -> None:
        tenant = self._tenant
        limit = tenant.config.max_payload_bytes
        if size > limit:
            self._failures["payload_too_large"].inc()
            tenant.limit_hits.hit(limit_log.MAX_PAYLOAD_BYTES, limit, size, sender.user_id)
            raise SendFailed(errors.PAYLOAD_TOO_LARGE, f"body is {size} bytes, over {limit}", cmid)

    def _take_rate(self, sender: Sender, cmid: str | None) -> None:
        """The user's own budget first (a flooding user must not use up the tenant's), then the node's fair
        share, then the tenant's budget. A backend's system sends have only the last two."""
        tenant = self._tenant
        if not sender.is_system:
            users = tenant.user_buckets
            if not users.try_take(sender.user_id):
                self._failures["rate_limited"].inc()
                tenant.limit_hits.hit(limit_log.MAX_USER_MESSAGE_QPS, tenant.config.max_user_message_qps,
                                      users.recent(sender.user_id), sender.user_id)  # fmt: skip
                raise SendFailed(errors.RATE_LIMITED, "your message rate limit is exceeded", cmid)
        if not tenant.share.admit():
            self._failures["fair_share"].inc()
            tenant.port.hold_back(sender.session_id, HOLD_BACK_S)  # its next calls wait in its socket, not here
            raise SendFailed(errors.RATE_LIMITED, "the node is saturated and this tenant is over its fair share", cmid)
        bucket = tenant.bucket
        if not bucket.try_take():
            self._failures["rate_limited"].inc()
            tenant.limit_hits.hit(limit_log.MAX_MESSAGE_QPS, tenant.config.max_message_qps, bucket.recent)
            raise SendFailed(errors.RATE_LIMITED, "the tenant's message rate limit is exceeded", cmid)

    def _remember_s(self, sender: Sender) -> float:
        """How long the sender index keeps a user's message (recall_window_s; system sends: never)."""
        return 0 if sender.is_system else self._tenant.config.recall_window_s

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
        engine = self._tenant.engine
        try:
            ack = await engine.seen(sender.user_id, cmid)
            if ack is None:
                ack = await work()
                await engine.remember(sender.user_id, cmid, ack)
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
        msg_id = self._tenant.ids.make(ts)
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
        tenant = self._tenant
        if sender.is_system or not tenant.config.check_message_hook or tenant.hook is None:
            return
        verdict = await tenant.hook.check_message(payload)
        if not verdict.allow:
            self._failures["rejected"].inc()
            raise SendFailed(errors.REJECTED, verdict.reason or "rejected by the tenant", cmid)

    async def _to_inbox(
        self, sender: Sender, to_user_id: str, payload: dict[str, Any], size: int, remember_s: float = 0
    ) -> tuple[int, Held]:
        """Hold and deliver an inbox message (and the sender's copy). Returns the Ack's seq (the
        sender's copy; the recipient's for a system sender or a note to self) and what was held."""
        tenant = self._tenant
        to_self = to_user_id == sender.user_id
        copy_for = None if sender.is_system or to_self else sender.user_id
        holds = Holds.of(tenant.config)
        if tenant.agents.serves(to_user_id):  # nobody reads an agent's inbox: hold only the sender's copy
            holds = Holds(0, 0, holds.copy_s)
        held = await tenant.engine.inbox(
            to_user_id, copy_for, sender.own_session, payload, held_size(size, payload), holds, remember_s
        )
        return (held.seq if held.copy_seq is None else held.copy_seq), held

    async def _members(self, group_id: str, from_user_id: str, cmid: str | None) -> list[str]:
        hook = self._tenant.hook
        try:
            if hook is None:
                raise HookUnavailable("no_hook")
            members = await hook.group_members(group_id, from_user_id)
        except HookUnavailable as e:
            self._failures["hook_unavailable"].inc()
            _limited.warn((self.tenant_id, "group_members"), "group-members hook unavailable: tenant_id={tenant_id} "
                          "cause={cause}", tenant_id=self.tenant_id, cause=e.cause)  # fmt: skip
            raise SendFailed(errors.HOOK_UNAVAILABLE, "the group-members hook is unavailable", cmid) from None
        if not members:
            self._failures["empty_group"].inc()
            raise SendFailed(errors.EMPTY_GROUP, f"group {group_id!r} has no members", cmid)
        return members

    def _emit_message(self, event_type: str, message: Message, payload: dict[str, Any], sender: Sender) -> None:
        """`payload` is the message's kwargs, already built for delivery (never mutated after)."""
        self._emit(
            event_type, message, payload, user_id=message.from_user_id, device_id=sender.device_id or "",
            to_user_id=message.to_user_id or "", group_id=message.group_id or "",
        )  # fmt: skip

    def _emit(self, event_type: str, message: Message, data: dict[str, Any], **fields: str) -> None:
        self._tenant.emit(event_type, data, message.ts, msg_id=message.msg_id, trace_id=message.trace_id, **fields)


_FAILURE_REASONS = (
    "payload_too_large", "rate_limited", "fair_share", "rejected", "hook_unavailable", "empty_group", "not_found",
)  # fmt: skip


def _require_system(sender: Sender) -> None:
    if not sender.is_system:
        raise MicsError(errors.NOT_AUTHORIZED, "backend sessions only")


def _require_user(sender: Sender) -> None:
    if sender.is_system:
        raise MicsError(errors.NOT_AUTHORIZED, "user sessions only")
