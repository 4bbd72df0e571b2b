"""Token bucket and circuit breaker, driven by a fake clock."""

from mics.limits import MIN_CAPPED_RATE, CircuitBreaker, FairShare, KeyedBuckets, TokenBucket, fair_levels


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_bucket_allows_one_seconds_burst_then_refuses():
    clock = Clock()
    bucket = TokenBucket(5, clock)
    assert [bucket.try_take() for _ in range(6)] == [True] * 5 + [False]


def test_bucket_refills_at_its_rate_up_to_the_burst():
    clock = Clock()
    bucket = TokenBucket(10, clock)
    for _ in range(10):
        bucket.try_take()
    clock.now += 0.3
    assert sum(bucket.try_take() for _ in range(10)) == 3
    clock.now += 100
    assert sum(bucket.try_take() for _ in range(20)) == 10, "never more than one second's budget"


def test_breaker_opens_after_threshold_consecutive_failures():
    clock = Clock()
    breaker = CircuitBreaker(3, 5.0, clock)
    assert not breaker.record_failure() and not breaker.record_failure()
    assert breaker.record_failure() is True
    assert breaker.state == "open" and not breaker.allow()


def test_a_success_resets_the_failure_count():
    breaker = CircuitBreaker(2, 5.0, Clock())
    breaker.record_failure()
    breaker.record_success()
    assert not breaker.record_failure() and breaker.state == "closed"


def test_half_open_lets_exactly_one_trial_through():
    clock = Clock()
    breaker = CircuitBreaker(1, 5.0, clock)
    breaker.record_failure()
    clock.now += 5.0
    assert breaker.state == "half_open"
    assert breaker.allow() is True and breaker.allow() is False


def test_failed_trial_opens_again_and_successful_trial_closes():
    clock = Clock()
    breaker = CircuitBreaker(1, 5.0, clock)
    breaker.record_failure()
    clock.now += 5.0
    breaker.allow()
    breaker.record_failure()
    assert breaker.state == "open"
    clock.now += 5.0
    breaker.allow()
    breaker.record_success()
    assert breaker.state == "closed" and breaker.allow()


def test_keyed_buckets_give_each_key_its_own_budget_and_forget_idle_keys():
    clock = Clock()
    buckets = KeyedBuckets(3, clock)
    assert [buckets.try_take("alice") for _ in range(4)] == [True, True, True, False]
    assert buckets.try_take("bob"), "one key's flood leaves the others alone"
    assert buckets.recent("alice") == 4 and buckets.recent("carol") == 0
    clock.now += 0.5
    buckets.sweep()
    assert len(buckets) == 2, "a key refused half a second ago is not full yet"
    clock.now += 0.6
    assert buckets.try_take("alice") and buckets.recent("alice") == 1, "a new second, a new count"
    clock.now += 1.0
    buckets.sweep()
    assert len(buckets) == 0
    buckets.configure(1)
    assert [buckets.try_take("alice") for _ in range(2)] == [True, False]


def test_the_tenant_bucket_counts_the_takes_of_the_current_second():
    clock = Clock()
    bucket = TokenBucket(2, clock)
    for _ in range(5):
        bucket.try_take()
    assert bucket.recent == 5
    clock.now += 1.0
    bucket.try_take()
    assert bucket.recent == 1


# -- fairness when the router worker is saturated -----------------------------------------------------
def drive(fair, clock, rates: dict[str, int], ticks: int, busy: float) -> dict[str, int]:
    """Offer `rates` (attempts per second) for `ticks` half-second ticks; returns what was admitted."""
    admitted = dict.fromkeys(rates, 0)
    offered = dict.fromkeys(rates, 0.0)
    for _ in range(ticks):
        for _step in range(50):  # spread each tenant's attempts over the half second
            clock.now += 0.01
            for tenant_id, rate in rates.items():
                offered[tenant_id] += rate / 100
                while offered[tenant_id] >= 1:
                    offered[tenant_id] -= 1
                    admitted[tenant_id] += fair.share(tenant_id).admit()
        fair.tick(busy)
    return admitted


def test_max_min_fair_levels_give_small_demands_all_they_ask_and_split_the_rest():
    assert fair_levels({"quiet": 100, "noisy": 5000}, 2000) == {"quiet": 100, "noisy": 1900}
    assert fair_levels({"a": 1500, "b": 1500, "c": 100}, 2100) == {"c": 100, "a": 1000, "b": 1000}
    assert fair_levels({"a": 10, "b": 20}, 1000) == {"a": 10, "b": 20}


def test_a_saturated_node_caps_only_the_tenant_over_its_share_and_shrinks_it_while_saturated():
    clock = Clock()
    fair = FairShare(clock)
    drive(fair, clock, {"quiet": 200, "noisy": 3200}, 1, busy=0.97)
    assert fair.capped() == {}, "one saturated tick is no trend"
    drive(fair, clock, {"quiet": 200, "noisy": 3200}, 1, busy=0.97)
    first = fair.capped()
    assert set(first) == {"noisy"} and first["noisy"] < 3200
    admitted = drive(fair, clock, {"quiet": 200, "noisy": 3200}, 4, busy=0.97)
    assert fair.capped()["noisy"] < first["noisy"], "still saturated: the cap keeps shrinking"
    assert admitted["quiet"] == 200 * 2, "the quiet tenant is never refused"
    assert admitted["noisy"] < 3200 * 2


def test_caps_grow_back_and_go_away_once_the_node_has_room():
    clock = Clock()
    fair = FairShare(clock)
    drive(fair, clock, {"quiet": 200, "noisy": 3200}, 3, busy=0.97)
    assert fair.capped()
    drive(fair, clock, {"quiet": 200, "noisy": 3200}, 2, busy=0.8)
    held = fair.capped()["noisy"]
    assert held == fair.capped()["noisy"], "between the thresholds a cap holds"
    drive(fair, clock, {"quiet": 200, "noisy": 300}, 20, busy=0.3)
    assert fair.capped() == {}


def test_one_tenant_alone_on_a_saturated_node_is_capped_to_what_the_node_does_at_a_comfortable_load():
    clock = Clock()
    fair = FairShare(clock)
    drive(fair, clock, {"only": 3000}, 2, busy=0.99)
    assert fair.capped()["only"] < 3000


def test_tenants_sending_little_are_never_capped_even_on_a_saturated_node():
    clock = Clock()
    fair = FairShare(clock)
    admitted = drive(fair, clock, {"a": 40, "b": 30}, 4, busy=0.99)
    assert fair.capped() == {} and admitted["a"] == 80 and admitted["b"] >= 59  # (float steps)


def test_timer_lag_counts_as_load_only_while_the_worker_itself_is_busy() -> None:
    """A light worker on a machine starved by other processes runs its timers late too; that is not
    a saturation its tenants' sends cause, so none of them is refused for it."""
    from mics.node import LAG_CPU_FLOOR, worker_load

    assert worker_load(0.05, 0.4) == 0.05  # 50 msg/s on a starved machine: not saturated
    assert abs(worker_load(LAG_CPU_FLOOR, 0.12) - 1.2) < 1e-9  # busy and behind: saturated
    assert worker_load(0.9, 1.0) == 1.5 and worker_load(0.95, 0.0) == 0.95


def test_a_capped_tenant_gets_its_cap_while_the_node_stays_saturated_not_a_fresh_burst_every_tick():
    clock = Clock()
    fair = FairShare(clock)
    drive(fair, clock, {"noisy": 1000}, 12, busy=0.99)
    assert fair.capped() == {"noisy": MIN_CAPPED_RATE}, "shrunk to the floor while saturated"
    admitted = drive(fair, clock, {"noisy": 1000}, 8, busy=0.99)["noisy"]
    assert admitted <= MIN_CAPPED_RATE * 4 * 1.1, f"{admitted} sends in 4 s under a cap of {MIN_CAPPED_RATE}/s"
