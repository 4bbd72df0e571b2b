"""Rate limits and circuit breaking: pure logic, the clock injected, no I/O."""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    """A token bucket whose burst is one second's budget (protocol.md: tenant message QPS).

    `recent` is how many takes were tried in the current one-second window (for the limit log)."""

    __slots__ = ("_clock", "_rate", "_stamp", "_tokens", "_window", "recent")

    def __init__(self, rate: float, clock: Clock) -> None:
        self._clock = clock
        self._rate = float(rate)
        self._tokens = float(rate)
        self._stamp = clock()
        self._window = self._stamp
        self.recent = 0

    @property
    def rate(self) -> float:
        return self._rate

    def set_rate(self, rate: float) -> None:
        """A new rate from now on; the tokens so far are kept, up to the new burst."""
        now = self._clock()
        self._tokens = min(self._tokens + (now - self._stamp) * self._rate, float(rate))
        self._stamp, self._rate = now, float(rate)

    def try_take(self, n: float = 1.0) -> bool:
        now = self._clock()
        if now - self._window >= 1.0:
            self._window, self.recent = now, 0
        self.recent += 1
        tokens = self._tokens + (now - self._stamp) * self._rate
        if tokens > self._rate:
            tokens = self._rate
        self._stamp = now
        if tokens + 1e-9 >= n:  # clock deltas are floats: 0.3 s at 10/s must give 3 tokens, not 2.999...
            self._tokens = max(tokens - n, 0.0)
            return True
        self._tokens = tokens
        return False


class KeyedBuckets:
    """One token bucket per key (a user, a client address), burst = one second's budget.

    A key idle for a second has a full bucket again, which is the same as no bucket: `sweep` forgets
    those, so memory follows the keys active in the last few seconds, not every key ever seen.
    `recent(key)` is how many takes the key tried in its current one-second window (for the log).
    """

    __slots__ = ("_clock", "_keys", "rate")

    def __init__(self, rate: float, clock: Clock) -> None:
        self._clock = clock
        self.rate = float(rate)
        # key -> [tokens, stamp, window start, takes in the window]
        self._keys: dict[object, list[float]] = {}

    def __len__(self) -> int:
        return len(self._keys)

    def try_take(self, key: object) -> bool:
        now = self._clock()
        rate = self.rate
        entry = self._keys.get(key)
        if entry is None:
            self._keys[key] = [rate - 1.0, now, now, 1.0]
            return rate >= 1.0
        tokens = entry[0] + (now - entry[1]) * rate
        if tokens > rate:
            tokens = rate
        entry[1] = now
        if now - entry[2] >= 1.0:
            entry[2], entry[3] = now, 0.0
        entry[3] += 1.0
        if tokens + 1e-9 >= 1.0:
            entry[0] = max(tokens - 1.0, 0.0)
            return True
        entry[0] = tokens
        return False

    def recent(self, key: object) -> int:
        entry = self._keys.get(key)
        return 0 if entry is None else int(entry[3])

    def configure(self, rate: float) -> None:
        self.rate = float(rate)

    def sweep(self) -> None:
        """Forget keys idle for a second or more (their buckets are full again)."""
        cutoff = self._clock() - 1.0
        for key in [k for k, e in self._keys.items() if e[1] <= cutoff]:
            del self._keys[key]


class CircuitBreaker:
    """Opens after `threshold` consecutive failures for `open_s`; then lets one trial call through.

    States: closed (calls pass), open (calls refused until open_s passed), half-open (one trial
    in flight; its success closes the breaker, its failure opens it again).
    """

    __slots__ = ("_clock", "_failures", "_opened_at", "_trial", "open_s", "threshold")

    def __init__(self, threshold: int, open_s: float, clock: Clock) -> None:
        self._clock = clock
        self.threshold = threshold
        self.open_s = open_s
        self._failures = 0
        self._opened_at: float | None = None
        self._trial = False

    @property
    def state(self) -> str:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.open_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """May a call go out now? In half-open state only one trial at a time."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._trial:
            self._trial = True
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._trial = False

    def record_failure(self) -> bool:
        """Count a failure; returns True when this failure opened the breaker."""
        self._trial = False
        self._failures += 1
        if self._opened_at is not None:
            self._opened_at = self._clock()
            return False
        if self._failures >= self.threshold:
            self._opened_at = self._clock()
            return True
        return False


MIN_CAPPED_RATE = 50.0  # sends/s: below this a tenant is never what saturates a node


class TenantShare:
    """One tenant's slot in `FairShare`: counts its attempts; refuses what is over its cap."""

    __slots__ = ("_bucket", "_clock", "attempts", "cap", "refused", "tenant_id")

    def __init__(self, tenant_id: str, clock: Clock) -> None:
        self.tenant_id = tenant_id
        self._clock = clock
        self.attempts = 0  # since the last tick
        self.refused = 0
        self.cap: float | None = None  # msg/s while the node is saturated and this tenant is over its share
        self._bucket: TokenBucket | None = None

    def admit(self) -> bool:
        """Count one send attempt; False when the tenant is capped and out of budget."""
        self.attempts += 1
        if self._bucket is None or self._bucket.try_take():
            return True
        self.refused += 1
        return False

    def set_cap(self, cap: float | None) -> None:
        """A new cap keeps what is left of the budget (at most the new cap's burst): a fresh full
        bucket every tick would let a capped tenant send its cap again each half second, ~3x the cap."""
        self.cap = cap
        if cap is None:
            self._bucket = None
        elif self._bucket is None:
            self._bucket = TokenBucket(max(cap, 1.0), self._clock)
        else:
            self._bucket.set_rate(max(cap, 1.0))


class FairShare:
    """Who is refused first when the router worker is saturated.

    Every tick gets the worker's busy fraction (its CPU time over wall time). While it is above
    `high`, the capacity to share is what the node admitted, scaled to a comfortable load; each
    tenant whose demand (send attempts per second) is above its max-min fair share of it gets a
    cap, lowered by `decrease` each tick the node stays saturated; below `low` caps grow by
    `increase` and go away once well above the demand. A tenant within its share is never capped,
    so its latency holds while the heavy ones take the refusals. (One tenant alone is capped too:
    a saturated node queues every call, and a lower rate of answered calls beats a growing queue.)
    """

    def __init__(self, clock: Clock, high: float = 0.85, low: float = 0.7, decrease: float = 0.7,
                 increase: float = 1.25) -> None:  # fmt: skip
        self._clock = clock
        self.high, self.low, self.decrease, self.increase = high, low, decrease, increase
        self._shares: dict[str, TenantShare] = {}
        self._last = clock()
        self.saturated = False

    def share(self, tenant_id: str) -> TenantShare:
        share = self._shares.get(tenant_id)
        if share is None:
            share = self._shares[tenant_id] = TenantShare(tenant_id, self._clock)
        return share

    def tick(self, busy: float) -> None:
        """`busy`: the worker's CPU fraction since the last tick."""
        now = self._clock()
        elapsed = max(now - self._last, 1e-3)
        self._last = now
        demand = {s.tenant_id: s.attempts / elapsed for s in self._shares.values() if s.attempts}
        handled = sum(demand.values())  # refused calls cost the router too: the capacity is what it handled
        for share in self._shares.values():
            share.attempts = share.refused = 0
        # saturated on two ticks in a row: one slow tick (a GC pause, a burst of joins) is no trend
        self.saturated, was = busy > self.high, self.saturated
        if self.saturated and was and demand:
            # what the node would admit at a comfortable load, shared max-min fairly: the tenants
            # taking more than their level are the ones that saturate it
            levels = fair_levels(demand, handled * (self.high + self.low) / 2 / busy)
            for tenant_id, rate in demand.items():
                share = self._shares[tenant_id]
                if rate > max(levels[tenant_id] * 1.05, MIN_CAPPED_RATE):  # over its share: shrink what it may send
                    start = levels[tenant_id] if share.cap is None else min(share.cap, levels[tenant_id])
                    share.set_cap(max(start * self.decrease, MIN_CAPPED_RATE))
        elif busy < self.low:
            for tenant_id, share in self._shares.items():
                if share.cap is None:
                    continue
                cap = share.cap * self.increase
                share.set_cap(None if cap > 2 * demand.get(tenant_id, 0) + 10 else cap)

    def capped(self) -> dict[str, float]:
        return {s.tenant_id: s.cap for s in self._shares.values() if s.cap is not None}


def fair_levels(demand: dict[str, float], capacity: float) -> dict[str, float]:
    """Max-min fair allocation of `capacity` over the tenants' demands (water-filling)."""
    levels: dict[str, float] = {}
    left, waiting = capacity, sorted(demand.items(), key=lambda kv: kv[1])
    while waiting:
        equal = left / len(waiting)
        tenant_id, want = waiting[0]
        if want > equal:
            for tenant_id, _want in waiting:
                levels[tenant_id] = equal
            break
        levels[tenant_id] = want
        left -= want
        waiting.pop(0)
    return levels
