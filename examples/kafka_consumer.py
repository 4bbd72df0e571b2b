"""Read a tenant's MICS events from Kafka, verify each signature, print the events.

    python examples/kafka_consumer.py --bootstrap HOST:9092 --tenant acme --secret "$TENANT_SECRET"

Uses confluent-kafka and the `mics` package (for the generated protos and `mics.events.encode`);
a consumer in another language needs only protos/mics/v1/{event,message}.proto and an HMAC-SHA256.
A record whose `x-mics-signature` does not match is reported and skipped, never trusted.
`verified_events()` is the reusable part (examples/push_consumer.py builds on it).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from typing import Any

import txaio

txaio.use_twisted()

from confluent_kafka import Consumer, KafkaException  # noqa: E402

from mics.events import encode  # noqa: E402
from mics.hooks.codec import dumps  # noqa: E402


def add_kafka_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    parser.add_argument("--tenant", required=True, help="tenant id: reads topic im-mics-<tenant>-event")
    parser.add_argument("--secret", required=True, help="the tenant secret (verifies x-mics-signature)")
    parser.add_argument("--group", default="mics-example", help="consumer group (default: %(default)s)")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest event")


def verified_events(args: argparse.Namespace) -> Iterator[dict[str, Any]]:
    """Every event of the tenant's topic whose signature checks out, decoded (runs until closed)."""
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group,
            "auto.offset.reset": "earliest" if args.from_beginning else "latest",
            "enable.auto.commit": True,
            "session.timeout.ms": 6000,
        }
    )
    consumer.subscribe([encode.topic(args.tenant)])
    try:
        while True:
            record = consumer.poll(1.0)
            if record is None:
                continue
            if record.error():
                print(f"kafka: {record.error()}", file=sys.stderr)
                continue
            headers = dict(record.headers() or [])
            if not encode.verify(args.secret, record.value(), headers.get(encode.HEADER_SIGNATURE)):
                print(f"bad signature, skipped: partition {record.partition()} offset {record.offset()}",
                      file=sys.stderr)  # fmt: skip
                continue
            yield encode.decode(record.value())
    finally:
        consumer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_kafka_arguments(parser)
    parser.add_argument("--count", type=int, default=0, help="exit after this many verified events (0: run on)")
    args = parser.parse_args(argv)
    printed = 0
    try:
        for event in verified_events(args):
            # At-least-once: a retried or re-pushed event may arrive twice; dedupe on msg_id (messages)
            # or on (event_type, user_id, session_id) for connection events.
            print(json.dumps(json.loads(dumps(event)), ensure_ascii=False), flush=True)
            printed += 1
            if printed == args.count:
                return 0
    except KeyboardInterrupt:
        return 0
    except KafkaException as e:
        print(f"kafka: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
