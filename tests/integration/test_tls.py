"""TLS on the node's port: MICS_TLS_CERT / MICS_TLS_KEY make it serve wss:// and https:// with a
certificate the test makes (server + intermediate in one file, clients trusting only the root),
reached from the Python SDK, the JS SDK, the `mics` command and plain HTTPS."""

from __future__ import annotations

import json
import os
import shutil
import ssl
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import pytest_twisted
from integration.conftest import run_mics
from tls_certs import Pki, make_pki
from twisted.internet.utils import getProcessOutputAndValue

from harness import ADMIN_SECRET, ROOT, ManagedProcess, Node, free_port, http_get
from hook_servers import HookLogic, HttpHookServer
from mics.cli import crossbar_command, effective_config, write_node_dir
from mics_client.admin import connect_admin
from mics_client.errors import TransportFailed
from mics_client.twisted import connect
from wamp_clients import sleep

TENANT = "tls-tenant"
SECRET = "tls-tenant-secret-0123456789"


def https_get(url: str, ca: Path | None) -> tuple[int, bytes]:
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    with urllib.request.urlopen(url, timeout=2, context=context) as r:
        return r.status, r.read()


def start_tls_node(tmp: Path, pki: Pki) -> Node:
    """A node from the real router config with TLS on (harness.start_node probes plain HTTP)."""
    base = json.loads((ROOT / "router/.crossbar/config.json").read_text())
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("MICS_")},
           "MICS_TLS_CERT": str(pki.cert), "MICS_TLS_KEY": str(pki.key)}  # fmt: skip
    settings = {"admin_secret": ADMIN_SECRET, "data_dir": str(tmp / "tls"), "port": port, "node_id": "test-tls"}
    cbdir = write_node_dir(effective_config(base, env, node=settings))
    proc = ManagedProcess("tls", crossbar_command(cbdir, "warn"), tmp / "tls.log", env=env)

    def ready() -> bool:
        try:
            return https_get(f"https://127.0.0.1:{port}/ready", pki.ca)[0] == 200
        except OSError:
            return False

    try:
        proc.wait_ready(ready)
    except Exception:
        proc.stop()
        raise
    return Node(port, tmp / "tls", proc, "test-tls")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def tls_node(tmp_path_factory: pytest.TempPathFactory, pki: Pki) -> Iterator[Node]:
    node = start_tls_node(tmp_path_factory.mktemp("tlsnode"), pki)
    yield node
    node.process.stop()


@pytest.fixture
def wss(tls_node: Node) -> str:
    return f"wss://127.0.0.1:{tls_node.port}/ws"


@pytest.fixture
def trust_test_ca(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    """OpenSSL's default trust store for this process: the test root (read when a TLS context is made)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca))


@pytest_twisted.async_yield_fixture()
async def hooks(wss: str, trust_test_ca: None) -> Any:
    """The tenant (HTTP hooks, tokens tok-<user>), upserted over wss:// by the SDK's admin client."""
    server = HttpHookServer(SECRET, HookLogic())
    adm = await connect_admin(wss, ADMIN_SECRET)
    await adm.upsert_tenant(TENANT, secret=SECRET, hook_transport="http", hook_base_url=server.base_url)
    adm.leave()
    yield server
    await server.stop()


def test_the_port_serves_https_with_the_whole_chain_and_no_plain_http(tls_node, pki):
    status, body = https_get(f"https://127.0.0.1:{tls_node.port}/health", pki.ca)
    assert status == 200 and json.loads(body)["node_id"] == "test-tls"
    status, body = https_get(f"https://localhost:{tls_node.port}/metrics", pki.ca)
    assert status == 200 and b"mics_connections" in body
    assert http_get(f"http://127.0.0.1:{tls_node.port}/health")[0] != 200, "plain HTTP is not served"
    with pytest.raises(urllib.error.URLError) as untrusted:  # a client that does not trust the CA refuses
        https_get(f"https://127.0.0.1:{tls_node.port}/health", None)
    assert isinstance(untrusted.value.reason, ssl.SSLCertVerificationError)
    served = (tls_node.data_dir / "crossbar" / "config.json").read_text()
    assert "chain_certificates" in served, "the intermediate from the fullchain file is served"


@pytest_twisted.ensureDeferred
async def test_python_sdk_clients_chat_over_wss(wss, hooks):
    got: list[Any] = []
    bob = await connect(wss, TENANT, "tok-bob", "py", on_message=got.append)
    alice = await connect(wss, TENANT, "tok-alice", "py")
    try:
        ack = await alice.send("bob", {"text": "hello over wss"})
        for _ in range(50):
            if got:
                break
            await sleep(0.05)
        assert ack.delivered == "online" and [m.body for m in got] == [{"text": "hello over wss"}]
        assert alice.welcome is not None and alice.welcome.node_id == "test-tls"
    finally:
        await alice.close()
        await bob.close()


@pytest_twisted.ensureDeferred
async def test_python_sdk_refuses_a_server_it_does_not_trust(wss, monkeypatch, pki):
    empty = pki.ca.parent / "empty.pem"
    empty.write_text("")
    monkeypatch.setenv("SSL_CERT_FILE", str(empty))
    with pytest.raises(TransportFailed):  # the TLS handshake fails, so no WELCOME ever comes
        await connect(wss, TENANT, "tok-alice", "py", reconnect=False, join_timeout_s=1)


@pytest_twisted.ensureDeferred
async def test_js_sdk_clients_chat_over_wss(wss, hooks, pki):
    node_bin = shutil.which("node")
    assert node_bin, "the JS SDK tests need node (scripts/test-js installs the SDK's packages)"
    probe = str(ROOT / "tests/js/tls_probe.mjs")
    env = {**os.environ, "NODE_EXTRA_CA_CERTS": str(pki.ca)}
    out, err, code = await getProcessOutputAndValue(node_bin, [probe, wss, TENANT], env=env)
    assert code == 0, (out, err)
    result = json.loads(out)
    assert result["node_id"] == "test-tls" and result["ack"]["delivered"] == "online"
    assert result["body"] == {"text": "hello over wss"}
    env.pop("NODE_EXTRA_CA_CERTS")
    out, _err, code = await getProcessOutputAndValue(node_bin, [probe, wss, TENANT], env=env)
    assert code == 1 and json.loads(out)["error"] == "mics.client.unreachable", "an untrusted server is refused"


@pytest_twisted.ensureDeferred
async def test_the_mics_command_works_over_wss(wss, hooks, pki):
    run = await run_mics("tenants", "get", TENANT, "--json", "--url", wss, env={"SSL_CERT_FILE": str(pki.ca)})
    assert run.code == 0, run.err
    assert json.loads(run.out)["config"]["secret"] == "***"


def test_tls_settings_are_checked_before_the_node_starts(pki, tmp_path):
    def check(env: dict[str, str]) -> tuple[int, str]:
        import subprocess
        import sys

        mics = str(Path(sys.executable).with_name("mics"))
        clean = {k: v for k, v in os.environ.items() if not k.startswith("MICS_")}
        done = subprocess.run([mics, "config", "check"], env={**clean, **env}, cwd=ROOT, capture_output=True, text=True)
        return done.returncode, done.stderr

    assert check({"MICS_TLS_CERT": str(pki.cert)}) == (
        2, "mics: invalid config: MICS_TLS_KEY: TLS needs both MICS_TLS_CERT and MICS_TLS_KEY\n")  # fmt: skip
    missing = str(tmp_path / "nope.pem")
    code, err = check({"MICS_TLS_CERT": str(pki.cert), "MICS_TLS_KEY": missing})
    assert (code, err) == (2, f"mics: invalid config: MICS_TLS_KEY: no such file: {missing!r}\n")
    assert check({"MICS_TLS_CERT": str(pki.cert), "MICS_TLS_KEY": str(pki.key)})[0] == 0
