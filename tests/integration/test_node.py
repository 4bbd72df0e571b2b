"""The node as an operator sees it: `mics node`, environment overrides, HTTP probes, SIGTERM."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness import ROOT, clean_env, http_get, start_mics_node

MICS = str(Path(sys.executable).with_name("mics"))


def write_config(tmp: Path, mutate=None) -> Path:
    config = json.loads((ROOT / "router/.crossbar/config.json").read_text())
    if mutate:
        mutate(config["workers"][0]["components"][0]["extra"])
    path = tmp / "config.json"
    path.write_text(json.dumps(config))
    return path


def test_mics_node_honours_environment_and_stops_cleanly_on_sigterm(tmp_path):
    env = clean_env(MICS_NODE_ID="env-node-7", MICS_DATA_DIR=str(tmp_path / "data"),
                    MICS_ADMIN_SECRET="env-admin-secret")  # fmt: skip
    proc, port = start_mics_node([MICS, "node", "--config", str(write_config(tmp_path))], tmp_path, env)
    try:
        status, body = http_get(f"http://127.0.0.1:{port}/health")
        assert status == 200 and json.loads(body) == {"status": "ok", "node_id": "env-node-7"}
        status, metrics = http_get(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and b"mics_connections" in metrics
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(20) == 0
    finally:
        proc.stop()
    assert (tmp_path / "data" / "crossbar" / "config.json").exists(), "the effective config lives in the data dir"
    assert "dev-admin-secret" not in proc.tail(200), "an explicit admin secret replaces the development one"


def test_mics_node_refuses_a_bad_tenant_value_naming_tenant_and_field(tmp_path):
    def bad(extra):
        extra["tenants"]["demo"]["hook_timeout_ms"] = 0

    result = subprocess.run(
        [MICS, "node", "--config", str(write_config(tmp_path, bad))],
        env=clean_env(MICS_DATA_DIR=str(tmp_path)), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode == 2
    assert "tenants.demo.hook_timeout_ms" in result.stderr and "got 0" in result.stderr


def test_mics_config_check_reports_unknown_fields(tmp_path):
    def bad(extra):
        extra["tenants"]["demo"]["colour"] = "blue"

    result = subprocess.run([MICS, "config", "check", "--config", str(write_config(tmp_path, bad))],
                            env=clean_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "tenants.demo.colour: unknown field" in result.stderr
    ok = subprocess.run([MICS, "config", "check", "--config", str(write_config(tmp_path))],
                        env=clean_env(), capture_output=True, text=True, timeout=60)  # fmt: skip
    assert ok.returncode == 0 and "demo" in ok.stdout


def test_a_bad_environment_override_is_refused(tmp_path):
    result = subprocess.run([MICS, "node", "--config", str(write_config(tmp_path))],
                            env=clean_env(MICS_PORT="eighty", MICS_DATA_DIR=str(tmp_path)),
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert result.returncode == 2 and "MICS_PORT" in result.stderr


def test_config_check_validates_cluster_settings(tmp_path):
    """The CLI checks MICS_REDIS_URL and MICS_ROUTER_WORKERS before anything starts."""

    def check(**env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([MICS, "config", "check", "--config", str(write_config(tmp_path))],
                              env=clean_env(**env), capture_output=True, text=True, timeout=60)  # fmt: skip

    assert check(MICS_REDIS_URL="redis://redis:6379/0", MICS_ROUTER_WORKERS="2").returncode == 0
    bad_url = check(MICS_REDIS_URL="http://redis:6379")
    assert bad_url.returncode == 2 and "MICS_REDIS_URL" in bad_url.stderr
    alone = check(MICS_ROUTER_WORKERS="2")
    assert alone.returncode == 2 and "needs cluster mode" in alone.stderr


def test_sigterm_closes_user_sessions_with_shutdown(tmp_path):
    """A draining node says goodbye with mics.close.shutdown (observed by a real client subprocess)."""
    env = clean_env(MICS_DATA_DIR=str(tmp_path / "data"))
    proc, port = start_mics_node([MICS, "node", "--config", str(write_config(tmp_path))], tmp_path, env)
    try:
        watcher = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("leave_watcher.py")), f"ws://127.0.0.1:{port}/ws"],
            stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        assert watcher.stdout is not None

        def next_said() -> str:  # the watcher's own lines; autobahn may log to the same stdout
            for line in watcher.stdout:
                if line.startswith(("joined", "left")):
                    return line.strip()
            return "eof"

        assert next_said() == "joined"
        proc.proc.send_signal(signal.SIGTERM)  # as an orchestrator does: to the main process only
        assert next_said() == "left mics.close.shutdown"
        assert watcher.wait(10) == 0
        assert proc.proc.wait(30) == 0
    finally:
        proc.stop()


def json_records(text: str) -> list[dict]:
    """Every line as a JSON object; a line that is not one fails, naming it."""
    records = []
    for number, line in enumerate(text.splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            raise AssertionError(f"line {number} is not JSON: {line!r}") from None
        assert isinstance(record, dict), f"line {number} is not a JSON object: {line!r}"
        records.append(record)
    return records


def test_a_line_that_is_not_a_json_object_fails_the_log_check():
    assert json_records('{"a": 1}\n{"b": 2}') == [{"a": 1}, {"b": 2}]
    for bad in ("mics: starting node", "[1, 2]", ""):
        with pytest.raises(AssertionError, match="line 2 is not"):
            json_records(f'{{"a": 1}}\n{bad}\n{{"c": 3}}')


def test_json_log_format_prints_one_json_object_per_line(tmp_path):
    env = clean_env(MICS_DATA_DIR=str(tmp_path / "d"), MICS_LOG_FORMAT="json", MICS_NODE_ID="jn")
    proc, _ = start_mics_node([MICS, "node", "--config", str(write_config(tmp_path))], tmp_path, env, "j.log")
    try:
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(30) == 0
    finally:
        proc.stop()
    records = json_records((tmp_path / "j.log").read_text())
    assert records and all(r["node_id"] == "jn" and r["level"] in ("info", "warn") for r in records)
    assert any("MICS node ready" in r["message"] and r.get("process") == "router" for r in records)


def test_config_check_production_fails_on_published_secrets_and_passes_with_secrets_of_ones_own(tmp_path):
    def check(path: Path, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([MICS, "config", "check", "--production", "--config", str(path)],
                              env=clean_env(**env), capture_output=True, text=True, timeout=60)  # fmt: skip

    def own_secret(extra):
        extra["tenants"]["demo"]["secret"] = "a-secret-of-our-own-42"

    shipped = check(write_config(tmp_path), MICS_ADMIN_SECRET="our-admin-secret-42")
    assert shipped.returncode == 1
    assert "tenants.demo.secret: the published development secret" in shipped.stderr
    no_admin = check(write_config(tmp_path, own_secret))
    assert no_admin.returncode == 1 and "node.admin_secret: the published development secret" in no_admin.stderr
    ours = check(write_config(tmp_path, own_secret), MICS_ADMIN_SECRET="our-admin-secret-42")
    assert ours.returncode == 0 and "ok: 1 tenant(s): demo" in ours.stdout
    assert "our-admin-secret-42" not in shipped.stderr + no_admin.stderr


def test_a_node_configured_for_production_warns_loudly_about_the_published_demo_secret(tmp_path, mics_node):
    from harness import start_node

    node = start_node(tmp_path, "prod", env={"MICS_ADMIN_SECRET": "our-admin-secret-42"})
    try:
        deadline = time.monotonic() + 10
        while "SECURITY: tenant demo" not in node.process.tail(400) and time.monotonic() < deadline:
            time.sleep(0.1)
        log = node.process.tail(400)
    finally:
        node.process.stop()
    assert "SECURITY: tenant demo uses the secret published" in log and "demo-tenant-secret" not in log
    assert "SECURITY:" not in mics_node.process.tail(2000)  # a development node (no MICS_ADMIN_SECRET) stays quiet
