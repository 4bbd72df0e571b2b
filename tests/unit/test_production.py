"""Secrets published with the project: what `mics config check --production` and the start-up
warning look for."""

from __future__ import annotations

import json
from typing import Any

import txaio

txaio.use_twisted()

from harness import ROOT  # noqa: E402
from mics import production  # noqa: E402
from mics.config import MicsConfig  # noqa: E402


def shipped() -> dict[str, Any]:
    config = json.loads((ROOT / "router/.crossbar/config.json").read_text())
    extra: dict[str, Any] = config["workers"][0]["components"][0]["extra"]
    return extra


def test_the_published_secrets_are_the_ones_in_the_shipped_router_config():
    extra = shipped()
    assert {t["secret"] for t in extra["tenants"].values()} == production.PUBLISHED_TENANT_SECRETS
    assert {extra["node"]["admin_secret"]} == production.PUBLISHED_ADMIN_SECRETS


def test_the_shipped_config_is_not_fit_for_production_and_says_why():
    found = production.problems(MicsConfig.load(shipped(), env={}))
    assert found == [
        "tenants.demo.secret: the published development secret; set a secret of your own (or remove the tenant)",
        "node.admin_secret: the published development secret; set MICS_ADMIN_SECRET",
    ]


def test_a_config_with_its_own_secrets_is_fit_for_production():
    extra = shipped()
    extra["tenants"]["demo"]["secret"] = "a-secret-of-our-own-42"
    assert production.problems(MicsConfig.load(extra, env={"MICS_ADMIN_SECRET": "another-one-of-ours"})) == []


class Lines:
    def __init__(self) -> None:
        self.lines: list[dict[str, Any]] = []

    def warn(self, text: str, **fields: Any) -> None:
        self.lines.append(fields)


def test_the_start_up_warning_names_each_exposed_tenant_only_on_a_production_node():
    tenants = MicsConfig.load(shipped(), env={}).tenants.values()
    quiet, loud = Lines(), Lines()
    assert production.warn_published_secrets(tenants, quiet, env={}) == 0 and quiet.lines == []
    assert production.warn_published_secrets(tenants, loud, env={"MICS_ADMIN_SECRET": "prod-secret-0123"}) == 1
    assert loud.lines == [{"tenant_id": "demo"}]
