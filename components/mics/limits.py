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
