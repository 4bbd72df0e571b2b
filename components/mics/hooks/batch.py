"""The batched check-message hook: many messages, one hook call (tenant config `hook_batch_max` > 1).

Each checked send costs the router a hook round trip (WAMP: an INVOCATION out and a YIELD in, each
serialized, framed and dispatched; HTTP: a request). Gathering the checks of the same few
milliseconds into one `mics.hook.check_messages` call or `POST /check-messages` pays that once per
batch. A batch leaves when it holds `hook_batch_max` messages or its first message has waited
`hook_batch_wait_ms` (0: at the end of the reactor turn that queued it), and before it would carry
more than `MAX_BATCH_BYTES`: a backend's transport refuses messages over its size limit (1 MiB for
a WAMP backend of the default router config), and one sender's large messages must not make a
batch of other senders' messages fail, which would let them all through unchecked.

The policy is the single check's, per batch call (a `Guard` of its own: timeout, bulkhead, breaker),
and per message when there is no answer: each message of a failed batch, and each message the
backend gave no verdict, degrades to allow (`GuardedHook`). A backend that does not serve the
batch procedure makes the batcher step aside for `UNSUPPORTED_RETRY_S`: single checks go on.
"""

from __future__ import annotations

from typing import Any

import msgpack
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from txaio import make_logger

from mics import metrics
from mics.config import TenantConfig
from mics.hooks import BatchUnsupported, Hook, Verdict
from mics.hooks.guard import Guard, HookUnavailable

log = make_logger()

UNSUPPORTED_RETRY_S = 30.0
MAX_BATCH_BYTES = 256 * 1024  # messages per batch call, msgpack-encoded (a larger message goes alone)


def _size(message: dict[str, Any]) -> int:
    try:
        return len(msgpack.packb(message))
    except (TypeError, ValueError):  # not msgpack-able: let it go alone
        return MAX_BATCH_BYTES


class CheckBatcher:
    """Gathers one tenant's check-message calls into batches; each caller gets its message's verdict."""

    def __init__(self, tenant_id: str, hook: Hook, config: TenantConfig, reactor: IReactorTime) -> None:
        self.tenant_id = tenant_id
        self._hook = hook
        self._reactor = reactor
        self.guard = Guard(tenant_id, "check_messages", config, config.hook_timeout_ms, None, reactor)
        self._pending: list[tuple[dict[str, Any], Deferred[Verdict]]] = []
        self._pending_bytes = 0
        self._timer: IDelayedCall | None = None
        self._unsupported_until = 0.0
        self._sizes = metrics.HOOK_BATCH_SIZE.labels(tenant_id)
        self.configure(config)

    def configure(self, config: TenantConfig) -> None:
        self.max = config.hook_batch_max
        self._wait_s = config.hook_batch_wait_ms / 1000.0
        self._timeout_ms = config.hook_timeout_ms
        self.guard.configure(config, config.hook_timeout_ms)
        if len(self._pending) >= self.max:
            self.flush()

    @property
    def active(self) -> bool:
        """Whether checks go in batches now (configured, and the backend serves the batch hook)."""
        return self.max > 1 and self._reactor.seconds() >= self._unsupported_until

    def check(self, message: dict[str, Any]) -> Deferred[Verdict]:
        """The verdict for `message` once its batch is answered. Fails with HookUnavailable (no answer for
        the batch, or none for this message) or BatchUnsupported (check it alone)."""
        d: Deferred[Verdict] = Deferred()
        size = _size(message)
        if self._pending and self._pending_bytes + size > MAX_BATCH_BYTES:
            self.flush()  # what gathered goes first; this one starts the next batch
        self._pending.append((message, d))
        self._pending_bytes += size
        if len(self._pending) >= self.max or self._pending_bytes >= MAX_BATCH_BYTES:
            self.flush()
        elif self._timer is None:
            self._timer = self._reactor.callLater(self._wait_s, self.flush)
        return d

    def flush(self) -> None:
        """Send what is gathered now."""
        if self._timer is not None:
            if self._timer.active():
                self._timer.cancel()
            self._timer = None
        batch, self._pending, self._pending_bytes = self._pending, [], 0
        while batch:  # a lowered hook_batch_max splits what had gathered already
            part, batch = batch[: self.max], batch[self.max :]
            Deferred.fromCoroutine(self._run(part))

    async def _run(self, batch: list[tuple[dict[str, Any], Deferred[Verdict]]]) -> None:
        messages = [m for m, _ in batch]
        self._sizes.observe(len(messages))
        try:
            verdicts = await self.guard.run(lambda: self._hook.check_messages(messages, self._timeout_ms))
        except BatchUnsupported as e:
            self._step_aside(str(e))
            for _, d in batch:
                d.errback(e)
            return
        except HookUnavailable as e:
            for _, d in batch:
                d.errback(HookUnavailable(e.cause))
            return
        except Exception:  # a transport error nobody foresaw: still, no sender may wait forever
            log.failure("batched check failed unexpectedly: tenant_id={tenant_id}", tenant_id=self.tenant_id)
            for _, d in batch:
                d.errback(HookUnavailable("failure"))
            return
        for (_, d), verdict in zip(batch, verdicts, strict=True):
            if verdict is None:
                d.errback(HookUnavailable("failure"))  # no verdict for this one: it alone degrades
            else:
                d.callback(verdict)

    def _step_aside(self, why: str) -> None:
        if self._reactor.seconds() < self._unsupported_until:
            return
        self._unsupported_until = self._reactor.seconds() + UNSUPPORTED_RETRY_S
        log.warn(
            "the tenant's backend does not serve batched checks: checking one by one for {retry_s} s: "
            "tenant_id={tenant_id} error={error}",
            tenant_id=self.tenant_id,
            retry_s=int(UNSUPPORTED_RETRY_S),
            error=why,
        )
