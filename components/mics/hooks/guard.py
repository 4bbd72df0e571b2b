"""One hook of one tenant, bounded: timeout, bulkhead with queue timeout, circuit breaker.

`HookUnavailable` is what a caller gets when the hook gave no answer; what that means (degrade to
allow, refuse the join or the send) is `policy.GuardedHook`'s to decide.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable
from typing import TypeVar

from twisted.internet.defer import CancelledError, Deferred, TimeoutError
from twisted.internet.interfaces import IReactorTime
from txaio import make_logger

from mics import metrics
from mics.config import TenantConfig
from mics.hooks import BatchUnsupported, HookFailure, HookRejected
from mics.limits import CircuitBreaker

T = TypeVar("T")
log = make_logger()


class HookUnavailable(Exception):
    """The hook gave no answer in time: timeout, failure, full queue or open breaker."""

    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class Guard:
    """Bounds one hook of one tenant: at most `max_concurrency` in flight, a timeout, a breaker."""

    def __init__(
        self,
        tenant_id: str,
        hook: str,
        config: TenantConfig,
        timeout_ms: int,
        queue_timeout_ms: int | None,
        reactor: IReactorTime,
    ) -> None:
        self._reactor = reactor
        self.breaker = CircuitBreaker(
            config.hook_breaker_failure_threshold, config.hook_breaker_open_ms / 1000.0, reactor.seconds
        )
        self.configure(config, timeout_ms, queue_timeout_ms)
        self.in_flight = 0
        self._waiters: deque[Deferred[None]] = deque()
        self._calls = {o: metrics.HOOK_CALLS.labels(tenant_id, hook, o) for o in _OUTCOMES}
        self._seconds = metrics.HOOK_SECONDS.labels(tenant_id, hook)
        self._breaker_gauge = metrics.BREAKER_OPEN.labels(tenant_id, hook)
        self.tenant_id = tenant_id
        self.hook = hook

    def configure(self, config: TenantConfig, timeout_ms: int, queue_timeout_ms: int | None = None) -> None:
        """New policy settings, in place: calls in flight, waiters and the breaker's state stay."""
        self._timeout_s = timeout_ms / 1000.0
        self._max = config.hook_max_concurrency
        queue_ms = config.hook_queue_timeout_ms if queue_timeout_ms is None else queue_timeout_ms
        self._queue_timeout_s = queue_ms / 1000.0
        self.breaker.threshold = config.hook_breaker_failure_threshold
        self.breaker.open_s = config.hook_breaker_open_ms / 1000.0

    async def _acquire(self) -> None:
        if self.in_flight < self._max:
            self.in_flight += 1
            return
        if self._queue_timeout_s <= 0:
            raise HookUnavailable("queue_full")
        waiter: Deferred[None] = Deferred()
        self._waiters.append(waiter)
        waiter.addTimeout(self._queue_timeout_s, self._reactor)
        try:
            await waiter  # the releaser hands its slot over: in_flight stays counted
        except (TimeoutError, CancelledError):
            raise HookUnavailable("queue_full") from None

    def _release(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.called:
                waiter.callback(None)
                return
        self.in_flight -= 1

    async def run(self, call: Callable[[], Awaitable[T]]) -> T:
        await self._acquire()
        try:
            if not self.breaker.allow():
                raise HookUnavailable("breaker_open")
            started = self._reactor.seconds()
            d = Deferred.fromCoroutine(call())  # type: ignore[arg-type]
            timed_out = False

            def on_timeout(result: object, timeout: float) -> object:
                # the transport may turn our cancel into any error: the timer firing decides
                nonlocal timed_out
                timed_out = True
                return result

            d.addTimeout(self._timeout_s, self._reactor, onTimeoutCancel=on_timeout)
            try:
                result: T = await d
            except BatchUnsupported:
                self._calls["failure"].inc()  # not the hook's health: the caller checks one by one
                raise
            except HookRejected:
                self.breaker.record_success()  # a clear "no" is a healthy hook
                self._seconds.observe(self._reactor.seconds() - started)
                self._calls["rejected"].inc()
                raise
            except (TimeoutError, CancelledError, HookFailure) as e:
                self._failed()
                cause = "timeout" if timed_out or not isinstance(e, HookFailure) else "failure"
                raise HookUnavailable(cause) from None
            self.breaker.record_success()
            self._breaker_gauge.set(0)
            self._seconds.observe(self._reactor.seconds() - started)
            self._calls["ok"].inc()
            return result
        except HookUnavailable as e:
            self._calls[e.cause].inc()
            raise
        finally:
            self._release()

    def count(self, outcome: str) -> None:
        """Count an outcome decided elsewhere (a message's share of a batched call)."""
        self._calls[outcome].inc()

    def _failed(self) -> None:
        if self.breaker.record_failure():
            self._breaker_gauge.set(1)
            log.warn(
                "hook breaker opened: tenant_id={tenant_id} hook={hook} open_ms={open_ms}",
                tenant_id=self.tenant_id,
                hook=self.hook,
                open_ms=int(self.breaker.open_s * 1000),
            )


_OUTCOMES = ("ok", "rejected", "timeout", "failure", "queue_full", "breaker_open")
