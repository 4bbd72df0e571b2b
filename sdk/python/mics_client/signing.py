"""HMAC signatures for HTTP hook requests (protocol.md section 5): the canonical module, re-exported by the node.

signature = lowercase hex HMAC-SHA256(UTF-8 tenant secret, timestamp + "." + nonce + "." + body)
Receivers refuse a timestamp more than five minutes off and a nonce they have seen before.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping

MAX_SKEW_MS = 5 * 60 * 1000

HEADER_TENANT = "X-Mics-Tenant"
HEADER_TIMESTAMP = "X-Mics-Timestamp"
HEADER_NONCE = "X-Mics-Nonce"
HEADER_SIGNATURE = "X-Mics-Signature"


def signature(secret: str, timestamp: str, nonce: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), digestmod=hashlib.sha256)
    mac.update(timestamp.encode("ascii") + b"." + nonce.encode("ascii") + b".")
    mac.update(body)
    return mac.hexdigest()


def sign_headers(tenant_id: str, secret: str, body: bytes, now_ms: int | None = None) -> dict[str, str]:
    """The four headers for one hook request."""
    timestamp = str(int(time.time() * 1000) if now_ms is None else now_ms)
    nonce = os.urandom(12).hex()
    return {
        HEADER_TENANT: tenant_id,
        HEADER_TIMESTAMP: timestamp,
        HEADER_NONCE: nonce,
        HEADER_SIGNATURE: signature(secret, timestamp, nonce, body),
    }


class SignatureError(ValueError):
    """The request's signature headers are missing, stale, replayed or wrong."""


class SignatureVerifier:
    """Checks signed hook requests; remembers nonces for the skew window to refuse replays."""

    def __init__(self, secret: str, clock: Callable[[], float] = time.time, max_nonces: int = 100_000) -> None:
        self._secret = secret
        self._clock = clock
        self._max_nonces = max_nonces
        self._nonces: OrderedDict[str, float] = OrderedDict()

    def verify(self, headers: Mapping[str, str], body: bytes) -> None:
        nonce = self.check_signature(headers, body)
        now = self._clock()
        self._forget_old(now)
        if nonce in self._nonces:
            raise SignatureError("nonce seen before")
        self._nonces[nonce] = now
        if len(self._nonces) > self._max_nonces:
            self._nonces.popitem(last=False)

    def check_signature(self, headers: Mapping[str, str], body: bytes) -> str:
        """Everything but the replay check: headers present, timestamp fresh, signature right.
        Returns the nonce, for a caller that remembers nonces elsewhere (e.g. shared by a cluster)."""
        lower = {k.lower(): v for k, v in headers.items()}
        timestamp = lower.get(HEADER_TIMESTAMP.lower())
        nonce = lower.get(HEADER_NONCE.lower())
        given = lower.get(HEADER_SIGNATURE.lower())
        if not timestamp or not nonce or not given:
            raise SignatureError("missing signature headers")
        if not (timestamp.isascii() and timestamp.isdigit() and nonce.isascii() and given.isascii()):
            raise SignatureError("malformed signature headers")  # (non-ASCII would break compare_digest)
        if abs(self._clock() * 1000 - int(timestamp)) > MAX_SKEW_MS:
            raise SignatureError("timestamp outside the 5 minute window")
        expected = signature(self._secret, timestamp, nonce, body)
        if not hmac.compare_digest(expected, given.lower()):
            raise SignatureError("signature mismatch")
        return nonce

    def _forget_old(self, now: float) -> None:
        horizon = now - 2 * MAX_SKEW_MS / 1000
        while self._nonces:
            nonce, seen = next(iter(self._nonces.items()))
            if seen >= horizon:
                break
            del self._nonces[nonce]
