"""The speedups rebind only the debug-formatting helpers, and only when debug logging is off."""

import txaio

from mics import speedups


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
