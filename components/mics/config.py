"""Node settings and the tenant config schema (protocol.md sections 8, 10 and 12).

Each setting is declared once, as a dataclass field whose `setting(...)` carries its kind, default,
bounds and a one-line doc: the dataclass (TenantConfig, AgentConfig, NodeSettings), the schemas the
validators walk (TENANT_SCHEMA, AGENT_SCHEMA, NODE_SCHEMA) and the generated doc tables
(mics.docgen) all read that one declaration. A config is validated whole into an immutable
dataclass; a bad value raises ConfigError naming tenant and field (`tenants.acme.agents[0].url`),
so a node refuses to start and an admin upsert is refused with the same message.
"""

from __future__ import annotations

import dataclasses
import os
import re
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from mics.errors import ConfigError

TENANT_ID_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{2,63}$")
# '.' and '#' would change a topic's meaning, whitespace and control characters no id needs
_ID_FORBIDDEN = re.compile(r"[.#\s\x00-\x1f\x7f]")
MIB = 1024 * 1024
DEFAULT_MAX_UNSENT_BYTES = 2 * MIB

EVENT_SINKS = ("kafka", "file", "wamp")
MAX_AGENTS = 100  # agents per tenant: every group send matches its body against their keywords
MAX_KEYWORD_CHARS = 100
RESERVED_AGENT_ID = "list"  # mics.agent.<agent_id> would be the node's own mics.agent.list
_URL_RE = re.compile(r"^https?://[^\s/]+")


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
    """One setting: its kind, default, bounds and meaning (what validation and docs read)."""

    # "int" | "bool" | "str" | "enum" | "url" | "endpoint" | "sinks" | "secret" | "id" | "text" |
    # "words" | "agents" | "redis" | "classes" (the checks are in _CHECKS)
    kind: str
    default: Any
    doc: str
    low: int | None = None
    high: int | None = None  # ints: the largest value; "text" and "words": the longest / most
    choices: tuple[str, ...] = ()
    required: bool = False
    env: str | None = None  # node settings: the MICS_* variable that overrides the router config
    shown_default: str | None = None  # the docs' text when the default is worked out at run time
    internal: bool = False  # set by the node itself, never by an admin: left out of the docs


_SPEC = "mics.setting"


def setting(
    kind: str,
    default: Any,
    doc: str,
    low: int | None = None,
    high: int | None = None,
    *,
    choices: tuple[str, ...] = (),
    required: bool = False,
    env: str | None = None,
    shown_default: str | None = None,
    internal: bool = False,
) -> Any:
    """A dataclass field declared once: its Python default and its schema entry come from here."""
    spec = Field(kind, default, doc, low, high, choices, required, env, shown_default, internal)
    if required:
        return dataclasses.field(metadata={_SPEC: spec})
    if isinstance(default, dict):
        return dataclasses.field(default_factory=lambda: dict(default), metadata={_SPEC: spec})
    return dataclasses.field(default=default, metadata={_SPEC: spec})


def schema_of(cls: type) -> dict[str, Field]:
    """The settings of a dataclass declared with `setting(...)`, in declaration order."""
    return {f.name: f.metadata[_SPEC] for f in dataclasses.fields(cls) if _SPEC in f.metadata}


def _check_value(name: str, spec: Field, value: Any, tenant_id: str | None = None) -> Any:
    """`value` checked (and normalised) against `spec`; ConfigError naming `name` when it is bad."""

    def bad(expected: str) -> ConfigError:
        return ConfigError(name, f"expected {expected}, got {value!r}", tenant_id)

    if value is None and not spec.required and spec.default is None:
        return None  # optional and unset
    check = _CHECKS.get(spec.kind)
    if check is None:
        raise AssertionError(spec.kind)
    return check(spec, value, bad, name, tenant_id)


_Bad = Callable[[str], ConfigError]


def _int(spec: Field, value: Any, bad: _Bad, _name: str, _tid: str | None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise bad(f"int {spec.low}..{spec.high}")
    if (spec.low is not None and value < spec.low) or (spec.high is not None and value > spec.high):
        raise bad(f"int {spec.low}..{spec.high}")
    return value


def _bool(_spec: Field, value: Any, bad: _Bad, _name: str, _tid: str | None) -> bool:
    if not isinstance(value, bool):
        raise bad("true or false")
    return value


def _enum(spec: Field, value: Any, bad: _Bad, _name: str, _tid: str | None) -> str:
    if value not in spec.choices:
        raise bad("one of " + ", ".join(spec.choices))
    return str(value)


def _str(_spec: Field, value: Any, bad: _Bad, _name: str, _tid: str | None) -> str:
    if not isinstance(value, str) or not value:
        raise bad("a non-empty string")
    return value


def _secret(_spec: Field, value: Any, _bad: _Bad, name: str, tenant_id: str | None) -> str:
    if not isinstance(value, str) or len(value) < 8:
        raise ConfigError(name, "expected a string of at least 8 characters", tenant_id)
    return value


def _url(spec: Field, value: Any, bad: _Bad, name: str, tenant_id: str | None) -> str:
    """A base URL: the trailing '/' is dropped (paths are appended to it)."""
    return _endpoint(spec, value, bad, name, tenant_id).rstrip("/")


def _endpoint(_spec: Field, value: Any, bad: _Bad, _name: str, _tid: str | None) -> str:
    """A whole URL, kept as written."""
    if not isinstance(value, str) or not _URL_RE.match(value):
        raise bad("an http:// or https:// URL")
    return value


def _sinks(_spec: Field, value: Any, bad: _Bad, _name: str, _tid: str | None) -> tuple[str, ...]:
    if not isinstance(value, list) or any(v not in EVENT_SINKS for v in value):
        raise bad("a list of " + ", ".join(EVENT_SINKS))
    return tuple(dict.fromkeys(value))


def _id(_spec: Field, value: Any, bad: _Bad, _name: str, _tid: str | None) -> str:
    if not is_valid_entity_id(value):
        raise bad("a user id (1..128 characters, no '.', '#' or whitespace)")
    return str(value)


def _text(spec: Field, value: Any, bad: _Bad, _name: str, _tid: str | None) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > (spec.high or 0):
        raise bad(f"a non-empty string of at most {spec.high} characters")
    return value


def _words(spec: Field, value: Any, bad: _Bad, _name: str, _tid: str | None) -> tuple[str, ...]:
    expected = f"a list of at most {spec.high} non-empty strings of at most {MAX_KEYWORD_CHARS} characters"
    if not isinstance(value, list) or len(value) > (spec.high or 0):
        raise bad(expected)
    if any(not isinstance(v, str) or not v.strip() or len(v) > MAX_KEYWORD_CHARS for v in value):
        raise bad(expected)
    return tuple(dict.fromkeys(value))


def _redis(_spec: Field, value: Any, bad: _Bad, _name: str, _tid: str | None) -> str:
    """A Redis URL, parsed now: a bad one stops the node at start, not at the first send."""
    if not isinstance(value, str):
        raise bad("redis://host[:port][/db]")
    parse_url(value)
    return value


def _classes(_spec: Field, value: Any, bad: _Bad, name: str, tenant_id: str | None) -> dict[str, str]:
    if not isinstance(value, Mapping) or not all(isinstance(v, str) for v in value.values()):
        raise ConfigError(name, "expected an object of tenant_id -> class name", tenant_id)
    return dict(value)


def _agents(_spec: Field, value: Any, _bad: _Bad, name: str, tenant_id: str | None) -> tuple[AgentConfig, ...]:
    if not isinstance(value, list):
        raise ConfigError(name, f"expected a list of agent objects, got {value!r}", tenant_id)
    if len(value) > MAX_AGENTS:
        raise ConfigError(name, f"expected at most {MAX_AGENTS} agents, got {len(value)}", tenant_id)
    agents: list[AgentConfig] = []
    first_at: dict[str, int] = {}
    for index, raw in enumerate(value):
        agent = AgentConfig.parse(raw, f"{name}[{index}]", tenant_id)
        if agent.agent_id in first_at:
            also = f"{name}[{first_at[agent.agent_id]}]"
            message = f"expected an agent_id no other agent has, got {agent.agent_id!r} (also {also})"
            raise ConfigError(f"{name}[{index}].agent_id", message, tenant_id)
        first_at[agent.agent_id] = index
        agents.append(agent)
    return tuple(agents)


_CHECKS: dict[str, Callable[[Field, Any, _Bad, str, str | None], Any]] = {
    "int": _int, "bool": _bool, "enum": _enum, "str": _str, "secret": _secret, "url": _url,
    "endpoint": _endpoint, "sinks": _sinks, "id": _id, "text": _text, "words": _words,
    "redis": _redis, "classes": _classes, "agents": _agents,
}  # fmt: skip


def _parse_fields(
    schema: Mapping[str, Field], raw: Mapping[str, Any], prefix: str, tenant_id: str | None
) -> dict[str, Any]:
    """Every key of `raw` checked against `schema` (unknown keys refused), then required ones present."""
    values: dict[str, Any] = {}
    for name, value in raw.items():
        spec = schema.get(name)
        if spec is None:
            raise ConfigError(f"{prefix}{name}", "unknown field", tenant_id)
        values[name] = _check_value(f"{prefix}{name}", spec, value, tenant_id)
    for name, spec in schema.items():
        if spec.required and values.get(name) is None:
            raise ConfigError(f"{prefix}{name}", "required", tenant_id)
    return values


def _plain(value: Any) -> Any:
    """A config value as JSON-able data (tuples become lists, agents objects)."""
    if isinstance(value, AgentConfig):
        return value.to_dict()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def _to_dict(record: Any, skip: frozenset[str] = frozenset()) -> dict[str, Any]:
    return {
        f.name: _plain(getattr(record, f.name))
        for f in dataclasses.fields(record)
        if f.name not in skip and getattr(record, f.name) is not None
    }


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentConfig:
    """One AI agent a tenant declares (protocol.md section 12). Built by `AgentConfig.parse`."""

    agent_id: str = setting("id", None, "the agent's user id; no user may log in as it", required=True)
    name: str = setting("text", None, "display name (mics.agent.list)", high=128, required=True)
    description: str | None = setting("text", None, "what it does (mics.agent.list)", high=1024)
    keywords: tuple[str, ...] = setting(
        "words", (), "a group message whose text contains one (any case) calls the agent", high=100
    )
    transport: str = setting(
        "enum", None, "wamp: the backend registers `mics.agent.<agent_id>`; http: a signed POST to `url`",
        choices=("wamp", "http"), required=True,
    )  # fmt: skip
    url: str | None = setting("endpoint", None, "the agent's endpoint; required for http, refused for wamp")
    timeout_ms: int = setting("int", 30_000, "the whole answer must end within this", 1, 600_000)
    first_chunk_timeout_ms: int = setting(
        "int", 10_000, "the first chunk must come within this (at most timeout_ms)", 1, 600_000
    )
    max_qps: int = setting("int", 5, "calls per second to this agent; more are answered rate_limited", 1, 10_000)
    context_messages: int = setting("int", 20, "held messages of the conversation sent as context", 0, 1000)

    @classmethod
    def parse(cls, raw: Any, where: str = "agents[0]", tenant_id: str | None = None) -> AgentConfig:
        if not isinstance(raw, Mapping):
            raise ConfigError(where, f"expected an object, got {raw!r}", tenant_id)
        agent = cls(**_parse_fields(AGENT_SCHEMA, raw, f"{where}.", tenant_id))
        if agent.agent_id == RESERVED_AGENT_ID:
            raise ConfigError(f"{where}.agent_id", "expected an id other than 'list' (mics.agent.list)", tenant_id)
        if agent.transport == "http" and agent.url is None:
            raise ConfigError(f"{where}.url", "required when transport is http", tenant_id)
        if agent.transport != "http" and agent.url is not None:
            raise ConfigError(f"{where}.url", "only for transport http", tenant_id)
        if agent.first_chunk_timeout_ms > agent.timeout_ms:
            raise ConfigError(
                f"{where}.first_chunk_timeout_ms",
                f"expected at most timeout_ms ({agent.timeout_ms}), got {agent.first_chunk_timeout_ms}",
                tenant_id,
            )
        return agent

    def to_dict(self) -> dict[str, Any]:
        return _to_dict(self)


AGENT_SCHEMA: dict[str, Field] = schema_of(AgentConfig)


@dataclass(frozen=True, slots=True)
class TenantConfig:
    """A validated, immutable tenant config. Build it with `TenantConfig.parse`."""

    tenant_id: str
    secret: str = setting(
        "secret", None, "shared secret: backend wampcra login, hook and event signatures", required=True
    )
    enabled: bool = setting("bool", True, "false refuses new joins and closes live sessions")
    hook_transport: str = setting("enum", "wamp", "how hooks are called", choices=("wamp", "http"))
    hook_base_url: str | None = setting(
        "url", None, "base URL for http hooks; /auth, /check-message, /get-group-members"
    )
    hook_encoding: str = setting("enum", "json", "HTTP hook body encoding", choices=("json", "protobuf"))
    check_message_hook: bool = setting("bool", True, "false: sends skip the check-message hook")
    hook_timeout_ms: int = setting("int", 150, "check-message and group-members hook timeout", 1, 60_000)
    hook_auth_timeout_ms: int = setting("int", 1000, "auth hook timeout", 1, 60_000)
    hook_max_concurrency: int = setting("int", 64, "hook calls in flight per tenant and hook", 1, 100_000)
    hook_queue_timeout_ms: int = setting("int", 50, "longest wait for a free hook slot", 0, 60_000)
    hook_breaker_failure_threshold: int = setting("int", 5, "consecutive failures that open the breaker", 1, 100_000)
    hook_breaker_open_ms: int = setting("int", 5000, "how long an open breaker stays open", 1, 3_600_000)
    hook_batch_max: int = setting("int", 1, "check-message hook: messages per call (1: no batches)", 1, 1000)
    hook_batch_wait_ms: int = setting("int", 2, "check-message hook: how long a batch gathers messages", 0, 1000)
    heartbeat_timeout_s: int = setting("int", 30, "a session silent this long is closed", 1, 86_400)
    offline_ttl_s: int = setting("int", 300, "how long messages for offline users are held", 1, 86_400)
    replay_window_s: int = setting("int", 60, "how long other inbox messages are held", 0, 86_400)
    offline_max_per_user: int = setting("int", 1000, "held messages per user (oldest go first)", 1, 1_000_000)
    offline_max_bytes: int = setting("int", 64 * MIB, "held bytes per tenant (oldest go first)", 1024, 64 * 1024 * MIB)
    max_connections: int = setting("int", 100_000, "user connections per tenant", 1, 100_000_000)
    max_connections_per_user: int = setting("int", 10, "connections (devices) per user", 1, 10_000)
    max_message_qps: int = setting("int", 10_000, "tenant message rate; burst = one second", 1, 10_000_000)
    # bytes bodies travel base64 in JSON (4/3 larger): 512 KiB stays inside the 1 MiB WAMP message cap
    max_payload_bytes: int = setting("int", 65_536, "largest encoded body", 1, 512 * 1024)
    group_buffering: bool = setting("bool", False, "hold group messages in members' inboxes too")
    presence_queries: bool = setting(
        "bool", True, "false: users may not call mics.presence.get nor subscribe to mics.presence.*"
    )
    event_sinks: tuple[str, ...] | None = setting(
        "sinks", None, "event sinks: kafka, file, wamp ([] for none)",
        shown_default='`["kafka"]` when the node has `MICS_KAFKA_BOOTSTRAP`, else `["file"]`',
    )  # fmt: skip
    recall_window_s: int = setting(
        "int", 120, "how long a sender may recall or edit a message; 0 turns recall and edit off", 0, 86_400
    )
    max_user_message_qps: int = setting(
        "int", 20, "one user's sends, receipts, signals, recalls and edits per second, all devices; burst = one second",
        1, 1_000_000,
    )  # fmt: skip
    max_joins_per_ip_per_s: int = setting("int", 20, "joins per second from one IP address, per node", 1, 1_000_000)
    push_delay_s: int = setting(
        "int", 0, "OFFLINE_PUSH waits this long and is emitted only if the user is still offline", 0, 86_400
    )
    push_collapse_s: int = setting(
        "int", 10, "at most one OFFLINE_PUSH per user and conversation in this window", 0, 86_400
    )
    agents: tuple[AgentConfig, ...] = setting("agents", (), "AI agents the tenant declares (protocol.md section 12)")

    @classmethod
    def parse(cls, tenant_id: str, raw: Mapping[str, Any]) -> TenantConfig:
        if not is_valid_tenant_id(tenant_id):
            raise ConfigError("tenant_id", f"expected ^[A-Za-z][A-Za-z0-9_-]{{2,63}}$, got {tenant_id!r}")
        if not isinstance(raw, Mapping):
            raise ConfigError("config", f"expected an object, got {raw!r}", tenant_id)
        config = cls(tenant_id=tenant_id, **_parse_fields(TENANT_SCHEMA, raw, "", tenant_id))
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
        out = _to_dict(self, frozenset({"tenant_id"}))
        if redact:
            out["secret"] = "***"
        return out


TENANT_SCHEMA: dict[str, Field] = schema_of(TenantConfig)

# Fields an auth hook may not override: they decide who may talk to the tenant (agents: which user
# ids no user may log in as).
NOT_OVERRIDABLE = frozenset({"secret", "enabled", "hook_transport", "hook_base_url", "agents"})


CHECKOUT_ROUTER_CONFIG = Path("router/.crossbar/config.json")


def default_router_config(env: Mapping[str, str] | None = None, cwd: Path | None = None) -> Path:
    """The router config `mics node` reads without --config: $MICS_CONFIG; else a checkout's
    router/.crossbar/config.json under the current directory (the file admins edit in the repo);
    else the copy of that file shipped in the package, so an installed node starts anywhere."""
    env = os.environ if env is None else env
    chosen = _env_str(env, "MICS_CONFIG", None)
    if chosen is not None:
        return Path(chosen)
    in_checkout = (cwd or Path.cwd()) / CHECKOUT_ROUTER_CONFIG
    if in_checkout.is_file():
        return CHECKOUT_ROUTER_CONFIG if cwd is None else in_checkout
    return Path(str(resources.files("mics").joinpath("router_config.json")))


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

    node_id: str = setting(
        "str", None, "the node's id in WELCOME, sessions, events and logs; distinct per node in a cluster",
        env="MICS_NODE_ID", shown_default="`<hostname>-<port>`",
    )  # fmt: skip
    port: int = setting(
        "int", 8080, "the WebSocket + HTTP port (`/ws`, `/health`, `/ready`, `/metrics`, `/`)", 1, 65_535,
        env="MICS_PORT",
    )  # fmt: skip
    admin_secret: str | None = setting(
        "str", None, "the `admin` wampcra secret for realm `mics.control`",
        env="MICS_ADMIN_SECRET", shown_default="none (no admin access)",
    )  # fmt: skip
    redis_url: str | None = setting(
        "redis", None, "turns on cluster mode; without it the node runs alone", env="MICS_REDIS_URL"
    )
    kafka_bootstrap: str | None = setting(
        "str", None, 'Kafka brokers; also makes `["kafka"]` the default `event_sinks`', env="MICS_KAFKA_BOOTSTRAP"
    )
    log_format: str = setting(
        "enum", "text", "`json`: one JSON object per line", choices=("text", "json"), env="MICS_LOG_FORMAT"
    )
    data_dir: str = setting(
        "str", "var", "the effective config, node key, event files, dead letters", env="MICS_DATA_DIR",
        shown_default="`var` (relative to where the node starts)",
    )  # fmt: skip
    kafka_partitions: int = setting("int", 1, "partitions of the topics the node creates", 1, 100_000)
    # several router workers on one port, each a cluster member (needs redis_url)
    router_workers: int = setting(
        "int", 1, "router worker processes on the one port, to use more cores; more than one needs `MICS_REDIS_URL`",
        1, 64, env="MICS_ROUTER_WORKERS",
    )  # fmt: skip
    dev_mode: bool = setting("bool", False, "embedded default only: print the development admin secret at start")
    speedups: bool = setting(
        "bool", True,
        "`mics.router.speedups`: skip eager debug-log formatting above debug level, decode JSON frames in C,"
        " freeze the GC",
    )  # fmt: skip
    max_unsent_bytes: int = setting(
        "int", DEFAULT_MAX_UNSENT_BYTES, "a connection whose unsent outgoing data stays above this (and does not "
        "shrink) is closed with `mics.close.slow_consumer`", 64 * 1024, 1024 * MIB,
    )  # fmt: skip
    backend_components: Mapping[str, str] = setting(
        "classes", {}, "a backend class started inside that tenant's realm (the demo)"
    )
    # set by `mics node` on each router worker copy; suffixes the node id (`<node_id>-w<n>`)
    worker: int | None = setting("int", None, "this router worker's number", 1, 64, internal=True)
    tls_cert: str | None = setting(
        "str", None, "PEM certificate (chain) file: the listener serves `wss://` and `https://`", env="MICS_TLS_CERT"
    )
    tls_key: str | None = setting("str", None, "PEM private key file, with `MICS_TLS_CERT`", env="MICS_TLS_KEY")

    @property
    def default_event_sinks(self) -> tuple[str, ...]:
        return ("kafka",) if self.kafka_bootstrap else ("file",)

    @classmethod
    def load(cls, raw: Mapping[str, Any] | None, env: Mapping[str, str] | None = None) -> NodeSettings:
        raw = dict(raw or {})
        env = os.environ if env is None else env
        for name in raw:
            if name not in NODE_SCHEMA:
                raise ConfigError(f"node.{name}", "unknown field")
        values: dict[str, Any] = {}
        for name, spec in NODE_SCHEMA.items():
            where, value = f"node.{name}", raw.get(name, spec.default)
            text = _env_str(env, spec.env, None) if spec.env else None
            if text is not None:
                where, value = str(spec.env), int(text) if spec.kind == "int" and text.isdigit() else text
            values[name] = _check_value(where, spec, value)
        workers, worker = values["router_workers"], values["worker"]
        if worker is not None and worker > workers:
            raise ConfigError("node.worker", f"expected int 1..{workers}, got {worker!r}")
        node_id = values["node_id"] or f"{socket.gethostname()}-{values['port']}"
        values["node_id"] = node_id if worker is None else f"{node_id}-w{worker}"
        if values["redis_url"] is None and workers > 1:
            raise ConfigError("node.router_workers", "more than one router worker needs cluster mode (MICS_REDIS_URL)")
        for name, path, other in (("MICS_TLS_CERT", values["tls_cert"], values["tls_key"]),
                                  ("MICS_TLS_KEY", values["tls_key"], values["tls_cert"])):  # fmt: skip
            if path is None and other is not None:
                raise ConfigError(name, "TLS needs both MICS_TLS_CERT and MICS_TLS_KEY")
            if path is not None and not os.path.isfile(path):
                raise ConfigError(name, f"no such file: {path!r}")
        return cls(**values)


NODE_SCHEMA: dict[str, Field] = schema_of(NodeSettings)


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
