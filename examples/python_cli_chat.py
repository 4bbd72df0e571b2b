"""A terminal chat on the MICS Python SDK (Twisted flavour).

Start a node with the embedded demo tenant (`.venv/bin/mics node`), then in two terminals:

    .venv/bin/python examples/python_cli_chat.py --user alice
    .venv/bin/python examples/python_cli_chat.py --user bob

Type `@bob hello` (1:1), `#team hi` (group: alice, bob, carol; `#lobby` is everyone),
`/who bob carol` (presence), `/sync`, `/quit`. Demo tokens are `demo-<user>`.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from twisted.internet import stdio, task
from twisted.internet.defer import Deferred, ensureDeferred
from twisted.protocols.basic import LineReceiver

from mics_client import Message, MicsError, SyncGap
from mics_client.twisted import MicsClient


def show(message: Message) -> None:
    body = message.body.get("text", message.body) if isinstance(message.body, dict) else message.body
    where = f"#{message.group_id}" if message.group_id else f"@{message.to_user_id}"
    if message.type == "receipt":
        print(f"  ({message.from_user_id} {body.get('kind') if isinstance(body, dict) else 'read'} your message)")
    elif message.type == "signal":
        print(f"  [signal from {message.from_user_id}] {body}")
    else:
        old = " (missed while away)" if message.replayed else ""
        print(f"{message.from_user_id} -> {where}: {body}{old}")


class Prompt(LineReceiver):
    delimiter = b"\n"

    def __init__(self, client: MicsClient, done: Deferred[None]) -> None:
        self.client = client
        self.done = done

    def lineReceived(self, line: bytes) -> None:
        ensureDeferred(self.handle(line.decode("utf-8").strip()))

    async def handle(self, line: str) -> None:
        client = self.client
        try:
            if line.startswith("@") and " " in line:
                to, text = line[1:].split(" ", 1)
                ack = await client.send(to, {"text": text})
                print(f"  sent ({ack.delivered})")
            elif line.startswith("#") and " " in line:
                group, text = line[1:].split(" ", 1)
                ack = await client.send_group(group, {"text": text})
                print(f"  sent to {ack.recipients} members")
            elif line.startswith("/who"):
                for user_id, p in (await client.presence(line.split()[1:])).items():
                    print(f"  {user_id}: {'online ' + ', '.join(p.devices) if p.online else 'offline'}")
            elif line == "/sync":
                result = await client.sync()
                print(f"  synced: {len(result.messages)} new, last_seq {result.last_seq}")
            elif line == "/quit":
                await client.close()
            elif line:
                print("  @user text | #group text | /who user... | /sync | /quit")
        except MicsError as e:
            print(f"  error {e.code} {e.uri}: {e.message}")

    def connectionLost(self, reason: Any = None) -> None:  # stdin closed
        ensureDeferred(self.client.close())


async def main(reactor: Any, args: argparse.Namespace) -> None:
    done: Deferred[None] = Deferred()
    client = MicsClient(args.url, args.tenant, args.token or f"demo-{args.user}", args.device, args.serializer)
    client.on_message(show)
    client.on_gap(lambda gap: None if gap.initial else print(f"  some messages were lost ({gap_text(gap)})"))
    client.on_close(lambda reason, message: (print(f"closed: {reason} {message or ''}"), done.callback(None)))
    client.on_connect(lambda w: print(f"connected as {w.user_id}/{w.device_id} on {w.node_id}"))
    try:
        await client.connect()
    except MicsError as e:
        print(f"cannot connect: {e.uri} ({e.code}): {e.message}", file=sys.stderr)
        raise SystemExit(1) from None
    await client.subscribe_groups()
    stdio.StandardIO(Prompt(client, done))
    await done


def gap_text(gap: SyncGap) -> str:
    return f"since seq {gap.since_seq}, now {gap.last_seq}"


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--user", required=True)
    parser.add_argument("--token", help="defaults to demo-<user>")
    parser.add_argument("--device", default="cli")
    parser.add_argument("--tenant", default="demo")
    parser.add_argument("--url", default="ws://127.0.0.1:8080/ws")
    parser.add_argument("--serializer", default="json", choices=["json", "msgpack", "cbor"])
    task.react(lambda reactor: ensureDeferred(main(reactor, parser.parse_args())))
