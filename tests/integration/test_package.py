"""The package as a user installs it: the two wheels built from this checkout (scripts/build-wheels),
installed into a fresh venv with only what they declare, pinned by requirements.lock, and a node
started from that venv outside the checkout, which answers /ready, serves the demo page and takes a
WAMP join from the SDK installed alongside it.

About a minute: most of it is pip unpacking the pinned dependencies into the new venv.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness import ROOT, http_get, start_mics_node
from harness import clean_env as without_mics_settings

SDK = ROOT / "sdk/python"

JOIN_AND_SEND = """
import asyncio, json, sys
from mics_client.asyncio import connect

async def main(url):
    got = asyncio.get_running_loop().create_future()
    bob = await connect(url, "demo", "demo-bob", "phone", on_message=lambda m: got.done() or got.set_result(m))
    alice = await connect(url, "demo", "demo-alice", "laptop")
    ack = await alice.send("bob", {"text": "from the wheel"})
    message = await asyncio.wait_for(got, 10)
    print(json.dumps({"delivered": ack.delivered, "body": message.body, "from": message.from_user_id}))
    await alice.close()
    await bob.close()

asyncio.run(main(sys.argv[1]))
"""

IMPORT_EVERY_MODULE = """
import importlib, pkgutil, txaio
txaio.use_twisted()
import mics, mics_client
names = [m.name for pkg in (mics, mics_client) for m in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + ".")]
names.remove("mics_client.asyncio")  # asyncio's, not Twisted's: the join below runs it
for name in names:
    importlib.import_module(name)
print(len(names))
"""


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without MICS_* settings or this checkout's venv and paths."""
    env = without_mics_settings(**extra)
    return {k: v for k, v in env.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME")}


def run(argv: list[str | Path], **kw) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=600, **kw)
    assert result.returncode == 0, f"{argv} failed:\n{result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    out = tmp_path_factory.mktemp("dist")
    run([ROOT / "scripts/build-wheels", out], env={**os.environ, "PYTHON": sys.executable})
    (node,) = out.glob("mics_node-*.whl")
    (sdk,) = out.glob("mics_client-*.whl")
    return {"node": node, "sdk": sdk}


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheels: dict[str, Path]) -> Iterator[Path]:
    """A fresh venv with the two wheels and what they declare (the lock only pins versions)."""
    venv = tmp_path_factory.mktemp("venv") / "v"
    run([sys.executable, "-m", "venv", venv], env=clean_env())
    python = venv / "bin/python"
    run([python, "-m", "pip", "install", "-q", "--no-compile", "-c", ROOT / "requirements.lock",
         wheels["sdk"], wheels["node"]], env=clean_env())  # fmt: skip
    run([python, "-m", "pip", "check"], env=clean_env())
    yield venv


def names(wheel: Path) -> set[str]:
    with zipfile.ZipFile(wheel) as zf:
        return set(zf.namelist())


def packages(root: Path, top: str) -> set[str]:
    """`top/.../__init__.py` for every package directory under `root` (named `top` in the wheel)."""
    return {(Path(top) / p.relative_to(root)).as_posix() for p in root.rglob("__init__.py")}


def test_the_wheels_carry_every_package_the_demo_page_and_the_router_config(wheels):
    node, sdk = names(wheels["node"]), names(wheels["sdk"])
    assert packages(ROOT / "components/mics", "mics") <= node, "every subpackage of mics is in the wheel"
    assert packages(SDK / "mics_client", "mics_client") <= sdk
    static = ROOT / "components/mics/static"
    for folder, _dirs, files in os.walk(static, followlinks=True):  # static/sdk links to the JS SDK
        for file in files:
            assert f"mics/static/{(Path(folder) / file).relative_to(static).as_posix()}" in node
    assert "mics/static/sdk/index.js" in node
    with zipfile.ZipFile(wheels["node"]) as zf:
        assert zf.read("mics/router_config.json") == (ROOT / "router/.crossbar/config.json").read_bytes()
    generated = {n for n in node | sdk if n.endswith("_pb2.py")}
    assert generated == {f"mics_client/v1/{m}_pb2.py" for m in ("config", "event", "hooks", "message")}, (
        "one generated copy of the protobuf code, in the SDK"
    )


def test_every_module_of_node_and_sdk_imports_in_the_fresh_venv(venv):
    result = run([venv / "bin/python", "-c", IMPORT_EVERY_MODULE], env=clean_env(), cwd=venv)
    assert int(result.stdout) > 40 and "Traceback" not in result.stderr, result.stderr


def test_a_node_from_the_fresh_venv_starts_outside_the_checkout_and_takes_a_join(venv, tmp_path):
    env = clean_env(MICS_DATA_DIR=str(tmp_path / "data"), MICS_NODE_ID="from-the-wheel")
    proc, port = start_mics_node([str(venv / "bin/mics"), "node"], tmp_path, env, cwd=tmp_path, timeout=60)
    try:
        status, page = http_get(f"http://127.0.0.1:{port}/")
        assert status == 200 and b"MICS chat demo" in page, "the demo page ships in the wheel"
        assert http_get(f"http://127.0.0.1:{port}/sdk/index.js")[0] == 200, "so does the JS SDK it loads"
        joined = run([venv / "bin/python", "-c", JOIN_AND_SEND, f"ws://127.0.0.1:{port}/ws"], env=clean_env(),
                     cwd=tmp_path)  # fmt: skip
        assert json.loads(joined.stdout.strip().splitlines()[-1]) == {
            "delivered": "online", "body": {"text": "from the wheel"}, "from": "alice",
        }  # fmt: skip
        assert "Traceback" not in joined.stderr, joined.stderr
        proc.proc.send_signal(signal.SIGTERM)
        assert proc.proc.wait(30) == 0
    finally:
        proc.stop()
    log = proc.log_path.read_text()
    assert "mics: starting node from-the-wheel" in log and "Traceback" not in log, proc.tail(80)
    assert (tmp_path / "data/crossbar/config.json").exists(), "the packaged config, written to the data dir"
