"""Cluster-wide tenant limits without a Redis round trip per send: pure logic, clock injected.

Every node enforces a tenant's limits locally and learns the other nodes' load from a report each
node writes on its tick (mics.cluster.load; every 0.5 s):

- **message QPS** (`max_message_qps`): each node spends its *share* of the tenant's rate from a
  local bucket (`SharedBucket`: refill = share, burst = one second of share). Shares come from
  every node's demand (sends attempted per second, refused ones included) by max-min fairness
  (`allocate`): a node gets what it asks for when the rate allows, the busiest get the rest in
  equal parts, and what nobody asks for is spread evenly (so a burst on any node finds room);
- **per-user QPS** (`SharedKeyedBuckets`, for `max_user_message_qps`): the same per user, but only
  users sending at least a quarter of their rate on a node are reported (HEAVY_FRACTION); a user
  reported by one node only keeps the whole rate there;
- **connections** (`max_connections`): the other nodes' counts as of their last report are taken
  off the tenant's limit here (`Quotas.elsewhere`). Per user, the devices on other nodes come from
  presence at the join (mics.engine).

Tolerance: shares and counts are at most one report old, so a node applies a change in demand
one tick late. A node never exceeds its share; the cluster's sum of shares can exceed the rate for
one tick after demand moves between nodes (each node computes from the others' previous report).
When the reports stop (Redis unreachable), each node falls back to the whole limit: per-node
limits, as on one node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

Clock = Callable[[], float]

IDLE_FLOOR = 0.02  # an idle node still holds this fraction of the rate: its first sends pass at once
HEAVY_FRACTION = 0.25  # a user is reported once sending this fraction of the per-user rate on a node
STALE_S = 2.0  # reports older than this (Redis unreachable): back to per-node limits


def allocate(total: float, demands: Sequence[float]) -> list[float]:
    """Max-min fair shares of `total` for `demands` (each raised to IDLE_FLOOR of the total): every
    demand that fits is met, the largest split the rest equally, what is left over goes to all
    equally. Every node computes the same shares from the same reports; they sum to `total`."""
    if not demands:
        return []
    wants = [max(d, total * IDLE_FLOOR) for d in demands]
    shares = [0.0] * len(wants)
    remaining = total
    order = sorted(range(len(wants)), key=wants.__getitem__)
    for position, i in enumerate(order):
        fair = remaining / (len(order) - position)
        shares[i] = min(wants[i], fair)
        remaining -= shares[i]
    spare = remaining / len(shares)
    return [s + spare for s in shares]


class Demand:
    """Attempts per second, measured between two reports: the higher of the last two measurements,
    so one stalled tick (a client's pause, a GC) does not hand this node's share to another."""

    __slots__ = ("_last", "_since", "attempts")

    def __init__(self, now: float) -> None:
        self.attempts = 0
        self._since = now
        self._last = 0.0

    def count(self) -> None:
        self.attempts += 1

    def take(self, now: float) -> float:
        """The demand to report now; starts a new measurement."""
        rate = self.attempts / max(now - self._since, 1e-3)
        self.attempts, self._since = 0, now
        demand, self._last = max(rate, self._last), rate
        return demand


class SharedBucket:
    """A token bucket that spends this node's share of a cluster-wide rate (the interface of
    mics.limits.TokenBucket: `rate` is the configured, cluster-wide rate)."""

    __slots__ = ("_clock", "_share", "_stamp", "_tokens", "_window", "demand", "rate", "recent")

    def __init__(self, rate: float, clock: Clock) -> None:
        self._clock = clock
        self.rate = float(rate)
        self._share = self.rate  # alone (one node, or no reports yet): the whole rate
        self._tokens = self.rate
        self._stamp = self._window = clock()
        self.recent = 0  # attempts in the current one-second window (for the limit log)
        self.demand = Demand(self._stamp)

    @property
    def share(self) -> float:
        return self._share

    def _refill(self) -> float:
        now = self._clock()
        burst = max(self._share, 1.0)  # one second of the share, and never less than one send
        self._tokens = min(self._tokens + (now - self._stamp) * self._share, burst)
        self._stamp = now
        return self._tokens

    def try_take(self, n: float = 1.0) -> bool:
        self.demand.count()
        tokens = self._refill()
        if self._stamp - self._window >= 1.0:
            self._window, self.recent = self._stamp, 0
        self.recent += 1
        if tokens + 1e-9 >= n:  # clock deltas are floats: 0.3 s at 10/s must give 3 tokens
            self._tokens = max(tokens - n, 0.0)
            return True
        return False

    def set_share(self, share: float) -> None:
        """From now on refill at `share` per second (tokens held so far are kept, up to the new burst)."""
        self._refill()  # what accrued so far, at the old share
        self._share = share
        self._tokens = min(self._tokens, max(share, 1.0))

    def configure(self, rate: float) -> None:
        """The tenant's rate changed: a node alone takes all of it; a share is capped until the next report."""
        alone = self._share >= self.rate
        self.rate = float(rate)
        self.set_share(self.rate if alone else min(self._share, self.rate))


class SharedKeyedBuckets:
    """One shared bucket per key (a user): the interface of a keyed token bucket (`try_take(key)`,
    `recent(key)`, `configure(rate)`, `sweep()`). Keys idle for a second are forgotten."""

    __slots__ = ("_buckets", "_clock", "_last", "_shares", "rate")

    def __init__(self, rate: float, clock: Clock) -> None:
        self._clock = clock
        self.rate = float(rate)
        self._buckets: dict[object, SharedBucket] = {}
        self._last: dict[object, float] = {}  # key -> its last attempt
        self._shares: dict[object, float] = {}  # keys other nodes also report: this node's share

    def __len__(self) -> int:
        return len(self._buckets)

    def try_take(self, key: object) -> bool:
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = SharedBucket(self.rate, self._clock)
            if key in self._shares:
                bucket.set_share(self._shares[key])
        self._last[key] = self._clock()
        return bucket.try_take()

    def recent(self, key: object) -> int:
        """Attempts by `key` since the last report (for the limit log)."""
        bucket = self._buckets.get(key)
        return 0 if bucket is None else bucket.recent

    def configure(self, rate: float) -> None:
        self.rate = float(rate)
        for bucket in self._buckets.values():
            bucket.configure(rate)

    def sweep(self) -> None:
        cutoff = self._clock() - 1.0
        for key in [k for k, last in self._last.items() if last <= cutoff]:
            del self._last[key]
            self._buckets.pop(key, None)

    def heavy(self, now: float) -> dict[str, float]:
        """Demand of the keys sending at least HEAVY_FRACTION of the rate here (for the report)."""
        threshold = self.rate * HEAVY_FRACTION
        out = {}
        for key, bucket in self._buckets.items():
            demand = bucket.demand.take(now)
            if demand >= threshold and isinstance(key, str):
                out[key] = demand
        return out

    def apply(self, mine: Mapping[str, float], others: Mapping[str, list[float]]) -> None:
        """Shares for keys that other nodes report too; every other key has the whole rate here."""
        shares: dict[object, float] = {
            key: allocate(self.rate, [mine.get(key, 0.0), *theirs])[0] for key, theirs in others.items()
        }
        for key, bucket in self._buckets.items():
            bucket.set_share(shares.get(key, self.rate))
        self._shares = shares


class Quotas:
    """One tenant's limits on this node, shared with the other nodes through their reports."""

    def __init__(self, max_message_qps: float, max_user_message_qps: float | None, clock: Clock) -> None:
        self._clock = clock
        self.bucket = SharedBucket(max_message_qps, clock)
        self.user_buckets = SharedKeyedBuckets(max_user_message_qps, clock) if max_user_message_qps else None
        self.elsewhere = 0  # user connections on the other nodes, as of their last reports
        self._reported: tuple[float, dict[str, float]] = (0.0, {})  # this node's last demand, heavy users

    def configure(self, max_message_qps: float, max_user_message_qps: float | None = None) -> None:
        self.bucket.configure(max_message_qps)
        if max_user_message_qps and self.user_buckets is not None:
            self.user_buckets.configure(max_user_message_qps)

    def report(self, connections: int) -> list[Any]:
        """What this node tells the others about the tenant: [connections, demand, {user: demand}]."""
        now = self._clock()
        heavy = self.user_buckets.heavy(now) if self.user_buckets is not None else {}
        self._reported = (self.bucket.demand.take(now), heavy)
        return [connections, self._reported[0], heavy]

    def apply(self, others: Iterable[Sequence[Any]]) -> None:
        """The other nodes' fresh reports for this tenant (after this node's own `report`)."""
        demand, heavy = self._reported
        others = list(others)
        self.elsewhere = sum(int(o[0]) for o in others)
        self.bucket.set_share(allocate(self.bucket.rate, [demand, *(float(o[1]) for o in others)])[0])
        if self.user_buckets is not None:
            theirs: dict[str, list[float]] = {}
            for o in others:
                for user, d in (o[2] or {}).items():
                    theirs.setdefault(user, []).append(float(d))
            self.user_buckets.apply(heavy, theirs)

    def sweep(self) -> None:
        """Forget per-user buckets idle for a second (the node's tick)."""
        if self.user_buckets is not None:
            self.user_buckets.sweep()

    def alone(self) -> None:
        """No reports (Redis unreachable for STALE_S): per-node limits, as on one node."""
        self.apply([])
