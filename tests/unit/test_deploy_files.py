"""The Kubernetes ConfigMap carries a copy of the router config: it must stay a valid MICS config
and serve the same realms and paths as router/.crossbar/config.json (scripts/check-deploy checks
the files against their schemas; this checks what the schemas cannot know)."""

from __future__ import annotations

import json

import yaml

from harness import ROOT
from mics.cli import effective_config, mics_extra


def manifest() -> list[dict]:
    return [d for d in yaml.safe_load_all((ROOT / "docker/k8s/mics.yaml").read_text()) if d]


def test_the_configmap_router_config_is_valid_and_has_no_demo_tenant():
    [configmap] = [d for d in manifest() if d["kind"] == "ConfigMap"]
    config = json.loads(configmap["data"]["config.json"])
    effective = effective_config(config, {})  # validates node settings and tenants
    extra = mics_extra(effective)
    assert extra["tenants"] == {} and "dev_mode" not in extra["node"] and "admin_secret" not in extra["node"]


def test_the_configmap_serves_the_same_realms_and_paths_as_the_repo_config():
    [configmap] = [d for d in manifest() if d["kind"] == "ConfigMap"]
    shipped = json.loads(configmap["data"]["config.json"])["workers"][0]
    repo = json.loads((ROOT / "router/.crossbar/config.json").read_text())["workers"][0]
    assert shipped["realms"] == repo["realms"]
    assert shipped["transports"][0]["paths"] == repo["transports"][0]["paths"]


def test_the_deployment_mounts_the_configmap_where_mics_node_reads_it():
    [deployment] = [d for d in manifest() if d["kind"] == "Deployment"]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    assert container["args"] == ["--config", "/etc/mics/config.json"]
    assert {"name": "config", "mountPath": "/etc/mics"} in container["volumeMounts"]
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
