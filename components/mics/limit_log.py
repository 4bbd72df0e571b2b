"""Limit hits: every refusal counted in metrics, and logged at most once per second per (tenant, limit).

A flood hits a limit thousands of times a second; one log line per hit would be a second flood. The
line that is written carries the limit's threshold, the current value that broke it, and how many
hits were left out since the previous line, so an operator sees both the size and the shape.
"""

from __future__ import annotations

from collections.abc import Callable

from txaio import make_logger

from mics import metrics

log = make_logger()

LOG_EVERY_S = 1.0

# the limits (their config field names)
MAX_MESSAGE_QPS = "max_message_qps"
MAX_USER_MESSAGE_QPS = "max_user_message_qps"
MAX_JOINS_PER_IP = "max_joins_per_ip_per_s"
MAX_CONNECTIONS = "max_connections"
MAX_CONNECTIONS_PER_USER = "max_connections_per_user"
MAX_PAYLOAD_BYTES = "max_payload_bytes"
LIMITS = (
    MAX_MESSAGE_QPS, MAX_USER_MESSAGE_QPS, MAX_JOINS_PER_IP, MAX_CONNECTIONS, MAX_CONNECTIONS_PER_USER,
    MAX_PAYLOAD_BYTES,
)  # fmt: skip


class LimitHits:
    """One tenant's limit hits: a metric child per limit, and a rate-limited log line."""

    __slots__ = ("_clock", "_counters", "_last_logged", "_suppressed", "tenant_id")

    def __init__(self, tenant_id: str, clock: Callable[[], float]) -> None:
        self.tenant_id = tenant_id
        self._clock = clock
        self._counters = {name: metrics.LIMIT_HITS.labels(tenant_id, name) for name in LIMITS}
        self._last_logged: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def hit(self, limit: str, threshold: int, current: int, who: str = "") -> None:
        """A request was refused by `limit` (`threshold` is its setting, `current` what broke it)."""
        self._counters[limit].inc()
        now = self._clock()
        last = self._last_logged.get(limit)
        if last is not None and now - last < LOG_EVERY_S:
            self._suppressed[limit] = self._suppressed.get(limit, 0) + 1
            return
        self._last_logged[limit] = now
        suppressed = self._suppressed.pop(limit, 0)
        log.warn(
            "limit hit: tenant_id={tenant_id} limit={limit} threshold={threshold} current={current} who={who}"
            " not_logged_since_last={suppressed}",
            tenant_id=self.tenant_id, limit=limit, threshold=threshold, current=current, who=who,
            suppressed=suppressed,
        )  # fmt: skip
