"""The speedups rebind only the debug-formatting helpers, and only when debug logging is off; the C
JSON path decodes every frame exactly as Autobahn's own decoder does."""

import pytest
import txaio
from hypothesis import given, settings
from hypothesis import strategies as st

from mics.router import speedups


def test_formatting_helpers_are_skipped_above_debug(monkeypatch):
    import crossbar.router.router as router

    monkeypatch.setattr(txaio, "get_global_log_level", lambda: "info")
    for name in ("pformat", "hltype", "hlval"):  # undone after the test by monkeypatch
        monkeypatch.setattr(router, name, getattr(router, name))
    assert speedups.skip_debug_formatting() > 0
    assert router.pformat is speedups._pass_through and router.hltype is speedups._pass_through
    assert router.pformat({"allow": True}) == {"allow": True}


def test_nothing_changes_at_debug_level(monkeypatch):
    import crossbar.router.broker as broker

    monkeypatch.setattr(txaio, "get_global_log_level", lambda: "debug")
    before = broker.hltype
    assert speedups.skip_debug_formatting() == 0 and broker.hltype is before


# -- JSON frames decoded by C json.loads, with Autobahn's binary convention kept -----------------
_leaves = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text() | st.binary()
_values = st.recursive(
    _leaves, lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(), inner, max_size=5), max_leaves=30
)


def _autobahn() -> tuple[object, object, object]:
    """Autobahn's own JSON encoder and decoder, and ours over it (applied once per process)."""
    from autobahn.wamp import serializer

    speedups.decode_json_at_c_speed()
    return serializer._dumps, serializer._loads.original, serializer._loads


def _outcome(decode: object, frame: str) -> tuple[str, object]:
    try:
        return "value", decode(frame)  # type: ignore[operator]
    except Exception as e:  # a text string starting with NUL is not valid base64 for either
        return "error", type(e)


@settings(max_examples=300, deadline=None)
@given(message=st.lists(_values, min_size=1, max_size=6))
def test_the_c_path_decodes_every_frame_exactly_as_autobahn_does(message):
    dumps, original, fast = _autobahn()
    frame = dumps(message)
    assert _outcome(fast, frame) == _outcome(original, frame)


@pytest.mark.parametrize(
    "frame",
    [
        '[16, 1, {}, "t", ["\\u0000AQID"], {"k": "\\u0000AQID", "\\u0000key": ["\\u0000"]}]',  # bytes, a key, empty
        '[1, "\\\\u0000 is text, not an escape", {}]',  # an escaped backslash before u0000
        '[1, "a\\u0000b", {}]',  # NUL inside a string: text
        '"\\u0000AQID"',  # a bare top-level binary string
    ],
)
def test_binary_strings_become_bytes_and_everything_else_stays(frame):
    _, original, fast = _autobahn()
    assert fast(frame) == original(frame)


def test_invalid_base64_after_a_nul_is_refused_as_autobahn_refuses_it():
    _, original, fast = _autobahn()
    frame = '[1, "\\u0000not base64!", {}]'
    assert _outcome(fast, frame)[0] == "error" and _outcome(fast, frame) == _outcome(original, frame)
