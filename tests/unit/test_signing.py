"""Hook request signatures (protocol.md section 5): one module shared by the node and the hook SDK."""

from __future__ import annotations

import hashlib
import hmac

import pytest

import mics.hooks.signing as node_signing
from mics_client.signing import MAX_SKEW_MS, SignatureError, SignatureVerifier, sign_headers, signature

SECRET = "tenant-secret"
BODY = b'{"token":"t","device_id":"d1","tenant_id":"acme"}'
NOW = 1_800_000_000.0  # seconds, the verifier's clock


def signed(body: bytes = BODY, now_ms: int = int(NOW * 1000), secret: str = SECRET) -> dict[str, str]:
    return sign_headers("acme", secret, body, now_ms=now_ms)


def verifier() -> SignatureVerifier:
    return SignatureVerifier(SECRET, clock=lambda: NOW)


def test_the_signature_is_lowercase_hex_hmac_sha256_over_timestamp_nonce_and_body() -> None:
    expected = hmac.new(SECRET.encode(), b"1700000000000.abc." + BODY, hashlib.sha256).hexdigest()
    assert signature(SECRET, "1700000000000", "abc", BODY) == expected == expected.lower()


def test_sign_headers_names_the_tenant_and_signs_with_a_fresh_nonce() -> None:
    a, b = signed(), signed()
    assert a["X-Mics-Tenant"] == "acme" and a["X-Mics-Timestamp"] == str(int(NOW * 1000))
    assert a["X-Mics-Nonce"] != b["X-Mics-Nonce"]
    assert a["X-Mics-Signature"] == signature(SECRET, a["X-Mics-Timestamp"], a["X-Mics-Nonce"], BODY)


def test_a_correctly_signed_request_is_accepted_with_any_header_case() -> None:
    verifier().verify({k.lower(): v for k, v in signed().items()}, BODY)


@pytest.mark.parametrize("offset_ms", [MAX_SKEW_MS + 1, -(MAX_SKEW_MS + 1)])
def test_a_timestamp_more_than_five_minutes_off_is_refused(offset_ms: int) -> None:
    with pytest.raises(SignatureError, match="window"):
        verifier().verify(signed(now_ms=int(NOW * 1000) + offset_ms), BODY)


def test_a_timestamp_just_inside_the_window_is_accepted() -> None:
    verifier().verify(signed(now_ms=int(NOW * 1000) - MAX_SKEW_MS + 1), BODY)


def test_a_replayed_nonce_is_refused() -> None:
    v, headers = verifier(), signed()
    v.verify(headers, BODY)
    with pytest.raises(SignatureError, match="nonce"):
        v.verify(headers, BODY)


@pytest.mark.parametrize(
    "tamper",
    [
        lambda h, b: (h, b + b" "),
        lambda h, b: ({**h, "X-Mics-Timestamp": str(int(h["X-Mics-Timestamp"]) + 1)}, b),
        lambda h, b: ({**h, "X-Mics-Nonce": "other"}, b),
        lambda h, b: ({**h, "X-Mics-Signature": "0" * 64}, b),
    ],
    ids=["body", "timestamp", "nonce", "signature"],
)
def test_tampering_with_any_signed_part_is_refused(tamper) -> None:  # type: ignore[no-untyped-def]
    headers, body = tamper(signed(), BODY)
    with pytest.raises(SignatureError, match="mismatch"):
        verifier().verify(headers, body)


def test_a_request_signed_with_another_secret_is_refused() -> None:
    with pytest.raises(SignatureError, match="mismatch"):
        verifier().verify(signed(secret="another"), BODY)


@pytest.mark.parametrize("missing", ["X-Mics-Timestamp", "X-Mics-Nonce", "X-Mics-Signature"])
def test_missing_headers_are_refused(missing: str) -> None:
    headers = signed()
    del headers[missing]
    with pytest.raises(SignatureError, match="missing"):
        verifier().verify(headers, BODY)


def test_the_node_uses_the_sdk_module() -> None:
    assert node_signing.SignatureVerifier is SignatureVerifier and node_signing.signature is signature


@pytest.mark.parametrize(
    "header,value",
    [("X-Mics-Timestamp", "\u00b2" * 13), ("X-Mics-Signature", "\u00e9" * 64), ("X-Mics-Nonce", "n\u00e9")],
    ids=["unicode-digits", "non-ascii-signature", "non-ascii-nonce"],
)
def test_malformed_headers_are_refused_as_such_not_with_a_python_error(header: str, value: str) -> None:
    headers = {**signed(), header: value}
    with pytest.raises(SignatureError, match="malformed"):
        verifier().verify(headers, BODY)


def test_checking_a_signature_alone_returns_the_nonce_and_remembers_nothing() -> None:
    check = verifier()
    headers = signed()
    assert check.check_signature(headers, BODY) == headers["X-Mics-Nonce"]
    check.verify(headers, BODY)  # not seen before: check_signature left the replay check to its caller
