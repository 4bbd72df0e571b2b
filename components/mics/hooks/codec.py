"""HTTP hook bodies (JSON / protobuf): the node uses the Python SDK's codec, so both sides share one code."""

from mics_client.hooks.codec import (
    JSON,
    PROTOBUF,
    decode_request,
    decode_response,
    dumps,
    encode_request,
    encode_response,
    message_from_proto,
    message_to_proto,
)

__all__ = [
    "JSON", "PROTOBUF", "decode_request", "decode_response", "dumps", "encode_request", "encode_response",
    "message_from_proto", "message_to_proto",
]  # fmt: skip
