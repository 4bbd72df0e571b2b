"""One policy over every hook transport: timeout, bulkhead with queue timeout, circuit breaker
(`guard.Guard`, one per hook of a tenant), and batched check-message calls (`batch.CheckBatcher`).

The check-message hook degrades to allow (a structured warning is logged, throttled); the auth
and group-members hooks turn the same troubles into `HookUnavailable` for the caller to refuse.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.interfaces import IReactorTime
from txaio import make_logger

from mics.config import TenantConfig
from mics.hooks import AuthReply, BatchUnsupported, Hook, Verdict
from mics.hooks.batch import CheckBatcher
from mics.hooks.guard import Guard, HookUnavailable
from mics.logs import RateLimitedLog
from mics.types import CheckVerdict

__all__ = ["Guard", "GuardedHook", "HookUnavailable"]

log = make_logger()
_degraded = RateLimitedLog(log, interval_s=1.0)


def _auth_timeouts(config: TenantConfig) -> tuple[int, int]:
    """Joins come in bursts (a reconnect storm after a restart): they may wait for a slot as long as
    the auth hook itself may take, not the send path's short queue timeout."""
    return config.hook_auth_timeout_ms, config.hook_auth_timeout_ms


class GuardedHook:
    """A tenant's hooks with policy applied; what messaging and auth call."""

    def __init__(self, tenant_id: str, hook: Hook, config: TenantConfig, reactor: IReactorTime) -> None:
        self.tenant_id = tenant_id
        self.hook = hook
        self._reactor = reactor
        self.auth_guard = Guard(tenant_id, "auth", config, *_auth_timeouts(config), reactor)
        self.check_guard = Guard(tenant_id, "check_message", config, config.hook_timeout_ms, None, reactor)
        self.members_guard = Guard(tenant_id, "group_members", config, config.hook_timeout_ms, None, reactor)
        self.batcher = CheckBatcher(tenant_id, hook, config, reactor)

    def configure(self, config: TenantConfig) -> None:
        """The tenant's policy settings changed (the transport did not): keep breakers and pools."""
        self.auth_guard.configure(config, *_auth_timeouts(config))
        self.check_guard.configure(config, config.hook_timeout_ms)
        self.members_guard.configure(config, config.hook_timeout_ms)
        self.batcher.configure(config)

    async def auth(self, token: str, device_id: str) -> AuthReply:
        return await self.auth_guard.run(lambda: self.hook.auth(token, device_id))

    async def group_members(self, group_id: str, from_user_id: str) -> list[str]:
        return await self.members_guard.run(lambda: self.hook.group_members(group_id, from_user_id))

    async def check_message(self, message: dict[str, Any]) -> CheckVerdict:
        """The tenant's verdict on `message`, alone or in a batch; allow when there is none."""
        try:
            if self.batcher.active:
                try:
                    allow, reason = await self._batched(message)
                    return CheckVerdict(allow, reason)
                except BatchUnsupported:
                    pass  # the backend has no batch hook: this one is checked alone
            allow, reason = await self.check_guard.run(lambda: self.hook.check_message(message))
        except HookUnavailable as e:
            self._warn_degraded(e.cause, message)
            return CheckVerdict(True, None)
        return CheckVerdict(allow, reason)

    async def _batched(self, message: dict[str, Any]) -> Verdict:
        """A message's verdict from its batch; counted per message like a single check."""
        try:
            verdict = await self.batcher.check(message)
        except HookUnavailable as e:
            self.check_guard.count(e.cause)
            raise
        self.check_guard.count("ok")
        return verdict

    def _warn_degraded(self, cause: str, message: dict[str, Any]) -> None:
        """At most one warning a second per tenant; the next one counts the rest."""
        _degraded.warn(
            self.tenant_id,
            "check-message hook unavailable, message allowed: tenant_id={tenant_id} cause={cause} msg_id={msg_id}",
            tenant_id=self.tenant_id, hook="check_message", cause=cause, msg_id=message.get("msg_id"),
            trace_id=message.get("trace_id"),
        )  # fmt: skip

    def close(self) -> None:
        self.batcher.flush()  # what has gathered goes out through this hook still
        self.hook.close()
