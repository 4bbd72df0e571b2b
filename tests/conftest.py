"""Shared fixtures: one real MICS node per test session (see harness.py)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness import Node, start_node, start_redis


@pytest.fixture(scope="session")
def mics_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = start_node(tmp_path_factory.mktemp("mics"))
    yield node
    node.process.stop()


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """One redis-server per test session (each test uses its own tenant ids, so keys never meet)."""
    proc, url = start_redis(tmp_path_factory.mktemp("redis"))
    yield url
    proc.stop()


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):  # type: ignore[no-untyped-def]
    """On a failing test, attach the node's log tail to the report."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        node = item.funcargs.get("mics_node")
        if isinstance(node, Node):
            report.sections.append(("mics node log (tail)", node.process.tail(80)))
