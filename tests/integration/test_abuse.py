"""Raw-socket abuse against a real node (protocol.md section 2): what a hostile or broken client
sends, byte for byte. Every attempt must end with its connection closed or its request refused,
and a control pair of users on the same node must still get every message.

The counts (attempts, frames, closes, control messages, lost) are printed at the end of the run.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import pytest_twisted
from checks import RUN_COUNTS, control_pair, in_thread, metric, worker_rss
from raw_ws import Closed, RawWebSocket, open_websocket

from mics.router.guards import HANDSHAKE_TIMEOUT_S, HELLO_TIMEOUT_S, MAX_FAILURES, user_message_limit
from wamp_clients import backend, sleep

COUNTS = RUN_COUNTS["abuse"]
FRAME_CAP = 1024 * 1024


def counted(attempts: int, frames: int = 0, refused: int | None = None) -> None:
    COUNTS["attempts"] += attempts
    COUNTS["frames"] += frames
    COUNTS["closed or refused"] += attempts if refused is None else refused


def closed_soon(ws: RawWebSocket, within: float = 3.0) -> bool:
    """True once the router closed the connection (a close frame, EOF or reset) within `within` s."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            opcode, _ = ws.recv_frame(timeout=max(0.05, deadline - time.monotonic()))
        except TimeoutError:  # (an OSError too) nothing more came: still open
            return False
        except (Closed, OSError):
            return True
        if opcode == 8:
            return True
    return False


# -- deadlines: handshake and HELLO ---------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_connections_that_never_finish_their_handshake_or_hello_are_closed_after_ten_seconds(
    make_tenant, mics_node
):
    tenant = await make_tenant()
    before = {r: metric(mics_node, "mics_guard_closes_total", reason=r) for r in ("handshake_timeout", "hello_timeout")}

    def open_all() -> dict[str, list[RawWebSocket]]:
        half_open = [RawWebSocket(mics_node.port) for _ in range(200)]
        for ws in half_open:  # the upgrade request, cut before its blank line
            ws.send_raw(ws.request().rsplit(b"\r\n", 2)[0])
        no_hello = [open_websocket(mics_node.port) for _ in range(100)]
        before_hello = [open_websocket(mics_node.port) for _ in range(10)]
        for n, ws in enumerate(before_hello):  # WAMP traffic that is not HELLO does not count
            ws.send([16, n, {}, "mics.inbox.ctl-bob", [], {"spoof": True}] if n % 2 else
                    [48, n, {}, "mics.ping", [], {}])  # fmt: skip
        return {"half-open HTTP upgrade": half_open, "WebSocket without HELLO": no_hello,
                "PUBLISH or CALL before HELLO": before_hello}  # fmt: skip

    groups = await in_thread(open_all)
    trickler = RawWebSocket(mics_node.port)
    stop = threading.Event()

    def trickle() -> None:  # one byte a second: an idle timeout never fires, the deadline does
        request = trickler.request()
        for byte in request:
            if stop.is_set():
                return
            try:
                trickler.send_raw(bytes([byte]))
            except OSError:
                return
            time.sleep(1.0)

    trickling = in_thread(trickle)
    await sleep(HELLO_TIMEOUT_S / 2)
    still_open_at_half_time = {name: sum(not ws.closed_now() for ws in group) for name, group in groups.items()}
    await sleep(HELLO_TIMEOUT_S / 2 + 2.0)
    open_after = {name: sum(not ws.closed_now() for ws in group) for name, group in groups.items()}
    trickler_closed = trickler.closed_now()
    stop.set()
    await trickling
    for group in groups.values():
        for ws in group:
            ws.close()
    trickler.close()

    attempts = sum(len(g) for g in groups.values()) + 1
    counted(attempts, frames=len(groups["PUBLISH or CALL before HELLO"]))
    assert still_open_at_half_time == {name: len(group) for name, group in groups.items()}, "closed too early"
    assert open_after == dict.fromkeys(groups, 0) and trickler_closed
    assert metric(mics_node, "mics_guard_closes_total", reason="hello_timeout") - before["hello_timeout"] >= 110
    assert metric(mics_node, "mics_guard_closes_total", reason="handshake_timeout") > before["handshake_timeout"]
    assert HANDSHAKE_TIMEOUT_S == HELLO_TIMEOUT_S == 10.0
    COUNTS["control messages"] += await control_pair(tenant)


def _keep_alive(port: int, requests: int, every_s: float) -> list[int]:
    """Plain HTTP requests on one kept-alive connection, `every_s` apart; their statuses."""
    ws = RawWebSocket(port)
    statuses = []
    try:
        for _ in range(requests):
            ws.send_raw(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
            head = b""
            while b"\r\n\r\n" not in head:
                head += ws._read(1, 5.0)
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            ws._read(length, 5.0)
            statuses.append(int(head.split(b" ")[1]))
            time.sleep(every_s)
        return statuses
    finally:
        ws.close()


@pytest_twisted.ensureDeferred
async def test_a_kept_alive_http_client_that_keeps_asking_is_never_cut_by_the_handshake_deadline(mics_node):
    statuses = await in_thread(_keep_alive, mics_node.port, 8, 2.0)  # 16 s on one connection
    assert statuses == [200] * 8


# -- frames that are not WAMP, or not allowed ----------------------------------------------------

BEFORE_HELLO: dict[str, Any] = {
    "text that is not JSON": b"not json at all",
    "a JSON object, not a list": b'{"hello": 1}',
    "an empty list": b"[]",
    "an unknown message type": b"[999, 1, {}]",
    "a message type that is a string": b'["1", "realm", {}]',
    "HELLO with details that are not an object": b'[1, "realm", "details"]',
    "HELLO with an invalid realm URI": json.dumps([1, "no spaces allowed", {"roles": {"caller": {}}}]).encode(),
    "invalid UTF-8 in a text frame": b'[1, "\xff\xfe", {}]',
}


def _misbehave(port: int, name: str) -> bool:
    """One connection doing one wrong thing before HELLO; True when the router closed it."""
    ws = open_websocket(port)
    try:
        if name == "a binary frame on a JSON connection":
            ws.send_frame(b"\x93\x01\xa1a\x80", opcode=2)
        elif name == "an unmasked client frame":
            ws.send_frame(b"[1]", mask=False)
        elif name == "a reserved opcode":
            ws.send_frame(b"x", opcode=3)
        elif name == "a ping over 125 bytes":
            ws.send_frame(b"p" * 200, opcode=9)
        else:
            ws.send_frame(BEFORE_HELLO[name])
        return closed_soon(ws)
    finally:
        ws.close()


FRAME_CASES = [*BEFORE_HELLO, "a binary frame on a JSON connection", "an unmasked client frame", "a reserved opcode",
               "a ping over 125 bytes"]  # fmt: skip
_PADDED_PING = '[48, 1, {}, "mics.ping", [], {"pad": "%s"}]'  # a call the node answers (invalid_message) if it reads it

AFTER_JOIN: dict[str, list[Any] | str] = {
    "a CALL whose request id is a string": '[48, "one", {}, "mics.ping", [], {}]',
    "a CALL whose request id is past 2**53": "[48, 9007199254740993, {}, \"mics.ping\", [], {}]",
    "a CALL whose options are a list": '[48, 1, [], "mics.ping", [], {}]',
    "a CALL whose procedure is not a URI": '[48, 1, {}, "not a uri!", [], {}]',
    "a SUBSCRIBE with a numeric topic": "[32, 1, {}, 42]",
    "a WELCOME sent by the client": '[2, 1, {"roles": {}}]',
    "a RESULT for a call never made": "[50, 77, {}, [1]]",
    "a message over the frame cap (1 MiB)": _PADDED_PING % ("x" * FRAME_CAP),
    "a fragmented message over the frame cap": "fragmented",
}


@pytest_twisted.ensureDeferred
async def test_garbage_frames_and_malformed_wamp_close_the_connection_and_the_node_keeps_serving(
    make_tenant, mics_node
):
    tenant = await make_tenant()
    closed = {name: await in_thread(_misbehave, mics_node.port, name) for name in FRAME_CASES}

    def after_join(name: str) -> bool:
        ws = open_websocket(mics_node.port)
        try:
            welcome = ws.join(tenant.tenant_id, ticket="tok-raw-user", device_id=f"raw-{len(name)}")
            assert welcome[0] == 2, welcome
            if AFTER_JOIN[name] == "fragmented":
                text = (_PADDED_PING % ("x" * FRAME_CAP)).encode()
                ws.send_frame(text[: FRAME_CAP // 2], fin=False)
                ws.send_frame(text[FRAME_CAP // 2 :], opcode=0)
            else:
                ws.send(AFTER_JOIN[name])  # type: ignore[arg-type]
            return closed_soon(ws)
        finally:
            ws.close()

    closed.update({name: await in_thread(after_join, name) for name in AFTER_JOIN})

    counted(len(closed), frames=len(closed))
    assert closed == dict.fromkeys(closed, True)
    COUNTS["control messages"] += await control_pair(tenant)


@pytest_twisted.ensureDeferred
async def test_requests_that_are_not_a_websocket_upgrade_are_not_upgraded(make_tenant, mics_node):
    tenant = await make_tenant()
    requests = {
        "bytes of a TLS client hello": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",
        "a GET without Upgrade": b"GET /ws HTTP/1.1\r\nHost: x\r\n\r\n",
        "an unknown subprotocol": None,
        "a header line of 70,000 bytes": b"GET /ws HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
        "a request line of garbage": b"\x00\xff\xfe garbage \r\n\r\n",
    }

    def status(name: str) -> int:
        ws = RawWebSocket(mics_node.port)
        try:
            if requests[name] is None:
                return ws.handshake(protocol="wamp.2.xml")
            ws.send_raw(requests[name])  # type: ignore[arg-type]
            try:
                head = ws._read(12, 3.0)
            except (Closed, OSError):
                return 0  # closed without an answer
            return int(head.split(b" ")[1]) if head.startswith(b"HTTP/") else -1
        finally:
            ws.close()

    statuses = {name: await in_thread(status, name) for name in requests}

    counted(len(statuses))
    assert all(code != 101 for code in statuses.values()), statuses
    COUNTS["control messages"] += await control_pair(tenant)


# -- forged identity -----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_forged_authextra_authid_and_authrole_are_ignored_for_what_the_node_decides(make_tenant, mics_node):
    tenant = await make_tenant()
    other = await make_tenant()
    forged = {"device_id": "d1", "node_id": "evil-node", "tenant_id": other.tenant_id, "x_cb_node": "evil",
              "x_cb_peer": "tcp4:6.6.6.6:1", "heartbeat_timeout_s": 99999, "offline_ttl_s": 1}  # fmt: skip

    def join() -> list[Any]:
        ws = open_websocket(mics_node.port)
        try:
            return ws.join(tenant.tenant_id, ticket="tok-mallory", authid="backend", authextra=forged)
        finally:
            ws.close()

    welcome = await in_thread(join)
    extra = welcome[2]["authextra"]

    counted(1)
    assert welcome[0] == 2 and welcome[2]["authid"] == "mallory" and welcome[2]["authrole"] == "user"
    assert extra["node_id"] == mics_node.node_id and extra["tenant_id"] == tenant.tenant_id
    assert extra["heartbeat_timeout_s"] == 30 and extra["offline_ttl_s"] == 300
    assert extra["x_cb_node"] != "evil" and extra["x_cb_peer"].startswith("tcp4:127.0.0.1:")
    COUNTS["control messages"] += await control_pair(tenant)


# -- login throttling ----------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_wampcra_guessing_from_one_address_is_refused_while_other_addresses_log_in(make_tenant, mics_node):
    tenant = await make_tenant()
    guesser, neighbour = "127.0.0.77", "127.0.0.78"

    def login(address: str, secret: str, realm: str = tenant.tenant_id, authid: str = "backend") -> list[Any]:
        ws = RawWebSocket(mics_node.port, bind=address)
        try:
            assert ws.handshake() == 101
            return ws.join(realm, secret=secret, authid=authid)
        finally:
            ws.close()

    failed_before = metric(mics_node, "mics_login_throttle_total", outcome="failed")
    guesses = [await in_thread(login, guesser, f"guess-{n}-0123456789") for n in range(MAX_FAILURES)]
    right_secret_from_the_guesser = await in_thread(login, guesser, tenant.secret)
    admin_from_the_guesser = await in_thread(login, guesser, "anything", "mics.control", "admin")
    right_secret_next_door = await in_thread(login, neighbour, tenant.secret)
    started, more = time.monotonic(), 0
    while time.monotonic() - started < 1.0:  # what a guesser gets now: every try refused at HELLO
        assert (await in_thread(login, guesser, "guess"))[0] == 3
        more += 1

    counted(len(guesses) + 2 + more)
    assert all(g[0] == 3 and "signature is invalid" in g[1].get("message", "") for g in guesses), guesses
    for refused in (right_secret_from_the_guesser, admin_from_the_guesser):
        assert refused[0] == 3 and refused[2] == "wamp.error.not_authorized"
        assert "too many failed logins" in refused[1]["message"]
    assert right_secret_next_door[0] == 2 and right_secret_next_door[2]["authrole"] == "backend"
    assert metric(mics_node, "mics_login_throttle_total", outcome="failed") - failed_before == MAX_FAILURES
    session = await backend(mics_node.url, tenant.tenant_id, tenant.secret, "backend-still-welcome")
    await session.close()
    print(f"\nwampcra: {MAX_FAILURES} guesses, then {more} more attempts/s all refused at HELLO")
    COUNTS["control messages"] += await control_pair(tenant)


# -- slow consumers -------------------------------------------------------------------------------


@pytest_twisted.ensureDeferred
async def test_a_client_that_stops_reading_is_closed_as_slow_consumer_and_recovers_everything_by_sync(
    make_tenant, mics_node
):
    tenant = await make_tenant(max_user_message_qps=100_000)  # a burst from one user
    carol = await in_thread(open_websocket, mics_node.port, rcvbuf=4096, timeout=10)
    welcome = await in_thread(carol.join, tenant.tenant_id, ticket="tok-carol", device_id="slow")
    assert welcome[0] == 2
    await in_thread(carol.send, [32, 1, {}, "mics.inbox.carol"])
    assert (await in_thread(carol.recv))[0] == 33
    alice = await tenant.user("alice")
    rss_before = worker_rss(mics_node)
    body = "x" * 30_000

    acks = [await alice.call("mics.message.send", to_user_id="carol", body=body) for _ in range(400)]  # 12 MB
    deadline = time.monotonic() + 10  # carol has read nothing since she subscribed
    while not metric(mics_node, "mics_closes_total", tenant=tenant.tenant_id, reason="slow_consumer"):
        assert time.monotonic() < deadline, "the slow consumer was never closed"
        await sleep(0.2)
    rss_at_close = worker_rss(mics_node)

    def read_to_the_end() -> list[Any]:
        got: list[Any] = []
        try:
            while True:
                got.append(carol.recv(timeout=5))
        except (Closed, OSError):
            return got

    received = await in_thread(read_to_the_end)
    carol.close()
    goodbyes = [m for m in received if m[0] == 6]
    again = await tenant.user("carol", "slow")
    tail = await again.call("mics.inbox.sync", since_seq=len(acks) - 5)  # one sync result must fit a frame
    stats = (await tenant.admin.call("mics.admin.stats", tenant_id=tenant.tenant_id))["tenants"][tenant.tenant_id]
    await sleep(3)
    rss_after = worker_rss(mics_node)

    counted(1, frames=len(acks))
    held = stats["buffer_held_messages"]  # carol's 400 and alice's own copies
    lost = max(0, 2 * len(acks) - held)
    COUNTS["lost"] += lost
    print(f"\nslow consumer: {len(acks)} x 30 KB sent to a client that stopped reading; router worker RSS "
          f"{rss_before / 1e6:.1f} MB before, {rss_at_close / 1e6:.1f} MB at the close, {rss_after / 1e6:.1f} MB "
          f"after; {len(received)} messages read afterwards; {held} held for sync, {lost} lost")  # fmt: skip
    assert goodbyes and goodbyes[0][2] == "mics.close.slow_consumer" and goodbyes[0][1]["message"]
    assert [m["msg_id"] for m in tail["messages"]] == [a["msg_id"] for a in acks[-5:]] and tail["complete"]
    assert lost == 0 and tail["last_seq"] == len(acks)
    COUNTS["control messages"] += await control_pair(tenant)


def _close_code(ws: RawWebSocket, within: float = 3.0) -> int | None:
    """The code of the close frame the router sent within `within` s; None if it kept the connection."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            opcode, payload = ws.recv_frame(timeout=max(0.05, deadline - time.monotonic()))
        except TimeoutError:
            return None
        except (Closed, OSError):
            return 0  # dropped without a close frame
        if opcode == 8:
            return int.from_bytes(payload[:2], "big")
    return None


@pytest_twisted.ensureDeferred
async def test_incoming_messages_are_bounded_by_who_sends_them_before_anything_is_decoded(make_tenant, mics_node):
    """Anonymous: 64 KiB (a HELLO is small). A user: 4x the tenant's max_payload_bytes plus 64 KiB, so a
    body within the limit always fits however its client encodes it. A backend: the transport's 1 MiB."""
    tenant = await make_tenant(max_payload_bytes=1000)
    user_limit = user_message_limit(1000)

    def anonymous(size: int) -> int | None:
        ws = open_websocket(mics_node.port)
        try:
            ws.hello(tenant.tenant_id, "ticket", authextra={"device_id": "d1", "pad": "x" * size})
            return _close_code(ws)
        finally:
            ws.close()

    def user(pad: int, body: str = "hi") -> tuple[int | None, list[Any] | None]:
        ws = open_websocket(mics_node.port)
        try:
            assert ws.join(tenant.tenant_id, ticket="tok-alice", device_id=f"big-{pad}")[0] == 2
            kwargs: dict[str, Any] = {"to_user_id": "bob", "body": body, **({"pad": "x" * pad} if pad else {})}
            ws.send_frame(json.dumps([48, 7, {}, "mics.message.send", [], kwargs], ensure_ascii=True).encode())
            if pad:
                return _close_code(ws), None
            return None, ws.recv()
        finally:
            ws.close()

    def backend_call(pad: int) -> tuple[int | None, list[Any]]:
        ws = open_websocket(mics_node.port)
        try:
            assert ws.join(tenant.tenant_id, secret=tenant.secret, authid="backend-big")[0] == 2
            ws.call(9, "mics.ping", {"pad": "x" * pad})
            return None, ws.recv()  # answered: a close frame would raise Closed
        finally:
            ws.close()

    assert await in_thread(anonymous, 70_000) == 1009
    assert await in_thread(anonymous, 1_000) is None, "a small HELLO is answered (a challenge), not closed"
    # a body at the limit whose client escapes every character (an emoji is 12 bytes as \\ud83d\\ude00)
    code, reply = await in_thread(user, 0, "\U0001f600" * 249)
    assert code is None and reply is not None and reply[0] == 50, reply  # sent (held for bob)
    code, _ = await in_thread(user, user_limit + 1)
    assert code == 1009
    code, reply = await in_thread(backend_call, 300_000)
    assert code is None and reply[0] == 50, reply  # answered, not closed
    assert metric(mics_node, "mics_guard_closes_total", reason="message_too_large") >= 2
    counted(4, frames=4)
    COUNTS["control messages"] += await control_pair(tenant)
