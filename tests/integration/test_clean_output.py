"""A clean run prints no traceback: `scripts/run`, the `mics` command and `import mics_client`.

Crossbar pulls in autobahn's UBJSON serializer (bjdata), whose C extension is built against NumPy
1.x; under NumPy 2 every process that imports autobahn's serializers printed an
`AttributeError: _ARRAY_API not found` traceback. pyproject.toml and requirements.lock keep NumPy
below 2, and these tests hold the line.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest

from harness import ROOT, clean_env, start_mics_node

MICS = str(Path(sys.executable).with_name("mics"))


def no_traceback(text: str) -> bool:
    return "Traceback" not in text and "_ARRAY_API" not in text


@pytest.mark.parametrize(
    "argv",
    [
        [MICS, "--help"],
        [MICS, "config", "check"],
        [MICS, "dlq", "list", "--help"],
        [sys.executable, "-c", "import mics_client"],
        [sys.executable, "-c", "import mics_client.twisted, mics_client.hooks.http, mics_client.admin"],
        [sys.executable, "-c", "import mics_client.asyncio"],
        # what a client does when it connects: load autobahn's serializers
        [sys.executable, "-c", "import mics_client.twisted as t, mics_client.core as c; c.make_serializer('cbor')"],
    ],
    ids=["mics --help", "config check", "dlq --help", "import", "twisted SDK", "asyncio SDK", "SDK serializer"],
)
def test_commands_print_no_traceback(argv):
    result = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=ROOT, env=clean_env())
    assert result.returncode == 0, result.stderr
    assert no_traceback(result.stderr) and no_traceback(result.stdout), result.stderr


def test_scripts_run_starts_a_node_that_prints_no_traceback(tmp_path):
    """The node's own processes (controller and router worker) import the serializers too."""
    env = clean_env(MICS_DATA_DIR=str(tmp_path / "data"))
    proc, _port = start_mics_node([str(ROOT / "scripts/run"), "--loglevel", "info"], tmp_path, env, timeout=120)
    try:
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(30) == 0
    finally:
        proc.stop()
    log = proc.log_path.read_text()
    assert "MICS node ready" in log and no_traceback(log), proc.tail(80)
