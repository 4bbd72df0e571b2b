"""JSON log lines from Crossbar's text lines (MICS_LOG_FORMAT=json)."""

from mics.logs import line_to_record


def test_worker_line_becomes_a_record_with_its_key_value_fields():
    line = "[Router   4242] check-message hook unavailable, message allowed: tenant_id=acme cause=timeout msg_id=01ab"
    record = line_to_record(line, "warn", "node-1", now=0)
    assert record == {
        "ts": "1970-01-01T00:00:00Z", "level": "warn", "node_id": "node-1", "process": "router", "pid": 4242,
        "message": "check-message hook unavailable, message allowed: tenant_id=acme cause=timeout msg_id=01ab",
        "tenant_id": "acme", "cause": "timeout", "msg_id": "01ab",
    }  # fmt: skip


def test_fields_cannot_overwrite_the_records_own_keys():
    record = line_to_record("[Controller 1] level=debug node_id=evil", "info", "node-1", now=0)
    assert record["level"] == "info" and record["node_id"] == "node-1"


def test_lines_without_a_process_prefix_are_kept_whole():
    record = line_to_record("Traceback (most recent call last):", "warn", "n", now=0)
    assert record["message"] == "Traceback (most recent call last):" and "process" not in record


def test_the_level_crossbar_run_puts_in_the_prefix_wins_over_the_streams_guess():
    record = line_to_record("[Router   4242 error] tenant config in Redis refused: tenant_id=acme", "warn", "n", now=0)
    assert record["level"] == "error" and record["process"] == "router" and record["pid"] == 4242
    assert record["message"] == "tenant config in Redis refused: tenant_id=acme" and record["tenant_id"] == "acme"


def test_crossbar_run_names_each_events_level_after_its_system():
    from twisted.logger import LogLevel

    from mics.router.run import with_level

    seen: list[dict] = []
    make = with_level(lambda **_kw: seen.append)
    observe = make(format="syslogd")
    observe({"log_system": "Router   4242", "log_level": LogLevel.error, "log_format": "x"})
    observe({"log_system": "-", "log_level": LogLevel.warn, "log_format": "y"})
    assert seen[0]["log_system"] == "Router   4242 error"
    assert seen[1]["log_system"].startswith("Controller ") and seen[1]["log_system"].endswith(" warn")
