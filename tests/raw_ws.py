"""A raw WebSocket + WAMP(JSON) client on a plain socket, for tests that must misbehave.

Autobahn's client refuses to send what a hostile client sends (a frame that is not WAMP, a CALL
before HELLO, a JSON escape it would never write), and always reads what it is sent. This one
writes exactly the bytes a test gives it, reads only when asked, and can shrink its receive buffer
to stop the router's data at the router. Blocking with short timeouts: the node is another process.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
from typing import Any

from autobahn.wamp import auth

ROLES = {"caller": {}, "callee": {}, "publisher": {}, "subscriber": {}}


class Closed(Exception):
    """The router closed the connection (or reset it)."""


class RawWebSocket:
    def __init__(self, port: int, *, host: str = "127.0.0.1", bind: str | None = None, rcvbuf: int | None = None,
                 timeout: float = 5.0) -> None:  # fmt: skip
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:  # before connect, so the TCP window is negotiated small
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if bind is not None:
            self.sock.bind((bind, 0))
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.host, self.port = host, port
        self._buffer = b""

    # -- bytes ----------------------------------------------------------------------------------
    def send_raw(self, data: bytes) -> None:
        self.sock.sendall(data)

    def _read(self, n: int, timeout: float) -> bytes:
        self.sock.settimeout(timeout)
        while len(self._buffer) < n:
            try:
                chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            except ConnectionResetError:
                raise Closed("reset") from None
            if not chunk:
                raise Closed("eof")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def is_closed(self, timeout: float = 0.2) -> bool:
        """True when the router has closed the connection (reading until EOF/reset; data is discarded)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
        except (TimeoutError, BlockingIOError):
            return False
        except OSError:  # reset
            return True

    def closed_now(self) -> bool:
        """Without waiting: has the router closed the connection? (pending data is discarded)"""
        self.sock.setblocking(False)
        try:
            while True:
                if not self.sock.recv(65536):
                    return True
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:  # reset
            return True
        finally:
            self.sock.setblocking(True)

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    # -- WebSocket ------------------------------------------------------------------------------
    def request(self, protocol: str | None = "wamp.2.json", path: str = "/ws") -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        lines = [f"GET {path} HTTP/1.1", f"Host: {self.host}:{self.port}", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13"]  # fmt: skip
        if protocol:
            lines.append(f"Sec-WebSocket-Protocol: {protocol}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def handshake(self, protocol: str | None = "wamp.2.json", timeout: float = 5.0) -> int:
        """The opening handshake; returns the HTTP status (101 when upgraded)."""
        self.send_raw(self.request(protocol))
        head = b""
        while b"\r\n\r\n" not in head:
            head += self._read(1, timeout)
        return int(head.split(b" ", 2)[1])

    def send_frame(self, payload: bytes, opcode: int = 1, fin: bool = True, mask: bool = True) -> None:
        header = bytes([(0x80 if fin else 0) | opcode])
        size = len(payload)
        bit = 0x80 if mask else 0
        if size < 126:
            header += bytes([bit | size])
        elif size < 65536:
            header += bytes([bit | 126]) + struct.pack("!H", size)
        else:
            header += bytes([bit | 127]) + struct.pack("!Q", size)
        if mask:
            key = os.urandom(4)
            header += key
            payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload)) if size < 4096 else _mask(payload, key)
        self.send_raw(header + payload)

    def recv_frame(self, timeout: float = 5.0) -> tuple[int, bytes]:
        """(opcode, payload) of the next frame; pings are answered and skipped."""
        while True:
            b0, b1 = self._read(2, timeout)
            size = b1 & 0x7F
            if size == 126:
                size = struct.unpack("!H", self._read(2, timeout))[0]
            elif size == 127:
                size = struct.unpack("!Q", self._read(8, timeout))[0]
            payload = self._read(size, timeout)
            opcode = b0 & 0x0F
            if opcode == 9:
                self.send_frame(payload, opcode=10)
                continue
            return opcode, payload

    # -- WAMP (JSON) ----------------------------------------------------------------------------
    def send(self, message: list[Any] | str) -> None:
        """A WAMP message: a list (encoded as JSON) or JSON text written exactly as given."""
        text = message if isinstance(message, str) else json.dumps(message)
        self.send_frame(text.encode("utf-8", "surrogatepass"))

    def recv(self, timeout: float = 5.0) -> list[Any]:
        """The next WAMP message; raises Closed on a WebSocket close frame."""
        opcode, payload = self.recv_frame(timeout)
        if opcode == 8:
            raise Closed(f"close frame {payload[:2].hex()} {payload[2:].decode(errors='replace')}")
        return list(json.loads(payload))

    def hello(self, realm: str, authmethod: str, authid: str | None = None,
              authextra: dict[str, Any] | None = None, **details_extra: Any) -> None:  # fmt: skip
        details: dict[str, Any] = {"roles": ROLES, "authmethods": [authmethod], **details_extra}
        if authid is not None:
            details["authid"] = authid
        if authextra is not None:
            details["authextra"] = authextra
        self.send([1, realm, details])

    def join(self, realm: str, *, ticket: str | None = None, device_id: str | None = "d1",
             authid: str | None = None, secret: str | None = None, authextra: dict[str, Any] | None = None,
             **details: Any) -> list[Any]:  # fmt: skip
        """HELLO (with any more `details`), answer the challenge; returns WELCOME or ABORT as received."""
        if secret is not None:
            self.hello(realm, "wampcra", authid or "backend", authextra, **details)
        else:
            extra = {"device_id": device_id} if device_id is not None else {}
            self.hello(realm, "ticket", authid, {**extra, **(authextra or {})}, **details)
        reply = self.recv()
        if reply[0] == 4:  # CHALLENGE
            if reply[1] == "wampcra":
                signature = auth.compute_wcs(secret or "", reply[2]["challenge"]).decode("ascii")
            else:
                signature = ticket or ""
            self.send([5, signature, {}])
            reply = self.recv()
        return reply

    def call(self, request: int, procedure: str, kwargs: dict[str, Any] | None = None) -> None:
        self.send([48, request, {}, procedure, [], kwargs or {}])


def _mask(payload: bytes, key: bytes) -> bytes:
    """XOR a long payload with the 4-byte mask, at C speed."""
    repeated = (key * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(len(payload), "big")


def open_websocket(port: int, **kwargs: Any) -> RawWebSocket:
    ws = RawWebSocket(port, **kwargs)
    status = ws.handshake()
    assert status == 101, status
    return ws
