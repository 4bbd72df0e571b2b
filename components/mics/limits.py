"""Rate limits and circuit breaking: pure logic, the clock injected, no I/O."""

from __future__ import annotations

from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    """A token bucket whose burst is one second's budget (protocol.md: tenant message QPS)."""

    __slots__ = ("_clock", "_rate", "_stamp", "_tokens")

    def __init__(self, rate: float, clock: Clock) -> None:
        self._clock = clock
        self._rate = float(rate)
        self._tokens = float(rate)
        self._stamp = clock()

    @property
    def rate(self) -> float:
        return self._rate

    def try_take(self, n: float = 1.0) -> bool:
        now = self._clock()
        tokens = self._tokens + (now - self._stamp) * self._rate
        if tokens > self._rate:
            tokens = self._rate
        self._stamp = now
        if tokens + 1e-9 >= n:  # clock deltas are floats: 0.3 s at 10/s must give 3 tokens, not 2.999...
            self._tokens = max(tokens - n, 0.0)
            return True
        self._tokens = tokens
        return False


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
