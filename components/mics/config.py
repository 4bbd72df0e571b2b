"""Node settings and the tenant config schema (protocol.md sections 8 and 10).

One schema: every field has its type, default, bounds and a one-line doc beside it. A config is
validated whole into an immutable TenantConfig; a bad value raises ConfigError naming tenant and
field, so a node refuses to start and an admin upsert is refused with the same message.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from mics.errors import ConfigError

TENANT_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{2,63}$")
# '.' and '#' would change a topic's meaning, whitespace and control characters no id needs
_ID_FORBIDDEN = re.compile(r"[.#\s\x00-\x1f\x7f]")
MIB = 1024 * 1024

EVENT_SINKS = ("kafka", "file", "wamp")


def is_valid_tenant_id(value: object) -> bool:
    return isinstance(value, str) and TENANT_ID_RE.match(value) is not None


def is_valid_entity_id(value: object) -> bool:
    """user_id, device_id, group_id: non-empty, at most 128 chars, no '.', '#', whitespace or
    control characters, valid Unicode (a lone surrogate can't be sent to clients)."""
    if not isinstance(value, str) or not 0 < len(value) <= 128 or _ID_FORBIDDEN.search(value) is not None:
        return False
    if value.isascii():
        return True
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@dataclass(frozen=True, slots=True)
class Field:
    """One config field: its kind, default, bounds and meaning."""

    kind: str  # "int" | "bool" | "str" | "enum" | "url" | "sinks" | "secret"
    default: Any
    doc: str
    low: int | None = None
    high: int | None = None
    choices: tuple[str, ...] = ()


TENANT_SCHEMA: dict[str, Field] = {
    "secret": Field("secret", None, "shared secret: backend wampcra login, hook and event signatures"),
    "enabled": Field("bool", True, "false refuses new joins and closes live sessions"),
    "hook_transport": Field("enum", "wamp", "how hooks are called", choices=("wamp", "http")),
    "hook_base_url": Field("url", None, "base URL for http hooks; /auth, /check-message, /get-group-members"),
    "hook_encoding": Field("enum", "json", "HTTP hook body encoding", choices=("json", "protobuf")),
    "check_message_hook": Field("bool", True, "false: sends skip the check-message hook"),
    "hook_timeout_ms": Field("int", 150, "check-message and group-members hook timeout", 1, 60_000),
    "hook_auth_timeout_ms": Field("int", 1000, "auth hook timeout", 1, 60_000),
    "hook_max_concurrency": Field("int", 64, "hook calls in flight per tenant and hook", 1, 100_000),
    "hook_queue_timeout_ms": Field("int", 50, "longest wait for a free hook slot", 0, 60_000),
    "hook_breaker_failure_threshold": Field("int", 5, "consecutive failures that open the breaker", 1, 100_000),
    "hook_breaker_open_ms": Field("int", 5000, "how long an open breaker stays open", 1, 3_600_000),
    "heartbeat_timeout_s": Field("int", 30, "a session silent this long is closed", 1, 86_400),
    "offline_ttl_s": Field("int", 300, "how long messages for offline users are held", 1, 86_400),
    "replay_window_s": Field("int", 60, "how long other inbox messages are held", 0, 86_400),
    "offline_max_per_user": Field("int", 1000, "held messages per user (oldest go first)", 1, 1_000_000),
    "offline_max_bytes": Field("int", 64 * MIB, "held bytes per tenant (oldest go first)", 1024, 64 * 1024 * MIB),
    "max_connections": Field("int", 100_000, "user connections per tenant", 1, 100_000_000),
    "max_connections_per_user": Field("int", 10, "connections (devices) per user", 1, 10_000),
    "max_message_qps": Field("int", 10_000, "tenant message rate; burst = one second", 1, 10_000_000),
    "max_payload_bytes": Field("int", 65_536, "largest encoded body", 1, 16 * MIB),
    "group_buffering": Field("bool", False, "hold group messages in members' inboxes too"),
    "presence_queries": Field("bool", True, "false: users may not call mics.presence.get"),
    "event_sinks": Field("sinks", None, "event sinks: kafka, file, wamp ([] for none)"),
}

# Fields an auth hook may not override: they decide who may talk to the tenant.
NOT_OVERRIDABLE = frozenset({"secret", "enabled", "hook_transport", "hook_base_url"})


def _check_value(name: str, spec: Field, value: Any, tenant_id: str | None) -> Any:
    def bad(expected: str) -> ConfigError:
        return ConfigError(name, f"expected {expected}, got {value!r}", tenant_id)

    if spec.kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise bad(f"int {spec.low}..{spec.high}")
        if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
            raise bad(f"int {spec.low}..{spec.high}")
        return value
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if spec.kind == "enum":
        if value not in spec.choices:
            raise bad("one of " + ", ".join(spec.choices))
        return value
    if spec.kind == "secret":
        if not isinstance(value, str) or len(value) < 8:
            raise ConfigError(name, "expected a string of at least 8 characters", tenant_id)
        return value
    if spec.kind == "url":
        if value is None:
            return None
        if not isinstance(value, str) or not re.match(r"^https?://[^\s/]+", value):
            raise bad("an http:// or https:// URL")
        return value.rstrip("/")
    if spec.kind == "sinks":
        if value is None:
            return None
        if not isinstance(value, list) or any(v not in EVENT_SINKS for v in value):
            raise bad("a list of " + ", ".join(EVENT_SINKS))
        return tuple(dict.fromkeys(value))
    raise AssertionError(spec.kind)


@dataclass(frozen=True, slots=True)
class TenantConfig:
    """A validated, immutable tenant config. Build it with `TenantConfig.parse`."""

    tenant_id: str
    secret: str
    enabled: bool = True
    hook_transport: str = "wamp"
    hook_base_url: str | None = None
    hook_encoding: str = "json"
    check_message_hook: bool = True
    hook_timeout_ms: int = 150
    hook_auth_timeout_ms: int = 1000
    hook_max_concurrency: int = 64
    hook_queue_timeout_ms: int = 50
    hook_breaker_failure_threshold: int = 5
    hook_breaker_open_ms: int = 5000
    heartbeat_timeout_s: int = 30
    offline_ttl_s: int = 300
    replay_window_s: int = 60
    offline_max_per_user: int = 1000
    offline_max_bytes: int = 64 * MIB
    max_connections: int = 100_000
    max_connections_per_user: int = 10
    max_message_qps: int = 10_000
    max_payload_bytes: int = 65_536
    group_buffering: bool = False
    presence_queries: bool = True
    event_sinks: tuple[str, ...] | None = None  # None: the node's default

    @classmethod
    def parse(cls, tenant_id: str, raw: Mapping[str, Any]) -> TenantConfig:
        if not is_valid_tenant_id(tenant_id):
            raise ConfigError("tenant_id", f"expected ^[A-Za-z][A-Za-z0-9_-]{{2,63}}$, got {tenant_id!r}")
        if not isinstance(raw, Mapping):
            raise ConfigError("config", f"expected an object, got {raw!r}", tenant_id)
        values: dict[str, Any] = {}
        for name, value in raw.items():
            spec = TENANT_SCHEMA.get(name)
            if spec is None:
                raise ConfigError(name, "unknown field", tenant_id)
            values[name] = _check_value(name, spec, value, tenant_id)
        if values.get("secret") is None:
            raise ConfigError("secret", "required", tenant_id)
        config = cls(tenant_id=tenant_id, **values)
        if config.hook_transport == "http" and not config.hook_base_url:
            raise ConfigError("hook_base_url", "required when hook_transport is http", tenant_id)
        return config

    def merged(self, changes: Mapping[str, Any]) -> TenantConfig:
        """A new validated config with `changes` applied (partial upsert)."""
        if not isinstance(changes, Mapping):
            raise ConfigError("config", f"expected an object, got {changes!r}", self.tenant_id)
        return TenantConfig.parse(self.tenant_id, {**self.to_dict(), **changes})

    def with_overrides(self, overrides: Mapping[str, Any]) -> TenantConfig:
        """Apply auth-hook overrides; fields that decide access cannot be overridden."""
        if not isinstance(overrides, Mapping):
            raise ConfigError("config", "auth hook config overrides must be an object", self.tenant_id)
        locked = NOT_OVERRIDABLE.intersection(overrides)
        if locked:
            raise ConfigError(sorted(locked)[0], "may not be overridden by the auth hook", self.tenant_id)
        return self.merged(overrides)

    def to_dict(self, redact: bool = False) -> dict[str, Any]:
        """The config as plain JSON-able values; `redact` hides the secret."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if f.name == "tenant_id":
                continue
            value = getattr(self, f.name)
            if f.name == "event_sinks" and value is not None:
                value = list(value)
            if value is None:
                continue
            out[f.name] = value
        if redact:
            out["secret"] = "***"
        return out


def _env_str(env: Mapping[str, str], name: str, default: str | None) -> str | None:
    value = env.get(name)
    return value if value not in (None, "") else default


@dataclass(frozen=True, slots=True)
class RedisAddress:
    """Where Redis is: one server (`host`, `port`), or with Sentinel the sentinels to ask for the
    current primary of `master` (`host`, `port` are then the first sentinel's, for logs)."""

    host: str
    port: int
    db: int | None
    password: str | None
    username: str | None
    sentinels: tuple[tuple[str, int], ...] = ()
    master: str | None = None
    sentinel_password: str | None = None

    @property
    def is_sentinel(self) -> bool:
        return bool(self.sentinels)

    def describe(self) -> str:
        """For logs (no password)."""
        if self.is_sentinel:
            return "sentinel " + ",".join(f"{h}:{p}" for h, p in self.sentinels) + f" master {self.master}"
        return f"{self.host}:{self.port}"


SENTINEL_SCHEME = "redis+sentinel"
_URL_FORMS = "redis://[[user]:password@]host[:port][/db] or " \
    "redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db][?sentinel_password=...]"


def parse_url(url: str) -> RedisAddress:
    """`redis://[[user]:password@]host[:port][/db]`, or with Redis Sentinel
    `redis+sentinel://[[user]:password@]host[:port][,host[:port]...]/master[/db][?sentinel_password=...]`
    (the credentials are the data nodes'; sentinels listen on 26379 unless a port is given)."""
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme == SENTINEL_SCHEME:
        return _parse_sentinel_url(url)
    parts = urlsplit(url)
    if parts.scheme != "redis" or not parts.hostname:
        raise ConfigError("MICS_REDIS_URL", f"expected {_URL_FORMS}, got {url!r}")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ConfigError("MICS_REDIS_URL", f"the database must be a number, got {path!r}")
    try:
        port = parts.port or 6379
    except ValueError:
        raise ConfigError("MICS_REDIS_URL", f"bad port in {url!r}") from None
    return RedisAddress(
        host=parts.hostname,
        port=port,
        db=int(path) if path else None,
        password=unquote(parts.password) if parts.password else None,
        username=unquote(parts.username) if parts.username else None,
    )


def _parse_sentinel_url(url: str) -> RedisAddress:
    rest = url.split("://", 1)[1]
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    userinfo, _, hosts = netloc.rpartition("@")
    username, _, password = userinfo.partition(":") if userinfo else ("", "", "")
    sentinels = tuple(_host_port(h, url) for h in hosts.split(","))
    segments = [p for p in path.split("/") if p]
    if not segments or len(segments) > 2:
        raise ConfigError("MICS_REDIS_URL", f"expected .../<master>[/<db>] after the sentinels, got {url!r}")
    if len(segments) == 2 and not segments[1].isdigit():
        raise ConfigError("MICS_REDIS_URL", f"the database must be a number, got {segments[1]!r}")
    options = dict(p.partition("=")[::2] for p in query.split("&") if p)
    unknown = set(options) - {"sentinel_password"}
    if unknown:
        raise ConfigError("MICS_REDIS_URL", f"unknown option(s) {sorted(unknown)} in {url!r}")
    host, port = sentinels[0]
    return RedisAddress(
        host=host,
        port=port,
        db=int(segments[1]) if len(segments) == 2 else None,
        password=unquote(password) or None,
        username=unquote(username) or None,
        sentinels=sentinels,
        master=unquote(segments[0]),
        sentinel_password=unquote(options["sentinel_password"]) if options.get("sentinel_password") else None,
    )


def _host_port(text: str, url: str) -> tuple[str, int]:
    """`host`, `host:port` or `[v6]:port`; a sentinel's default port is 26379."""
    parts = urlsplit("//" + text)
    try:
        port = parts.port or 26379
    except ValueError:
        raise ConfigError("MICS_REDIS_URL", f"bad port in {text!r} of {url!r}") from None
    if not parts.hostname or parts.username is not None or parts.path:
        raise ConfigError("MICS_REDIS_URL", f"bad sentinel address {text!r} in {url!r}")
    return parts.hostname, port


@dataclass(frozen=True, slots=True)
class NodeSettings:
    """Node-wide settings: router config `extra.node`, overridden by MICS_* environment variables."""

    node_id: str
    port: int = 8080
    admin_secret: str | None = None
    redis_url: str | None = None
    kafka_bootstrap: str | None = None
    log_format: str = "text"
    data_dir: str = "var"
    kafka_partitions: int = 1
    dev_mode: bool = False  # embedded default: print the development admin secret
    speedups: bool = True  # mics.speedups: skip eager debug formatting, tune the GC
    backend_components: Mapping[str, str] = field(default_factory=dict)
    # several router workers on one port, each a cluster member (needs redis_url); `worker` is set
    # by `mics node` on each copy and suffixes the node id (`<node_id>-w<n>`)
    router_workers: int = 1
    worker: int | None = None

    @property
    def default_event_sinks(self) -> tuple[str, ...]:
        return ("kafka",) if self.kafka_bootstrap else ("file",)

    @classmethod
    def load(cls, raw: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> NodeSettings:
        raw = dict(raw or {})
        env = os.environ if env is None else env
        known = {f.name for f in dataclasses.fields(cls)}
        for name in raw:
            if name not in known:
                raise ConfigError(f"node.{name}", "unknown field")
        port = raw.get("port", 8080)
        env_port = _env_str(env, "MICS_PORT", None)
        if env_port is not None:
            if not env_port.isdigit():
                raise ConfigError("MICS_PORT", f"expected a port number, got {env_port!r}")
            port = int(env_port)
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigError("node.port", f"expected int 1..65535, got {port!r}")
        log_format = _env_str(env, "MICS_LOG_FORMAT", raw.get("log_format", "text"))
        if log_format not in ("json", "text"):
            raise ConfigError("node.log_format", f"expected json or text, got {log_format!r}")
        partitions = raw.get("kafka_partitions", 1)
        if isinstance(partitions, bool) or not isinstance(partitions, int) or partitions < 1:
            raise ConfigError("node.kafka_partitions", f"expected int >= 1, got {partitions!r}")
        backends = raw.get("backend_components", {})
        if not isinstance(backends, Mapping) or not all(isinstance(v, str) for v in backends.values()):
            raise ConfigError("node.backend_components", "expected an object of tenant_id -> class name")
        node_id = _env_str(env, "MICS_NODE_ID", raw.get("node_id")) or f"{socket.gethostname()}-{port}"
        workers = raw.get("router_workers", 1)
        env_workers = _env_str(env, "MICS_ROUTER_WORKERS", None)
        if env_workers is not None:
            workers = int(env_workers) if env_workers.isdigit() else env_workers
        if isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= 64:
            raise ConfigError("node.router_workers", f"expected int 1..64, got {workers!r}")
        worker = raw.get("worker")
        if worker is not None:
            if isinstance(worker, bool) or not isinstance(worker, int) or not 1 <= worker <= workers:
                raise ConfigError("node.worker", f"expected int 1..{workers}, got {worker!r}")
            node_id = f"{node_id}-w{worker}"
        redis_url = _env_str(env, "MICS_REDIS_URL", raw.get("redis_url"))
        if redis_url is not None:
            parse_url(redis_url)  # a bad URL stops the node at start, not at the first send
        elif workers > 1:
            raise ConfigError("node.router_workers", "more than one router worker needs cluster mode (MICS_REDIS_URL)")
        return cls(
            node_id=node_id,
            port=port,
            admin_secret=_env_str(env, "MICS_ADMIN_SECRET", raw.get("admin_secret")),
            redis_url=redis_url,
            kafka_bootstrap=_env_str(env, "MICS_KAFKA_BOOTSTRAP", raw.get("kafka_bootstrap")),
            log_format=log_format,
            data_dir=_env_str(env, "MICS_DATA_DIR", raw.get("data_dir", "var")) or "var",
            kafka_partitions=partitions,
            dev_mode=bool(raw.get("dev_mode", False)),
            speedups=bool(raw.get("speedups", True)),
            backend_components=dict(backends),
            router_workers=workers,
            worker=worker,
        )


@dataclass(frozen=True, slots=True)
class MicsConfig:
    """The whole MICS part of the router config: node settings and the tenants it starts with."""

    node: NodeSettings
    tenants: Mapping[str, TenantConfig]

    @classmethod
    def load(cls, extra: Mapping[str, Any], env: Mapping[str, str] | None = None) -> MicsConfig:
        if not isinstance(extra, Mapping):
            raise ConfigError("extra", "expected an object with 'node' and 'tenants'")
        unknown = set(extra) - {"node", "tenants"}
        if unknown:
            raise ConfigError(sorted(unknown)[0], "unknown field (expected 'node' and 'tenants')")
        node = NodeSettings.load(extra.get("node"), env)
        raw_tenants = extra.get("tenants", {})
        if not isinstance(raw_tenants, Mapping):
            raise ConfigError("tenants", "expected an object of tenant_id -> config")
        tenants = {tid: TenantConfig.parse(tid, cfg) for tid, cfg in raw_tenants.items()}
        return cls(node=node, tenants=tenants)
