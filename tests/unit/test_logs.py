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
