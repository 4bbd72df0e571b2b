"""A small push service: turn a tenant's OFFLINE_PUSH events into APNs / FCM requests (printed).

    python examples/push_consumer.py --bootstrap HOST:9092 --tenant acme --secret "$TENANT_SECRET" \
        --devices devices.json
    python examples/push_consumer.py --events-file var/events/acme.jsonl --devices devices.json

MICS emits OFFLINE_PUSH when a 1:1 message, an edit, or a group message that mentions someone
reaches a user with no online device (protocol.md section 11; at most one per user and conversation
per `push_collapse_s`, after `push_delay_s` if the user is still offline). Which phones a user has
is the tenant's knowledge, not MICS's: here it is a JSON file
`{"bob": [{"platform": "apns", "token": "..."}, {"platform": "fcm", "token": "..."}]}`.
This example prints each request it would send, one JSON line each; docs/events.md says what a
real sender needs (credentials, HTTP/2, token clean-up). It reads Kafka (signatures verified by
examples/kafka_consumer.py) or, on a single node, the JSON-lines file sink.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

OFFLINE_PUSH = "OFFLINE_PUSH"


def notification_text(event: dict[str, Any], preview: bool) -> tuple[str, str]:
    """Title and body of the alert. Bodies are opaque (tenants may encrypt them): shown only with --preview."""
    message = event["event_data"]
    sender = message.get("from_user_id") or "someone"
    where = f" in {message['group_id']}" if message.get("group_id") else ""
    if message.get("type") == "edit":
        title = f"{sender} edited a message{where}"
    elif message.get("group_id"):
        title = f"{sender} mentioned you{where}"
    else:
        title = f"New message from {sender}"
    body = message.get("body")
    text = body.get("text") if isinstance(body, dict) else body
    return title, (str(text) if preview and isinstance(text, str | int | float) else "Open the app to read it")


Devices = dict[str, list[dict[str, str]]]


def requests_for(event: dict[str, Any], devices: Devices, preview: bool) -> list[dict[str, Any]]:
    """The APNs / FCM requests for one OFFLINE_PUSH event (one per registered device of its user)."""
    message = event["event_data"]
    title, body = notification_text(event, preview)
    # one thread per conversation; a newer push of the same conversation replaces the older one
    conversation = "g:" + message["group_id"] if message.get("group_id") else "u:" + message["from_user_id"]
    data = {"msg_id": event["msg_id"], "conversation": conversation, "seq": str(message.get("seq") or "")}
    out = []
    for device in devices.get(event["user_id"], []):
        if device.get("platform") == "apns":
            request = {
                "platform": "apns",
                "path": f"/3/device/{device['token']}",
                "headers": {"apns-push-type": "alert", "apns-collapse-id": conversation[:64]},
                "payload": {"aps": {"alert": {"title": title, "body": body}, "thread-id": conversation,
                                    "sound": "default"}, **data},
            }  # fmt: skip
        elif device.get("platform") == "fcm":
            request = {
                "platform": "fcm",
                "payload": {"message": {"token": device["token"], "notification": {"title": title, "body": body},
                                        "data": data, "android": {"collapse_key": conversation}}},
            }  # fmt: skip
        else:
            continue
        out.append({"user_id": event["user_id"], **request})
    return out


def file_events(path: Path, from_beginning: bool) -> Iterator[dict[str, Any]]:
    """Follow a JSON-lines event file (the `file` sink) like `tail -f`."""
    with open(path, encoding="utf-8") as f:
        if not from_beginning:
            f.seek(0, 2)
        while True:
            line = f.readline()
            if not line:
                time.sleep(0.2)
                continue
            if line.strip():
                yield json.loads(line)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events-file", type=Path, help="read the file sink instead of Kafka")
    parser.add_argument("--bootstrap", help="Kafka bootstrap servers")
    parser.add_argument("--tenant", help="tenant id (Kafka topic im-mics-<tenant>-event)")
    parser.add_argument("--secret", help="the tenant secret (verifies x-mics-signature)")
    parser.add_argument("--group", default="mics-push", help="consumer group (default: %(default)s)")
    parser.add_argument("--from-beginning", action="store_true", help="start at the oldest event")
    parser.add_argument("--devices", type=Path, help="JSON: user_id -> [{platform: apns|fcm, token}]")
    parser.add_argument("--preview", action="store_true", help="put the message text in the notification")
    parser.add_argument("--count", type=int, default=0, help="exit after this many push events (0: run on)")
    args = parser.parse_args(argv)
    devices = json.loads(args.devices.read_text()) if args.devices else {}
    if args.events_file is not None:
        source = file_events(args.events_file, args.from_beginning)
    elif args.bootstrap and args.tenant and args.secret:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from kafka_consumer import verified_events

        source = verified_events(args)
    else:
        parser.error("give --events-file, or --bootstrap, --tenant and --secret")
    handled = 0
    seen: set[str] = set()  # events are at-least-once: a re-pushed one must not ring twice
    try:
        for event in source:
            if event.get("event_type") != OFFLINE_PUSH or f"{event['user_id']}:{event['msg_id']}" in seen:
                continue
            seen.add(f"{event['user_id']}:{event['msg_id']}")
            requests = requests_for(event, devices, args.preview)
            if not requests:
                print(json.dumps({"user_id": event["user_id"], "skipped": "no registered device"}), flush=True)
            for request in requests:
                print(json.dumps(request, ensure_ascii=False), flush=True)
            handled += 1
            if handled == args.count:
                return 0
    except KeyboardInterrupt:
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
