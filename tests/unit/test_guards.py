"""Login throttling per client address (pure, clock-driven) and the rate-limited log lines."""

from __future__ import annotations

from typing import Any

import pytest
import txaio

txaio.use_twisted()

from mics.errors import JoinDenied  # noqa: E402
from mics.logs import RateLimitedLog  # noqa: E402
from mics.router import guards  # noqa: E402


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(
    ("peer", "key"),
    [
        ("tcp4:203.0.113.7:51234", "203.0.113.7"),
        ("tcp6:2001:db8:1:2:3:4:5:6:443", "2001:db8:1:2::/64"),
        ("tcp6:::1:9000", "::/64"),
        ("unix:/run/mics.sock", "unix:/run/mics.sock"),
        (None, "-"),
    ],
)
def test_an_address_is_the_ipv4_host_or_the_ipv6_slash_64(peer, key):
    assert guards.address_of(peer) == key


def test_an_address_is_refused_after_max_failures_and_again_welcome_after_the_block():
    clock = Clock()
    throttle = guards.LoginThrottle(clock, max_failures=3, window_s=60, block_s=30)
    for _ in range(2):
        throttle.failed("198.51.100.1")
    assert throttle.refuse("198.51.100.1") is None
    throttle.failed("198.51.100.1")

    refusal = throttle.refuse("198.51.100.1")
    assert isinstance(refusal, JoinDenied) and refusal.error == "wamp.error.not_authorized"
    assert "try again in 30 s" in refusal.args[0]
    assert throttle.refuse("198.51.100.2") is None  # another address is not affected
    clock.now += 30
    assert throttle.refuse("198.51.100.1") is None


def test_failures_spread_over_more_than_the_window_never_block():
    clock = Clock()
    throttle = guards.LoginThrottle(clock, max_failures=3, window_s=60, block_s=30)
    for _ in range(10):
        throttle.failed("198.51.100.3")
        clock.now += 31  # two failures per window at most
    assert throttle.refuse("198.51.100.3") is None


def test_the_table_of_addresses_stays_bounded_under_many_addresses():
    clock = Clock()
    throttle = guards.LoginThrottle(clock, max_failures=2, max_addresses=100)
    for n in range(1000):
        throttle.failed(f"10.0.{n // 256}.{n % 256}")
    assert len(throttle._entries) <= 100
    throttle.failed("10.9.9.9")
    throttle.failed("10.9.9.9")
    assert throttle.refuse("10.9.9.9") is not None  # the newest addresses are kept


class Lines:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warn(self, text: str, **fields: Any) -> None:
        self.lines.append((text, fields))

    info = error = warn


def test_one_line_per_key_and_interval_and_the_next_says_how_many_were_suppressed():
    clock, out = Clock(), Lines()
    limited = RateLimitedLog(out, interval_s=60, clock=clock)
    for _ in range(5):
        limited.warn(("acme", "timeout"), "hook down: tenant_id={tenant_id}", tenant_id="acme")
    limited.warn(("beta", "timeout"), "hook down: tenant_id={tenant_id}", tenant_id="beta")
    clock.now += 61
    limited.warn(("acme", "timeout"), "hook down: tenant_id={tenant_id}", tenant_id="acme")

    assert [f["tenant_id"] for _, f in out.lines] == ["acme", "beta", "acme"]
    assert out.lines[2] == ("hook down: tenant_id={tenant_id} suppressed={suppressed}",
                            {"tenant_id": "acme", "suppressed": 4})  # fmt: skip


def test_the_rate_limited_log_forgets_its_oldest_keys_first():
    clock, out = Clock(), Lines()
    limited = RateLimitedLog(out, interval_s=60, clock=clock, max_keys=10)
    for n in range(50):
        limited.warn(n, "line {n}", n=n)
    assert len(limited._last) == 10 and limited.warn(49, "again") is False and limited.warn(0, "again") is True
