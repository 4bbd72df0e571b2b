"""Tenant config and node settings validation: every bad value names tenant and field."""

import dataclasses
from pathlib import Path

import pytest

from mics.config import (
    AGENT_SCHEMA,
    MIB,
    NODE_SCHEMA,
    TENANT_SCHEMA,
    AgentConfig,
    MicsConfig,
    NodeSettings,
    TenantConfig,
    default_router_config,
)
from mics.errors import ConfigError

SECRET = {"secret": "s3cret-value"}
HELPER = {"agent_id": "helper", "name": "Helper", "transport": "wamp"}


def test_defaults_match_the_protocol():
    c = TenantConfig.parse("acme", SECRET)
    assert (c.hook_timeout_ms, c.hook_auth_timeout_ms, c.hook_max_concurrency, c.hook_queue_timeout_ms) == (
        150, 1000, 64, 50,
    )  # fmt: skip
    assert (c.hook_breaker_failure_threshold, c.hook_breaker_open_ms, c.heartbeat_timeout_s) == (5, 5000, 30)
    assert (c.offline_ttl_s, c.replay_window_s, c.offline_max_per_user, c.offline_max_bytes) == (
        300,
        60,
        1000,
        64 * MIB,
    )
    assert (c.max_connections, c.max_connections_per_user, c.max_message_qps, c.max_payload_bytes) == (
        100_000, 10, 10_000, 65_536,
    )  # fmt: skip
    assert c.enabled and c.check_message_hook and c.presence_queries and not c.group_buffering
    assert c.hook_transport == "wamp" and c.hook_encoding == "json" and c.event_sinks is None
    assert (c.recall_window_s, c.max_user_message_qps, c.max_joins_per_ip_per_s) == (120, 20, 20)
    assert (c.push_delay_s, c.push_collapse_s, c.agents) == (0, 10, ())


@pytest.mark.parametrize("cls", [TenantConfig, AgentConfig, NodeSettings])
def test_each_setting_is_declared_once_and_the_schema_is_the_dataclass(cls):
    """The schema the validators and the docs read is the dataclass's own fields, defaults included."""
    schema = {TenantConfig: TENANT_SCHEMA, AgentConfig: AGENT_SCHEMA, NodeSettings: NODE_SCHEMA}[cls]
    fields = {f.name: f for f in dataclasses.fields(cls)}
    assert list(schema) == [name for name in fields if name != "tenant_id"]
    for name, spec in schema.items():
        if spec.required:
            assert fields[name].default is dataclasses.MISSING and fields[name].default_factory is dataclasses.MISSING
        elif fields[name].default_factory is not dataclasses.MISSING:
            assert fields[name].default_factory() == spec.default
        else:
            assert fields[name].default == spec.default, name
        assert spec.doc, f"{name} has no doc"


def test_a_parsed_config_has_every_schema_default():
    config = TenantConfig.parse("acme", SECRET)
    for name, spec in TENANT_SCHEMA.items():
        if not spec.required:
            assert getattr(config, name) == spec.default, name


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"hook_timeout_ms": 0}, "hook_timeout_ms", "expected int 1..60000, got 0"),
        ({"hook_timeout_ms": "fast"}, "hook_timeout_ms", "got 'fast'"),
        ({"hook_timeout_ms": 1.5}, "hook_timeout_ms", "got 1.5"),
        ({"enabled": "yes"}, "enabled", "true or false"),
        ({"max_connections": True}, "max_connections", "got True"),
        ({"hook_transport": "grpc"}, "hook_transport", "one of wamp, http"),
        ({"hook_encoding": "xml"}, "hook_encoding", "one of json, protobuf"),
        ({"hook_base_url": "ftp://x"}, "hook_base_url", "http:// or https://"),
        ({"hook_transport": "http"}, "hook_base_url", "required when hook_transport is http"),
        ({"event_sinks": "kafka"}, "event_sinks", "a list of kafka, file, wamp"),
        ({"event_sinks": ["sms"]}, "event_sinks", "a list of"),
        ({"colour": "blue"}, "colour", "unknown field"),
        ({"secret": "short"}, "secret", "at least 8"),
        ({"offline_max_bytes": 10}, "offline_max_bytes", "expected int"),
        ({"recall_window_s": -1}, "recall_window_s", "expected int 0..86400, got -1"),
        ({"recall_window_s": 86_401}, "recall_window_s", "got 86401"),
        ({"max_user_message_qps": 0}, "max_user_message_qps", "expected int 1..1000000, got 0"),
        ({"max_joins_per_ip_per_s": 0}, "max_joins_per_ip_per_s", "expected int 1..1000000, got 0"),
        ({"max_joins_per_ip_per_s": "20"}, "max_joins_per_ip_per_s", "got '20'"),
        ({"push_delay_s": -5}, "push_delay_s", "expected int 0..86400, got -5"),
        ({"push_collapse_s": 1.5}, "push_collapse_s", "expected int 0..86400, got 1.5"),
        ({"agents": {"agent_id": "helper"}}, "agents", "expected a list of agent objects"),
        ({"agents": None}, "agents", "expected a list of agent objects, got None"),
    ],
)
def test_bad_values_are_refused_naming_tenant_and_field(raw, field, words):
    with pytest.raises(ConfigError) as err:
        TenantConfig.parse("acme", {**SECRET, **raw})
    assert err.value.tenant_id == "acme" and err.value.field == field
    assert str(err.value).startswith(f"tenants.acme.{field}: ") and words in str(err.value)


def test_the_new_fields_take_their_whole_range():
    low = TenantConfig.parse("acme", {**SECRET, "recall_window_s": 0, "push_delay_s": 0, "push_collapse_s": 0})
    assert (low.recall_window_s, low.push_delay_s, low.push_collapse_s) == (0, 0, 0)
    high = TenantConfig.parse("acme", {**SECRET, "recall_window_s": 86_400, "max_user_message_qps": 1_000_000})
    assert (high.recall_window_s, high.max_user_message_qps) == (86_400, 1_000_000)


def test_an_agent_gets_the_protocol_defaults():
    config = TenantConfig.parse("acme", {**SECRET, "agents": [HELPER]})
    (agent,) = config.agents
    assert (agent.agent_id, agent.name, agent.transport, agent.url, agent.description) == (
        "helper", "Helper", "wamp", None, None,
    )  # fmt: skip
    assert (agent.keywords, agent.timeout_ms, agent.first_chunk_timeout_ms) == ((), 30_000, 10_000)
    assert (agent.max_qps, agent.context_messages) == (5, 20)


def test_an_http_agent_with_every_field_parses_and_round_trips():
    raw = {
        "agent_id": "summarizer", "name": "Summarizer", "description": "sums up", "keywords": ["tl;dr", "sum up"],
        "transport": "http", "url": "https://backend.example/agents/sum/", "timeout_ms": 60_000,
        "first_chunk_timeout_ms": 60_000, "max_qps": 1, "context_messages": 0,
    }  # fmt: skip
    config = TenantConfig.parse("acme", {**SECRET, "agents": [HELPER, raw]})
    assert config.agents[1].to_dict() == raw, "every value kept as written (the URL's trailing / too)"
    assert config.to_dict()["agents"] == [AgentConfig.parse(HELPER).to_dict(), raw]
    assert TenantConfig.parse("acme", config.to_dict()) == config
    assert config.merged({"recall_window_s": 0}).agents == config.agents


@pytest.mark.parametrize(
    ("agents", "field", "words"),
    [
        ([{**HELPER, "timeout_ms": 0}], "agents[0].timeout_ms", "expected int 1..600000, got 0"),
        ([{**HELPER, "timeout_ms": "30s"}], "agents[0].timeout_ms", "got '30s'"),
        ([HELPER, {**HELPER, "agent_id": "b", "colour": "blue"}], "agents[1].colour", "unknown field"),
        ([HELPER, dict(HELPER)], "agents[1].agent_id", "got 'helper' (also agents[0])"),
        (["helper"], "agents[0]", "expected an object, got 'helper'"),
        ([{**HELPER, "agent_id": "a.b"}], "agents[0].agent_id", "expected a user id"),
        ([{**HELPER, "agent_id": ""}], "agents[0].agent_id", "expected a user id"),
        ([{**HELPER, "agent_id": "list"}], "agents[0].agent_id", "other than 'list' (mics.agent.list)"),
        ([{"name": "Helper", "transport": "wamp"}], "agents[0].agent_id", "required"),
        ([{**HELPER, "name": " "}], "agents[0].name", "expected a non-empty string of at most 128 characters"),
        ([{**HELPER, "name": "n" * 129}], "agents[0].name", "at most 128 characters"),
        ([{"agent_id": "helper", "transport": "wamp"}], "agents[0].name", "required"),
        ([{**HELPER, "description": 7}], "agents[0].description", "got 7"),
        ([{**HELPER, "keywords": "help"}], "agents[0].keywords", "expected a list of at most 100 non-empty strings"),
        ([{**HELPER, "keywords": ["help", ""]}], "agents[0].keywords", "non-empty strings"),
        ([{**HELPER, "keywords": ["k"] * 101}], "agents[0].keywords", "at most 100"),
        ([{**HELPER, "keywords": ["k" * 101]}], "agents[0].keywords", "of at most 100 characters"),
        ([{**HELPER, "transport": "grpc"}], "agents[0].transport", "expected one of wamp, http, got 'grpc'"),
        ([{"agent_id": "helper", "name": "Helper"}], "agents[0].transport", "required"),
        ([{**HELPER, "transport": "http"}], "agents[0].url", "required when transport is http"),
        ([{**HELPER, "url": "https://x.example/a"}], "agents[0].url", "only for transport http"),
        ([{**HELPER, "transport": "http", "url": "ftp://x"}], "agents[0].url", "http:// or https://"),
        ([{**HELPER, "first_chunk_timeout_ms": 20_000, "timeout_ms": 15_000}], "agents[0].first_chunk_timeout_ms",
         "expected at most timeout_ms (15000), got 20000"),
        ([{**HELPER, "max_qps": 0}], "agents[0].max_qps", "expected int 1..10000, got 0"),
        ([{**HELPER, "context_messages": -1}], "agents[0].context_messages", "expected int 0..1000, got -1"),
        ([{**HELPER, "agent_id": f"a{i}"} for i in range(101)], "agents", "expected at most 100 agents, got 101"),
    ],
)  # fmt: skip
def test_bad_agents_are_refused_naming_the_agent_and_field(agents, field, words):
    with pytest.raises(ConfigError) as err:
        TenantConfig.parse("acme", {**SECRET, "agents": agents})
    assert err.value.tenant_id == "acme" and err.value.field == field
    assert str(err.value).startswith(f"tenants.acme.{field}: ") and words in str(err.value)


def test_secret_is_required():
    with pytest.raises(ConfigError) as err:
        TenantConfig.parse("acme", {})
    assert err.value.field == "secret"


@pytest.mark.parametrize("tenant_id", ["ab", "1abc", "a.bc", "a" * 65, "with space"])
def test_bad_tenant_ids_are_refused(tenant_id):
    with pytest.raises(ConfigError) as err:
        TenantConfig.parse(tenant_id, SECRET)
    assert err.value.field == "tenant_id"


def test_merge_keeps_other_fields_and_revalidates():
    c = TenantConfig.parse("acme", {**SECRET, "max_message_qps": 5})
    merged = c.merged({"heartbeat_timeout_s": 9})
    assert merged.max_message_qps == 5 and merged.heartbeat_timeout_s == 9 and merged.secret == c.secret
    with pytest.raises(ConfigError):
        c.merged({"heartbeat_timeout_s": -1})


def test_auth_hook_overrides_cannot_touch_access_fields():
    c = TenantConfig.parse("acme", SECRET)
    assert c.with_overrides({"offline_ttl_s": 10}).offline_ttl_s == 10
    for field in ("secret", "enabled", "hook_transport", "hook_base_url", "agents"):
        with pytest.raises(ConfigError) as err:
            c.with_overrides({field: "x"})
        assert err.value.field == field
    assert c.with_overrides({"recall_window_s": 0, "push_delay_s": 30}).push_delay_s == 30


def test_to_dict_round_trips_and_redacts():
    c = TenantConfig.parse("acme", {**SECRET, "event_sinks": ["file", "wamp"]})
    assert TenantConfig.parse("acme", c.to_dict()) == c
    assert c.to_dict(redact=True)["secret"] == "***"


def test_environment_overrides_node_settings():
    env = {"MICS_PORT": "9001", "MICS_NODE_ID": "n7", "MICS_ADMIN_SECRET": "adm", "MICS_REDIS_URL": "redis://r",
           "MICS_KAFKA_BOOTSTRAP": "k:9092", "MICS_LOG_FORMAT": "json", "MICS_DATA_DIR": "/data"}  # fmt: skip
    s = NodeSettings.load({"port": 8080, "node_id": "from-config", "admin_secret": "cfg"}, env)
    assert (s.port, s.node_id, s.admin_secret, s.redis_url, s.kafka_bootstrap, s.log_format, s.data_dir) == (
        9001, "n7", "adm", "redis://r", "k:9092", "json", "/data",
    )  # fmt: skip
    assert s.default_event_sinks == ("kafka",)


def test_node_defaults_without_environment():
    s = NodeSettings.load({}, {})
    assert s.port == 8080 and s.node_id.endswith("-8080") and s.admin_secret is None
    assert s.default_event_sinks == ("file",)
    assert s.max_unsent_bytes == 2 * MIB


@pytest.mark.parametrize(
    ("raw", "env", "field"),
    [
        ({"port": 0}, {}, "node.port"),
        ({}, {"MICS_PORT": "x"}, "MICS_PORT"),
        ({"log_format": "xml"}, {}, "node.log_format"),
        ({"bogus": 1}, {}, "node.bogus"),
        ({}, {"MICS_REDIS_URL": "http://r:6379"}, "MICS_REDIS_URL"),
        ({"redis_url": "redis://r/zero"}, {}, "MICS_REDIS_URL"),
        ({}, {"MICS_REDIS_URL": "redis://r:notaport"}, "MICS_REDIS_URL"),
        ({"router_workers": 0}, {}, "node.router_workers"),
        ({}, {"MICS_ROUTER_WORKERS": "two"}, "MICS_ROUTER_WORKERS"),
        ({}, {"MICS_ROUTER_WORKERS": "65"}, "MICS_ROUTER_WORKERS"),
        ({}, {"MICS_ROUTER_WORKERS": "2"}, "node.router_workers"),  # without Redis
        ({"worker": 2}, {}, "node.worker"),  # one router worker
        ({"kafka_partitions": 0}, {}, "node.kafka_partitions"),
        ({"dev_mode": "yes"}, {}, "node.dev_mode"),
        ({"admin_secret": 12345}, {}, "node.admin_secret"),
        ({"backend_components": {"demo": 1}}, {}, "node.backend_components"),
        ({"log_format": "text"}, {"MICS_LOG_FORMAT": "xml"}, "MICS_LOG_FORMAT"),
        ({"max_unsent_bytes": 1024}, {}, "node.max_unsent_bytes"),
        ({"max_unsent_bytes": "2MiB"}, {}, "node.max_unsent_bytes"),
    ],
)
def test_bad_node_settings_are_refused(raw, env, field):
    with pytest.raises(ConfigError) as err:
        NodeSettings.load(raw, env)
    assert err.value.field == field


def test_an_environment_value_is_refused_naming_the_variable():
    with pytest.raises(ConfigError) as err:
        NodeSettings.load({}, {"MICS_PORT": "eighty"})
    assert str(err.value) == "MICS_PORT: expected int 1..65535, got 'eighty'"
    with pytest.raises(ConfigError) as err:
        NodeSettings.load({"port": 70_000}, {})
    assert str(err.value) == "node.port: expected int 1..65535, got 70000"


def test_node_defaults_come_from_the_declaration():
    s = NodeSettings.load({}, {})
    assert (s.log_format, s.data_dir, s.kafka_partitions, s.router_workers, s.worker) == ("text", "var", 1, 1, None)
    assert s.speedups and not s.dev_mode and s.backend_components == {} and s.redis_url is None
    several = NodeSettings.load({"node_id": "n", "router_workers": 2, "worker": 2}, {"MICS_REDIS_URL": "redis://r"})
    assert several.node_id == "n-w2", "each router worker is its own cluster member"


def test_an_installed_node_finds_its_router_config(tmp_path):
    """$MICS_CONFIG, else a checkout's router/.crossbar/config.json, else the copy in the package."""
    shipped = default_router_config({}, tmp_path)
    assert shipped.name == "router_config.json" and shipped.is_file()
    repo = Path(__file__).parents[2]
    assert shipped.read_text() == (repo / "router/.crossbar/config.json").read_text(), "one file, not a copy"
    assert default_router_config({}, repo) == repo / "router/.crossbar/config.json"
    assert default_router_config({"MICS_CONFIG": "/etc/mics/config.json"}, repo) == Path("/etc/mics/config.json")


def test_whole_config_names_the_bad_tenant():
    with pytest.raises(ConfigError) as err:
        MicsConfig.load({"node": {}, "tenants": {"good": SECRET, "bad-one": {**SECRET, "max_payload_bytes": 0}}}, {})
    assert str(err.value).startswith("tenants.bad-one.max_payload_bytes")


def test_the_shipped_router_config_is_valid():
    import json
    from pathlib import Path

    from mics.cli import effective_config, mics_extra

    base = json.loads((Path(__file__).parents[2] / "router/.crossbar/config.json").read_text())
    config = effective_config(base, {})
    assert "demo" in mics_extra(config)["tenants"]
