"""The Kafka event sink (protocol.md section 6), on confluent-kafka (librdkafka).

pykafka, which the original card names, has been unmaintained since 2018 and cannot produce to
current brokers (they reject its old message format), so MICS uses confluent-kafka.

librdkafka works in its own threads; the reactor never waits for it:
- `produce()` only appends to librdkafka's local queue. A full queue (BufferError) or a local error
  sends the record down the retry path at once instead of waiting.
- Delivery reports are served by `poll(0)` from a LoopingCall, so every callback runs on the reactor.
- A failed delivery is retried RETRIES times with exponential backoff, then written to the tenant's
  dead-letter spool (mics.events.dlq), from which admins re-push it.
- `flush()` runs only at node shutdown, bounded; whatever is still undelivered then is spooled.

One producer serves every tenant of the node (librdkafka batches per topic-partition itself).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, NewTopic
from twisted.internet import reactor as default_reactor
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.task import LoopingCall
from txaio import make_logger

from mics import errors, metrics
from mics.config import NodeSettings, TenantConfig
from mics.errors import MicsError
from mics.events import UNENCODABLE, Drops, Event, EventSink, dlq, encode

RETRIES = 3
POLL_S = 0.02
SHUTDOWN_FLUSH_S = 5.0
PARKED_MAX = 100_000  # events waiting for their topic to be created


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    return int(value) if value.isdigit() else default


# Tuning knobs (environment, read at node start): how long librdkafka keeps trying one attempt,
# and the first retry delay (doubled each retry).
MESSAGE_TIMEOUT_MS = _env_int("MICS_KAFKA_MESSAGE_TIMEOUT_MS", 10_000)
RETRY_BACKOFF_MS = _env_int("MICS_KAFKA_RETRY_BACKOFF_MS", 500)

log = make_logger()


@dataclass(slots=True)
class Record:
    """One Kafka record on its way: the encoded MqEvent and how many attempts have failed."""

    event_type: str
    key: str
    value: bytes
    attempts: int = 0


class _RdKafkaLog:
    """librdkafka's log lines, served by poll() on the reactor, into the node's log."""

    def log(self, level: int, fmt: str, *args: Any) -> None:
        text = fmt % args if args else fmt
        if level >= 50:  # logging.CRITICAL; connection failures (ERROR) are reported once by error_cb
            log.error("kafka: {text}", text=text)
        else:
            log.debug("kafka: {text}", text=text)


class KafkaProducerLoop:
    """The node's producer for one bootstrap: polled from the reactor, tracks records in flight."""

    def __init__(self, bootstrap: str, client_id: str, reactor: Any = default_reactor) -> None:
        self.bootstrap = bootstrap
        self.reactor = reactor
        self.shutting_down = False
        self.inflight: dict[int, tuple[KafkaSink, Record]] = {}
        self.sinks: set[KafkaSink] = set()
        self._brokers_down_logged = False
        self.producer = Producer(
            {
                "bootstrap.servers": bootstrap,
                "client.id": client_id,
                "acks": "all",
                "linger.ms": 5,
                "message.timeout.ms": MESSAGE_TIMEOUT_MS,
                "queue.buffering.max.messages": 100_000,
                "reconnect.backoff.max.ms": 1000,
                "logger": _RdKafkaLog(),
                "error_cb": self._on_error,
            }
        )
        self.admin = AdminClient({"bootstrap.servers": bootstrap, "client.id": client_id, "log_level": 0})
        self._poll = LoopingCall(self.producer.poll, 0)
        self._poll.clock = reactor
        self._poll.start(POLL_S, now=False).addErrback(lambda f: log.failure("kafka poll failed", failure=f))

    def _on_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._ALL_BROKERS_DOWN:
            if not self._brokers_down_logged:
                log.warn("kafka: all brokers down ({bootstrap}); events retry, then go to the dead-letter spool",
                         bootstrap=self.bootstrap)  # fmt: skip
                self._brokers_down_logged = True
        elif err.code() in (KafkaError._TRANSPORT, KafkaError._RESOLVE):
            log.debug("kafka: {error}", error=err.str())  # every reconnect attempt: the outage is logged once
        else:
            log.warn("kafka client error: {error}", error=err.str())

    def produce(self, sink: KafkaSink, record: Record, headers: list[tuple[str, bytes]]) -> None:
        """Queue locally; raises BufferError (queue full) or KafkaException - never waits."""
        token = id(record)

        def on_delivery(err: KafkaError | None, _msg: Any) -> None:
            self.inflight.pop(token, None)
            if err is None and self._brokers_down_logged:
                self._brokers_down_logged = False
                log.info("kafka: delivering again ({bootstrap})", bootstrap=self.bootstrap)
            sink.delivered(record, err)

        self.producer.produce(
            sink.topic, value=record.value, key=record.key.encode("utf-8"), headers=headers, on_delivery=on_delivery
        )
        self.inflight[token] = (sink, record)

    def create_topic(self, topic: str, partitions: int) -> Deferred[None]:
        """Create `topic` unless it exists; the Deferred fires on the reactor."""
        d: Deferred[None] = Deferred()
        future = self.admin.create_topics(
            [NewTopic(topic, num_partitions=partitions, replication_factor=-1)],
            request_timeout=MESSAGE_TIMEOUT_MS / 1000,
        )[topic]

        def done(f: Any) -> None:
            error = f.exception()
            if error is not None:
                kafka_error = error.args[0] if error.args and isinstance(error.args[0], KafkaError) else None
                if kafka_error is None or kafka_error.code() != KafkaError.TOPIC_ALREADY_EXISTS:
                    self.reactor.callFromThread(d.errback, error)
                    return
            self.reactor.callFromThread(d.callback, None)

        future.add_done_callback(done)
        return d

    def shutdown(self, timeout: float = SHUTDOWN_FLUSH_S) -> None:
        """Node stop: flush (bounded), then spool whatever is still undelivered."""
        self.shutting_down = True
        for sink in list(self.sinks):
            sink.abandon_pending()
        remaining = self.producer.flush(timeout)
        for sink, record in list(self.inflight.values()):
            sink.dead(record, "undelivered at node shutdown")
        self.inflight.clear()
        if remaining:
            log.warn("kafka: {n} event(s) undelivered at shutdown went to the dead-letter spool", n=remaining)
        if self._poll.running:
            self._poll.stop()


class KafkaSink(EventSink):
    """A tenant's events to `im-mics-{tenant_id}-event`: keyed, signed, retried, dead-lettered."""

    name = "kafka"

    def __init__(self, tenant_id: str, config: TenantConfig, loop: KafkaProducerLoop, spool: dlq.DeadLetterSpool,
                 partitions: int) -> None:  # fmt: skip
        self.tenant_id = tenant_id
        self.topic = encode.topic(tenant_id)
        self.spool = spool
        self._secret = config.secret
        self._loop = loop
        self._partitions = partitions
        self._topic_ready = False
        self._creating = False
        self._parked: list[Record] = []
        self._retries: dict[int, tuple[IDelayedCall, Record]] = {}
        self._dead_logged = 0
        self._ok = metrics.EVENTS.labels(tenant_id, "kafka", "ok")
        self._retry = metrics.EVENTS.labels(tenant_id, "kafka", "retry")
        self._dead = metrics.EVENTS.labels(tenant_id, "kafka", "dead")
        self._repushed = metrics.EVENTS.labels(tenant_id, "kafka", "repushed")
        self._drops = Drops(tenant_id, self.name)
        loop.sinks.add(self)

    def reconfigure(self, config: TenantConfig) -> None:
        """A new tenant config: sign with its (possibly rotated) secret from now on."""
        self._secret = config.secret

    def deliver(self, events: list[Event]) -> None:
        for event in events:
            try:
                value = encode.encode(event)
                event.key.encode("utf-8")  # the record key (produce() and the spool need it as UTF-8)
            except Exception as e:  # protobuf refuses this event (lone surrogate, nesting over 100): it alone
                self._drops.drop(UNENCODABLE, event, e)  # cannot be dead-lettered either, as it has no bytes
                continue
            self.send(Record(event.event_type, event.key, value))

    def repush(self, letters: Iterable[dlq.DeadLetter]) -> int:
        """Dead letters back to Kafka as fresh records (retried and dead-lettered again if need be).
        Re-push usually follows an outage, so the topic is made sure of first (the broker may have lost it)."""
        self._topic_ready = False
        count = 0
        for letter in letters:
            self.send(Record(letter.event_type, letter.key, letter.value))
            count += 1
        self._repushed.inc(count)
        return count

    def send(self, record: Record) -> None:
        if self._loop.shutting_down:
            self.dead(record, "node shutting down")
            return
        if not self._topic_ready:
            self._park(record)
            return
        headers = encode.headers(self.tenant_id, record.event_type, self._secret, record.value)
        try:
            self._loop.produce(self, record, headers)
        except BufferError:
            self._failed(record, "local producer queue full")
        except KafkaException as e:
            self._failed(record, str(e))

    def _park(self, record: Record) -> None:
        if len(self._parked) >= PARKED_MAX:
            self._failed(record, "topic not created yet and too many events waiting")
            return
        self._parked.append(record)
        if not self._creating:
            self._creating = True
            d = self._loop.create_topic(self.topic, self._partitions)
            d.addCallbacks(self._topic_created, self._topic_failed)

    def _topic_created(self, _: None) -> None:
        self._creating = False
        self._topic_ready = True
        parked, self._parked = self._parked, []
        for record in parked:
            self.send(record)

    def _topic_failed(self, failure: Any) -> None:
        self._creating = False
        log.warn("kafka: cannot create topic {topic}: {error}", topic=self.topic, error=failure.getErrorMessage())
        parked, self._parked = self._parked, []
        for record in parked:
            self._failed(record, f"topic creation failed: {failure.getErrorMessage()}")

    def delivered(self, record: Record, err: KafkaError | None) -> None:
        """librdkafka's delivery report (on the reactor, from poll)."""
        if err is None:
            self._ok.inc()
            return
        if err.code() in (KafkaError.UNKNOWN_TOPIC_OR_PART, KafkaError._UNKNOWN_TOPIC):
            self._topic_ready = False  # e.g. the broker lost it: create it again on the next try
        self._failed(record, err.str())

    def _failed(self, record: Record, error: str) -> None:
        record.attempts += 1
        if record.attempts > RETRIES or self._loop.shutting_down:
            self.dead(record, error)
            return
        self._retry.inc()
        delay = RETRY_BACKOFF_MS / 1000 * 2 ** (record.attempts - 1)
        token = id(record)
        call = self._loop.reactor.callLater(delay, self._retry_now, token)
        self._retries[token] = (call, record)

    def _retry_now(self, token: int) -> None:
        _, record = self._retries.pop(token)
        self.send(record)

    def dead(self, record: Record, error: str) -> None:
        """Out of retries: to the dead-letter spool, counted and logged."""
        self.spool.add(
            failed_at=int(time.time() * 1000),
            event_type=record.event_type,
            key=record.key,
            value=record.value,
            attempts=record.attempts,
            error=error,
        )
        self._dead.inc()
        self._dead_logged += 1
        if self._dead_logged == 1 or self._dead_logged % 100 == 0:
            log.warn(
                "kafka: event dead-lettered after {attempts} attempt(s): tenant_id={tenant_id} error={error} "
                "dead_letters={total}",
                attempts=record.attempts,
                tenant_id=self.tenant_id,
                error=error,
                total=len(self.spool),
            )

    def abandon_pending(self) -> None:
        """Shutdown: events waiting for a retry or for their topic go to the spool now."""
        for call, record in self._retries.values():
            if call.active():
                call.cancel()
            self.dead(record, "node shutdown before retry")
        self._retries.clear()
        parked, self._parked = self._parked, []
        for record in parked:
            self.dead(record, "node shutdown before topic creation")

    def close(self) -> None:
        """Nothing to release: records in flight or waiting for a retry still finish their course,
        and node shutdown (`shutdown()`) spools whatever is left."""


_LOOPS: dict[str, KafkaProducerLoop] = {}


def make_sink(tenant_id: str, settings: NodeSettings, config: TenantConfig) -> KafkaSink | None:
    """The tenant's Kafka sink on the node's shared producer; None (logged) without a bootstrap."""
    bootstrap = settings.kafka_bootstrap
    if not bootstrap:
        log.warn("tenant {tenant_id} lists the kafka sink but the node has no MICS_KAFKA_BOOTSTRAP: no Kafka events",
                 tenant_id=tenant_id)  # fmt: skip
        return None
    loop = _LOOPS.get(bootstrap)
    if loop is None:
        loop = _LOOPS[bootstrap] = KafkaProducerLoop(bootstrap, f"mics-{settings.node_id}")
    return KafkaSink(tenant_id, config, loop, dlq.spool(tenant_id, settings.data_dir), settings.kafka_partitions)


def repush(tenant_id: str, sinks: Iterable[EventSink], data_dir: str, limit: Any = None) -> dict[str, int]:
    """mics.admin.dlq.repush: the oldest `limit` dead letters (default all) back to Kafka."""
    count = dlq.parse_limit(limit)
    sink = next((s for s in sinks if isinstance(s, KafkaSink)), None)
    if sink is None:
        raise MicsError(errors.INVALID_CONFIG, f"tenant {tenant_id!r} has no kafka event sink", tenant_id=tenant_id)
    return {"repushed": sink.repush(dlq.spool(tenant_id, data_dir).take(count))}


def brokers_reachable() -> dict[str, bool]:
    """{bootstrap: reachable} of every producer this node runs (read-only, for /ready): false from
    librdkafka's "all brokers down" until a delivery succeeds again."""
    return {bootstrap: not loop._brokers_down_logged for bootstrap, loop in _LOOPS.items()}


def shutdown() -> None:
    """Node stop: flush every producer (bounded) and spool what is left."""
    for loop in _LOOPS.values():
        loop.shutdown()
    _LOOPS.clear()
