"""The offline push trigger (protocol.md section 11): an `OFFLINE_PUSH` event when a message reaches
a user with no online device, for the tenant's own push service (APNs, FCM, WebPush) to act on.

MICS sends no push notifications itself: it tells the tenant, through its event sinks, that a user
who is offline got something worth a push. Per (user, conversation) at most one trigger per
`push_collapse_s` (claimed through the engine, so across the cluster); more are counted, not
emitted. With `push_delay_s` the trigger waits, and is emitted only if the user is still offline
then (a device that reconnects within a few seconds gets the message through sync, no push).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from txaio import make_logger

from mics import events, metrics

if TYPE_CHECKING:
    from mics.tenants import TenantRuntime

log = make_logger()

OUTCOMES = ("emitted", "collapsed", "online", "failed")


def conversation_of(message: dict[str, Any]) -> str:
    """The conversation a message belongs to, as its recipient sees it: the group, or the sender."""
    group_id = message.get("group_id")
    return "g:" + group_id if group_id else "u:" + message["from_user_id"]


class OfflinePush:
    """One tenant's push triggers."""

    def __init__(self, tenant: TenantRuntime, reactor: Any) -> None:
        self._tenant = tenant
        self._reactor = reactor
        self._waiting: set[IDelayedCall] = set()
        self._counts = {o: metrics.PUSH.labels(tenant.tenant_id, o) for o in OUTCOMES}

    def offline(self, user_id: str, message: dict[str, Any]) -> None:
        """`message` (its kwargs, with the recipient's seq where it has one) reached `user_id`, who
        had no online device. Returns at once; the trigger is claimed, delayed and emitted later."""
        Deferred.fromCoroutine(self._trigger(user_id, message)).addErrback(self._failed, user_id)

    async def _trigger(self, user_id: str, message: dict[str, Any]) -> None:
        config = self._tenant.config
        if config.push_collapse_s > 0:
            key = f"push:{user_id}:{conversation_of(message)}"
            if not await self._tenant.engine.claim_once(key, config.push_collapse_s):
                self._counts["collapsed"].inc()
                return
        if config.push_delay_s <= 0:
            self._emit(user_id, message)
            return
        call: IDelayedCall = self._reactor.callLater(config.push_delay_s, self._after_delay, user_id, message)
        self._waiting.add(call)

    def _after_delay(self, user_id: str, message: dict[str, Any]) -> None:
        self._waiting = {c for c in self._waiting if c.active()}
        Deferred.fromCoroutine(self._if_still_offline(user_id, message)).addErrback(self._failed, user_id)

    async def _if_still_offline(self, user_id: str, message: dict[str, Any]) -> None:
        if await self._tenant.engine.any_online([user_id]):
            self._counts["online"].inc()
            return
        self._emit(user_id, message)

    def _emit(self, user_id: str, message: dict[str, Any]) -> None:
        self._tenant.emit(
            events.OFFLINE_PUSH, message, msg_id=message["msg_id"], user_id=user_id,
            to_user_id=message.get("to_user_id") or "", group_id=message.get("group_id") or "",
            trace_id=message.get("trace_id") or "",
        )  # fmt: skip
        self._counts["emitted"].inc()

    def _failed(self, failure: Any, user_id: str) -> None:
        self._counts["failed"].inc()
        log.warn("offline push trigger failed: tenant_id={tenant_id} user_id={user_id} error={error}",
                 tenant_id=self._tenant.tenant_id, user_id=user_id, error=failure.getErrorMessage())  # fmt: skip

    def close(self) -> None:
        """Pending delayed triggers are dropped (the node stops)."""
        for call in self._waiting:
            if call.active():
                call.cancel()
        self._waiting.clear()
