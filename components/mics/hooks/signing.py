"""HMAC signatures for HTTP hook requests: the node uses the Python SDK's module, so both sides share one code."""

from mics_client.signing import (
    HEADER_NONCE,
    HEADER_SIGNATURE,
    HEADER_TENANT,
    HEADER_TIMESTAMP,
    MAX_SKEW_MS,
    SignatureError,
    SignatureVerifier,
    sign_headers,
    signature,
)

__all__ = [
    "HEADER_NONCE", "HEADER_SIGNATURE", "HEADER_TENANT", "HEADER_TIMESTAMP", "MAX_SKEW_MS", "SignatureError",
    "SignatureVerifier", "sign_headers", "signature",
]  # fmt: skip
