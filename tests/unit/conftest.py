"""Unit tests import mics modules, which make txaio loggers at import: select Twisted, as the router worker does.

`make_runtime` gives a tenant runtime with no node (tests/unit/fakes.py): the send service and agents tests."""

import txaio

txaio.use_twisted()

from typing import Any  # noqa: E402

import pytest  # noqa: E402
from fakes import FakePort, RecordingSink  # noqa: E402
from twisted.internet import task  # noqa: E402

from mics.config import NodeSettings, TenantConfig  # noqa: E402
from mics.engine.memory import MemoryEngines  # noqa: E402
from mics.tenants import TenantRuntime  # noqa: E402
from mics.types import MsgIdFactory  # noqa: E402


@pytest.fixture
def clock() -> task.Clock:
    clock = task.Clock()
    clock.advance(1000)
    return clock


@pytest.fixture
def make_runtime(clock, tmp_path):
    def make(**config: Any) -> tuple[TenantRuntime, FakePort, RecordingSink]:
        settings = NodeSettings(node_id="unit", data_dir=str(tmp_path))
        tenant_config = TenantConfig.parse("tunit", {"secret": "unit-secret-123", "event_sinks": [], **config})
        port = FakePort()
        runtime = TenantRuntime(tenant_config, settings, clock, MemoryEngines("unit"), MsgIdFactory("unit"), port)
        sink = RecordingSink()
        runtime.events.sinks = [sink]
        return runtime, port, sink

    return make
