"""What every serializer can carry to every client (protocol.md section 4).

A value a client sends is held, then sent to other clients over JSON, msgpack or CBOR, live and
on every sync while it is held. A value one of them cannot carry would stop the recipient from
receiving or syncing (a lone surrogate, an integer out of msgpack's range, NaN for JSON, nesting
past a decoder's limit, a string JSON clients would take for base64 bytes), so it is refused at the
edge, once, before anything is held.
"""

from __future__ import annotations

import json
from typing import Any

import msgpack

MAX_DEPTH = 32
INT_MIN = -(2**63)
INT_MAX = 2**64 - 1
# Autobahn's JSON serializer sends bytes as a string "\x00" + base64, and turns every such string
# back into bytes: a *string* starting with NUL would reach JSON clients as (broken) bytes.
_BINARY_MARK = "\x00"

_encode_json = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode

# Every message must fit one WAMP message (the transport's 1 MiB) in every serializer, live and as
# its own sync page, with room for the rest of the event (ids, mentions, options). msgpack and CBOR
# carry a float in 9 bytes where compact JSON may need 4 ("1.0,"): a body can be 2.25x its JSON size
# there, so bodies whose JSON is over MAX_WIRE_BODY / 2.25 are measured in msgpack too.
MAX_WIRE_BODY = 1024 * 1024 - 96 * 1024
_BINARY_GROWTH = 2.25


class InvalidValue(ValueError):
    """The value can't be carried by every serializer; the message says why (safe to show)."""


def is_text(value: object) -> bool:
    """A string every serializer carries: valid Unicode (no lone surrogates), not NUL-led."""
    if not isinstance(value, str):
        return False
    if value.isascii():
        return not value.startswith(_BINARY_MARK)
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def body_size(body: Any, max_size: int | None = None) -> int:
    """Check a message body and return its encoded size: bytes as is, anything else as compact
    UTF-8 JSON. Raises InvalidValue for what some serializer or client can't carry.

    The size comes first, from the C encoder; a body over `max_size` is not walked (the caller
    refuses it as too large), so a big hostile frame costs the encode, not a Python walk."""
    if isinstance(body, bytes | bytearray):
        return len(body)
    if isinstance(body, str):
        if not is_text(body):
            raise InvalidValue("body is not valid Unicode text")
        return len(body.encode("utf-8")) + 2
    if isinstance(body, int) and not isinstance(body, bool) and not INT_MIN <= body <= INT_MAX:
        raise InvalidValue("body has an integer out of range")
    try:
        size = len(_encode_json(body).encode("utf-8"))
    except (ValueError, RecursionError):  # NaN/Infinity, a lone surrogate (UnicodeEncodeError), deep nesting
        raise InvalidValue("body has a value JSON can't carry (NaN, Infinity, invalid text or deep nesting)") from None
    except TypeError:
        raise InvalidValue("body is not a JSON value or bytes") from None
    if isinstance(body, dict | list) and (max_size is None or size <= max_size):
        _check_tree(body)
        if size * _BINARY_GROWTH > MAX_WIRE_BODY and len(msgpack.packb(body, use_bin_type=True)) > MAX_WIRE_BODY:
            raise InvalidValue(f"body is over {MAX_WIRE_BODY} bytes in msgpack/CBOR (numbers take more room there)")
    return size


def _check_tree(root: dict[str, Any] | list[Any]) -> None:
    """Depth, key types, integer range and NUL-led strings; the JSON encoder checks the rest."""
    stack: list[tuple[Any, int]] = [(root, 1)]
    pop, push = stack.pop, stack.append
    while stack:
        node, depth = pop()
        if depth > MAX_DEPTH:
            raise InvalidValue(f"body is nested more than {MAX_DEPTH} deep")
        if isinstance(node, dict):
            for key in node:
                if not isinstance(key, str):
                    raise InvalidValue("body has an object key that is not a string")
                if key.startswith(_BINARY_MARK):
                    raise InvalidValue("body has a string starting with NUL")
            values = node.values()
        else:
            values = node
        for value in values:
            kind = type(value)
            if kind is str:
                if value.startswith(_BINARY_MARK):
                    raise InvalidValue("body has a string starting with NUL")
            elif kind is dict or kind is list:
                push((value, depth + 1))
            elif kind is int:
                if not INT_MIN <= value <= INT_MAX:
                    raise InvalidValue("body has an integer out of range")
            elif isinstance(value, dict | list):  # subclasses: checked like their base
                push((value, depth + 1))
            elif isinstance(value, int) and not isinstance(value, bool) and not INT_MIN <= value <= INT_MAX:
                raise InvalidValue("body has an integer out of range")
