"""Token bucket and circuit breaker, driven by a fake clock."""

from mics.limits import CircuitBreaker, KeyedBuckets, TokenBucket


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
