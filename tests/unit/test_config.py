"""Tenant config and node settings validation: every bad value names tenant and field."""

import pytest

from mics.config import MIB, MicsConfig, NodeSettings, TenantConfig
from mics.errors import ConfigError

SECRET = {"secret": "s3cret-value"}


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
    ],
)
def test_bad_values_are_refused_naming_tenant_and_field(raw, field, words):
    with pytest.raises(ConfigError) as err:
        TenantConfig.parse("acme", {**SECRET, **raw})
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
    for field in ("secret", "enabled", "hook_transport", "hook_base_url"):
        with pytest.raises(ConfigError) as err:
            c.with_overrides({field: "x"})
        assert err.value.field == field


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
        ({}, {"MICS_ROUTER_WORKERS": "two"}, "node.router_workers"),
        ({}, {"MICS_ROUTER_WORKERS": "2"}, "node.router_workers"),  # without Redis
    ],
)
def test_bad_node_settings_are_refused(raw, env, field):
    with pytest.raises(ConfigError) as err:
        NodeSettings.load(raw, env)
    assert err.value.field == field


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
