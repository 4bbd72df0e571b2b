"""The `mics` command: `mics node` starts a node from the router config (env overrides applied),
`mics config check` validates a config without starting anything, and `mics tenants|sessions|stats|dlq`
call the admin API of a running node (mics.admincli)."""

from __future__ import annotations

import argparse
import copy
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from mics import admincli
from mics.config import MicsConfig, default_router_config
from mics.errors import ConfigError

DEFAULT_CONFIG = default_router_config()  # --config, else $MICS_CONFIG, a checkout's, or the packaged one
CONTROL_CLASS = "mics.admin.ControlComponent"


def _router_worker(config: dict[str, Any]) -> dict[str, Any]:
    for worker in config.get("workers", []):
        if worker.get("type") == "router":
            return worker
    raise ConfigError("workers", "no router worker in the config")


def mics_extra(config: dict[str, Any]) -> dict[str, Any]:
    """The MICS part of a router config: the control component's `extra`."""
    for component in _router_worker(config).get("components", []):
        if component.get("classname") == CONTROL_CLASS:
            extra: dict[str, Any] = component.setdefault("extra", {})
            return extra
    raise ConfigError("components", f"no {CONTROL_CLASS} component in the router worker")


def effective_config(
    base: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    *,
    tenants: Mapping[str, Any] | None = None,
    node: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The config a node really runs: environment overrides applied, paths made absolute.

    `tenants` and `node` merge extra tenants and node settings in (tests, benchmarks).
    """
    env = os.environ if env is None else env
    config = copy.deepcopy(dict(base))
    extra = mics_extra(config)
    extra_node = extra.setdefault("node", {})
    extra_node.update(node or {})
    extra.setdefault("tenants", {}).update(tenants or {})
    settings = MicsConfig.load(extra, env).node  # validates everything, env included
    extra_node["port"] = settings.port
    extra_node["node_id"] = settings.node_id
    extra_node["data_dir"] = str(Path(settings.data_dir).resolve())
    extra_node["router_workers"] = settings.router_workers
    tls = None
    if settings.tls_cert and settings.tls_key:
        tls = {"certificate": str(Path(settings.tls_cert).resolve()), "key": str(Path(settings.tls_key).resolve())}
        extra_node["tls_cert"], extra_node["tls_key"] = tls["certificate"], tls["key"]
    for transport in _router_worker(config).get("transports", []):
        endpoint = transport.get("endpoint", {})
        if endpoint.get("type") == "tcp":
            endpoint["port"] = settings.port
            if tls is not None:  # the same port then serves wss:// and https:// only
                endpoint["tls"] = dict(tls)
            if settings.router_workers > 1:
                endpoint["shared"] = True  # SO_REUSEPORT: the kernel spreads connections over the workers
    if settings.router_workers > 1:
        _split_router(config, settings.router_workers)
    return config


def _split_router(config: dict[str, Any], count: int) -> None:
    """One router worker becomes `count` alike ones on the same port, each its own cluster member
    (`<node_id>-w<n>`, sharing Redis), so a node uses `count` cores."""
    worker = _router_worker(config)
    copies = []
    for n in range(1, count + 1):
        copy_ = copy.deepcopy(worker)
        copy_["id"] = f"{worker.get('id', 'router')}_w{n}"
        for component in copy_.get("components", []):
            if component.get("classname") == CONTROL_CLASS:
                component["extra"]["node"]["worker"] = n
        copies.append(copy_)
    at = config["workers"].index(worker)
    config["workers"][at : at + 1] = copies


def write_node_dir(config: dict[str, Any]) -> Path:
    """Write the effective config to `{data_dir}/crossbar/config.json`; returns that cbdir."""
    data_dir = Path(mics_extra(config)["node"]["data_dir"])
    cbdir = data_dir / "crossbar"
    cbdir.mkdir(parents=True, exist_ok=True)
    _split_tls_chains(config, cbdir)
    (cbdir / "config.json").write_text(json.dumps(config, indent=2))
    return cbdir


PEM_CERT = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\s*", re.DOTALL)


def _split_tls_chains(config: dict[str, Any], cbdir: Path) -> None:
    """A certificate file with intermediates after the server certificate (a "fullchain" PEM):
    Crossbar reads one certificate per file, so the intermediates go to files of their own
    (`tls-chain-<n>.pem` in the cbdir) listed as `chain_certificates`."""
    for worker in config.get("workers", []):
        for transport in worker.get("transports", []):
            tls = transport.get("endpoint", {}).get("tls")
            if not tls or "chain_certificates" in tls:
                continue
            certs = PEM_CERT.findall(Path(tls["certificate"]).read_bytes())
            chain = []
            for n, cert in enumerate(certs[1:], start=1):
                path = cbdir / f"tls-chain-{n}.pem"
                path.write_bytes(cert)
                chain.append(str(path))
            if chain:
                tls["chain_certificates"] = chain


def crossbar_command(cbdir: Path, loglevel: str = "info", logformat: str = "standard") -> list[str]:
    """`crossbar start` through mics.router.run, so every log line names its level."""
    return [sys.executable, "-m", "mics.router.run", "start", "--cbdir", str(cbdir), "--loglevel", loglevel,
            "--logformat", logformat]  # fmt: skip


def _load(path: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
    except FileNotFoundError:
        raise SystemExit(f"mics: no router config at {path}") from None
    except json.JSONDecodeError as e:
        raise SystemExit(f"mics: {path} is not valid JSON: {e}") from None
    return loaded


def _effective(path: Path) -> dict[str, Any] | None:
    """The effective config, or None after printing why it is invalid."""
    try:
        return effective_config(_load(path))
    except ConfigError as e:
        print(f"mics: invalid config: {e}", file=sys.stderr)
        return None


def cmd_node(args: argparse.Namespace) -> int:
    config = _effective(args.config)
    if config is None:
        return 2
    cbdir = write_node_dir(config)
    node = mics_extra(config)["node"]
    json_logs = os.environ.get("MICS_LOG_FORMAT", node.get("log_format", "text")) == "json"

    def say(text: str) -> None:  # with JSON logs, every stdout line is a JSON object, these too
        if json_logs:
            from mics.logs import line_to_record

            text = json.dumps(line_to_record(text, "info", node["node_id"]))
        print(text, flush=True)

    scheme = "wss" if node.get("tls_cert") else "ws"
    say(f"mics: starting node {node['node_id']} on {scheme}://0.0.0.0:{node['port']}/ws")
    if node.get("dev_mode") and node.get("admin_secret") and not os.environ.get("MICS_ADMIN_SECRET"):
        say(f"mics: development admin secret: {node['admin_secret']}")
    argv = crossbar_command(cbdir, args.loglevel, "syslogd" if json_logs else "standard")
    return supervise(argv, node_id=node["node_id"] if json_logs else None)


def supervise(argv: list[str], node_id: str | None = None, grace_s: float = 30.0) -> int:
    """Run Crossbar as a child; SIGTERM/SIGINT drain the node and exit 0 (Crossbar alone exits 1).

    The router worker closes user sessions with mics.close.shutdown before it stops. With a
    `node_id`, the child's log lines are rewritten as JSON (mics.logs).
    """
    pipe = subprocess.PIPE if node_id else None
    child = subprocess.Popen(argv, start_new_session=True, stdout=pipe, stderr=pipe, text=True)
    pumps = []
    if node_id:
        from mics.logs import pump_json

        for stream, level in ((child.stdout, "info"), (child.stderr, "warn")):
            pump = threading.Thread(target=pump_json, args=(stream, sys.stdout, level, node_id), daemon=True)
            pump.start()
            pumps.append(pump)
    stopping = False

    def forward(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child.poll() is None:
            child.send_signal(signal.SIGTERM)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    while True:
        try:
            code = child.wait(timeout=grace_s if stopping else None)
            break
        except subprocess.TimeoutExpired:
            child.kill()
    for pump in pumps:
        pump.join(2)
    return 0 if stopping else code


def cmd_config_check(args: argparse.Namespace) -> int:
    config = _effective(args.config)
    if config is None:
        return 2
    tenants = sorted(mics_extra(config).get("tenants", {}))
    if args.production:
        from mics import production

        found = production.problems(MicsConfig.load(mics_extra(config)))
        for problem in found:
            print(f"mics: not fit for production: {problem}", file=sys.stderr)
        if found:
            return 1
    print(f"ok: {len(tenants)} tenant(s): {', '.join(tenants)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mics", description="MICS instant-messaging node")
    sub = parser.add_subparsers(dest="command", required=True)
    node = sub.add_parser("node", help="start a node from the router config")
    node.add_argument("--config", type=Path, default=DEFAULT_CONFIG, help="router config (default: %(default)s)")
    node.add_argument("--loglevel", default=os.environ.get("MICS_LOG_LEVEL", "info"))
    node.set_defaults(fn=cmd_node)
    config = sub.add_parser("config", help="config tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate the router config")
    check.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    check.add_argument("--production", action="store_true",
                       help="also fail on secrets published with the project (demo tenant, development admin)")
    check.set_defaults(fn=cmd_config_check)
    admincli.add_commands(sub)
    args = parser.parse_args(argv)
    return int(args.fn(args))


if __name__ == "__main__":
    sys.exit(main())
