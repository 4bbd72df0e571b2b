"""`mics tenants|sessions|stats|dlq`: the admin API (protocol.md section 7) from a shell.

Each command is one call to a running node: join `mics.control` as `admin` with
`MICS_ADMIN_SECRET`, call the procedure, print the result as an aligned table (or, with `--json`,
the procedure's result as JSON). Exit status: 0 on success, 1 on a MICS error (printed as
`error: <uri>: <message>`), 2 on bad usage, no secret, or no node at the URL. The node owns the
state (tenants in Redis, the dead-letter spool), so the command never edits files behind it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from mics import uris
from mics.metrics import HOOK_OUTCOMES

EXIT_OK = 0
EXIT_MICS_ERROR = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input the node never sees (a --set without `=`, an unreadable --config file)."""


@dataclass(frozen=True, slots=True)
class AdminCall:
    """One admin procedure call and how to show its result."""

    procedure: str
    kwargs: Mapping[str, Any]
    render: Callable[[Any], str]


# -- tables ---------------------------------------------------------------------------------------


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Columns padded to their widest cell; numbers right-aligned."""
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [bool(rows) and all(isinstance(r[i], int | float) and not isinstance(r[i], bool) for r in rows)
               for i in range(len(headers))]  # fmt: skip

    def line(values: Sequence[str]) -> str:
        padded = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(padded).rstrip()

    return "\n".join([line(list(headers)), *(line(r) for r in cells)])


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _when(ms: Any) -> str:
    """An epoch-ms timestamp as UTC ISO time (the tables are for people)."""
    if not isinstance(ms, int):
        return _cell(ms)
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms / 1000))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


# -- renderers, one per procedure -----------------------------------------------------------------


def render_tenant_list(result: Any) -> str:
    rows = [[t["tenant_id"], t["enabled"], t["connections"]] for t in result["tenants"]]
    return table(["TENANT", "ENABLED", "CONNECTIONS"], rows)


def render_tenant_get(result: Any) -> str:
    config = result["config"]
    return f"tenant {result['tenant_id']}\n" + table(["FIELD", "VALUE"], [[k, config[k]] for k in sorted(config)])


def render_upsert(result: Any) -> str:
    return f"{'created' if result['created'] else 'updated'} tenant {result['tenant_id']}"


def render_sessions(result: Any) -> str:
    rows = [[s["user_id"], s["device_id"], s["node_id"], s["session_id"], _when(s.get("online_at"))]
            for s in result["sessions"]]  # fmt: skip
    return table(["USER", "DEVICE", "NODE", "SESSION", "ONLINE_AT"], rows)


def render_kick(result: Any) -> str:
    return f"kicked {_count(result['kicked'], 'session')}"


def render_stats(result: Any) -> str:
    tenants: dict[str, Any] = result["tenants"]
    counters = ["connections", "users_online", "events_queued", "events_dropped", "buffer_held_messages",
                "buffer_held_bytes"]  # fmt: skip
    rows = [[tid, s["enabled"], *(s.get(c) for c in counters)] for tid, s in sorted(tenants.items())]
    out = [f"node {result.get('node_id')}", table(["TENANT", "ENABLED", *(c.upper() for c in counters)], rows)]
    hook_rows = [
        [tid, hook, h["breaker"], h["in_flight"], *(h["calls"].get(o, 0) for o in HOOK_OUTCOMES)]
        for tid, s in sorted(tenants.items())
        for hook, h in s.get("hooks", {}).items()
    ]
    if hook_rows:
        out += ["", table(["TENANT", "HOOK", "BREAKER", "IN_FLIGHT", *(o.upper() for o in HOOK_OUTCOMES)], hook_rows)]
    return "\n".join(out)


def render_dlq_list(result: Any) -> str:
    rows = [[d["id"], _when(d["failed_at"]), d["event_type"], d["key"], d["attempts"], d["error"]]
            for d in result["dead_letters"]]  # fmt: skip
    listing = table(["ID", "FAILED_AT", "EVENT_TYPE", "KEY", "ATTEMPTS", "ERROR"], rows)
    return f"{listing}\n{_count(result['total'], 'dead letter')} held, {result['dropped']} dropped"


def render_repush(result: Any) -> str:
    return f"re-pushed {_count(result['repushed'], 'dead letter')}"


# -- building the call from the command line -----------------------------------------------------


def parse_set(pairs: Sequence[str]) -> dict[str, Any]:
    """`field=value` pairs; a value that parses as JSON is taken as such (`30`, `true`,
    `["file"]`), anything else as a string (`http://hooks:8000`)."""
    config: dict[str, Any] = {}
    for pair in pairs:
        name, sep, raw = pair.partition("=")
        if not sep or not name:
            raise UsageError(f"--set expects field=value, got {pair!r}")
        try:
            config[name] = json.loads(raw)
        except ValueError:
            config[name] = raw
    return config


def load_config_file(path: Path) -> dict[str, Any]:
    try:
        loaded = json.loads(path.read_text())
    except OSError as e:
        raise UsageError(f"cannot read {path}: {e.strerror}") from None
    except ValueError as e:
        raise UsageError(f"{path} is not valid JSON: {e}") from None
    if not isinstance(loaded, dict):
        raise UsageError(f"{path} must hold a JSON object of tenant config fields")
    return loaded


def build_call(args: argparse.Namespace) -> AdminCall:
    """The procedure, kwargs and renderer for the parsed command line."""
    group, action = args.command, args.action
    if group == "tenants":
        if action == "list":
            return AdminCall(uris.ADMIN_TENANT_LIST, {}, render_tenant_list)
        if action == "get":
            return AdminCall(uris.ADMIN_TENANT_GET, {"tenant_id": args.tenant_id}, render_tenant_get)
        if action == "disable":
            return AdminCall(uris.ADMIN_TENANT_DISABLE, {"tenant_id": args.tenant_id},
                             lambda _r: f"disabled tenant {args.tenant_id}")  # fmt: skip
        config = load_config_file(args.config) if args.config else {}
        config.update(parse_set(args.set or []))
        if not config:
            raise UsageError("tenants upsert needs --config FILE or --set field=value")
        return AdminCall(uris.ADMIN_TENANT_UPSERT, {"tenant_id": args.tenant_id, "config": config}, render_upsert)
    if group == "sessions":
        if action == "list":
            kwargs = {"tenant_id": args.tenant_id, "user_id": args.user}
            return AdminCall(uris.ADMIN_SESSION_LIST, kwargs, render_sessions)
        kwargs = {"tenant_id": args.tenant_id, "user_id": args.user_id, "device_id": args.device}
        return AdminCall(uris.ADMIN_SESSION_KICK, kwargs, render_kick)
    if group == "stats":
        return AdminCall(uris.ADMIN_STATS, {"tenant_id": args.tenant_id}, render_stats)
    if group == "dlq":
        kwargs = {"tenant_id": args.tenant_id, "limit": args.limit}
        if action == "list":
            return AdminCall(uris.ADMIN_DLQ_LIST, kwargs, render_dlq_list)
        return AdminCall(uris.ADMIN_DLQ_REPUSH, kwargs, render_repush)
    raise AssertionError(group)


def add_commands(sub: Any) -> None:
    """The admin sub-commands on `mics`'s argparse sub-parsers (mics.cli wires them)."""

    def common(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument("--url", default=None, help="node WebSocket URL (default: ws://127.0.0.1:$MICS_PORT/ws)")
        parser.add_argument("--json", action="store_true", help="print the procedure's result as JSON")
        parser.set_defaults(fn=main)
        return parser

    def group(name: str, help_: str) -> Any:
        parser = sub.add_parser(name, help=f"{help_} (asks the running node; needs MICS_ADMIN_SECRET)")
        return parser.add_subparsers(dest="action", required=True)

    tenants = group("tenants", "list, show, create or change, disable tenants")
    common(tenants.add_parser("list", help="every tenant with its live connections"))
    common(tenants.add_parser("get", help="a tenant's config (secret shown as ***)")).add_argument("tenant_id")
    upsert = common(tenants.add_parser("upsert", help="create a tenant or merge fields into its config"))
    upsert.add_argument("tenant_id")
    upsert.add_argument("--config", type=Path, help="a JSON file with config fields (section 8)")
    upsert.add_argument("--set", action="append", metavar="FIELD=VALUE",
                        help="one field (repeatable); VALUE is JSON when it parses, else a string")  # fmt: skip
    common(tenants.add_parser("disable", help="refuse new joins, close live sessions")).add_argument("tenant_id")

    sessions = group("sessions", "list or kick user sessions")
    listing = common(sessions.add_parser("list", help="a tenant's live user sessions"))
    listing.add_argument("tenant_id")
    listing.add_argument("--user", help="only this user's sessions")
    kick = common(sessions.add_parser("kick", help="close a user's sessions with mics.close.kicked"))
    kick.add_argument("tenant_id")
    kick.add_argument("user_id")
    kick.add_argument("--device", help="only this device")

    stats = common(sub.add_parser("stats", help="counters and hook health per tenant (asks the running node)"))
    stats.add_argument("tenant_id", nargs="?", help="one tenant (default: all)")
    stats.set_defaults(action=None)

    dlq = group("dlq", "list or re-push a tenant's dead-lettered events")
    for action, help_ in (("list", "the oldest N dead letters (default 100)"),
                          ("repush", "the oldest N (default all) back to Kafka")):  # fmt: skip
        parser = common(dlq.add_parser(action, help=help_))
        parser.add_argument("tenant_id")
        parser.add_argument("--limit", type=int, default=None, help="how many, oldest first")


# -- running it -----------------------------------------------------------------------------------


class Unreachable(Exception):
    """No node answered at the URL (refused, timed out, closed before the join)."""


async def call_node(url: str, secret: str, call: AdminCall) -> Any:
    """Join as admin, make the call, leave. MICS errors come up as mics_client's typed errors."""
    from twisted.internet.error import ConnectError, DNSLookupError
    from twisted.internet.error import TimeoutError as ConnectTimeout

    from mics_client.admin import connect_admin
    from mics_client.errors import TransportFailed

    try:
        session = await connect_admin(url, secret, serializer="json")
    except (ConnectError, DNSLookupError, ConnectTimeout, TransportFailed) as e:
        raise Unreachable(str(e) or type(e).__name__) from None
    except Exception as e:
        if type(e).__module__.startswith("OpenSSL") or "SSL" in type(e).__name__:
            raise Unreachable(f"TLS failed: {e}") from None
        raise
    try:
        return await session._call(call.procedure, **call.kwargs)
    finally:
        session.leave()


def default_url(env: Mapping[str, str]) -> str:
    return f"ws://127.0.0.1:{env.get('MICS_PORT') or '8080'}/ws"


def run(call: AdminCall, url: str, secret: str | None, as_json: bool, out: IO[str], err: IO[str]) -> int:
    """Make the call on a fresh reactor and print the outcome; returns the exit status."""
    if not secret:
        print("mics: set MICS_ADMIN_SECRET to the node's admin secret", file=err)
        return EXIT_USAGE
    # Autobahn tries the optional UBJSON serializer (bjdata), whose build for NumPy 1.x prints a
    # long traceback to stderr on every import; the admin client speaks JSON, so skip it.
    sys.modules.setdefault("bjdata", None)  # type: ignore[arg-type]
    import txaio

    txaio.use_twisted()
    from twisted.internet import task
    from twisted.internet.defer import Deferred

    from mics_client.errors import MicsError

    outcome: dict[str, Any] = {}

    async def main(_reactor: Any) -> None:
        try:
            outcome["result"] = await call_node(url, secret, call)
        except Exception as e:
            outcome["error"] = e

    try:
        task.react(lambda reactor: Deferred.fromCoroutine(main(reactor)))
    except SystemExit:
        pass  # react() always exits; the outcome says how it went
    error = outcome.get("error")
    if isinstance(error, Unreachable) or (error is None and "result" not in outcome):
        print(f"mics: cannot reach the node at {url}: {error or 'no answer'}", file=err)
        return EXIT_USAGE
    if isinstance(error, MicsError):
        print(f"error: {error.uri}: {error.message}", file=err)
        return EXIT_MICS_ERROR
    if error is not None:
        raise error
    result = outcome["result"]
    print(json.dumps(result, indent=2, sort_keys=True) if as_json else call.render(result), file=out)
    return EXIT_OK


def main(args: argparse.Namespace, env: Mapping[str, str] | None = None) -> int:
    env = os.environ if env is None else env
    try:
        call = build_call(args)
    except UsageError as e:
        print(f"mics: {e}", file=sys.stderr)
        return EXIT_USAGE
    return run(call, args.url or default_url(env), env.get("MICS_ADMIN_SECRET"), args.json, sys.stdout, sys.stderr)
