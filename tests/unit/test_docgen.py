"""The committed docs carry the error and tenant config tables the code would generate today."""

from pathlib import Path

import pytest

from mics import docgen, errors
from mics.config import AGENT_SCHEMA, NODE_SCHEMA, NOT_OVERRIDABLE, TENANT_SCHEMA

ROOT = Path(__file__).resolve().parents[2]


def test_the_committed_docs_are_current_with_the_code():
    assert docgen.stale(ROOT) == [], "run scripts/gen-docs and commit the docs"


def test_every_reason_and_config_field_appears_in_the_docs():
    protocol = (ROOT / "docs/protocol.md").read_text()
    tenants = (ROOT / "docs/tenants.md").read_text()
    reasons = [*errors.JOIN_REASONS, *errors.CLOSE_REASONS, *errors.CALL_REASONS]
    for reason in [*reasons, errors.INVALID_CONFIG, errors.NOT_FOUND, errors.NOT_AUTHORIZED]:
        assert f"| `{reason.uri}` | {reason.code} |" in protocol
    for name in TENANT_SCHEMA:
        row = next(line for line in tenants.splitlines() if line.startswith(f"| `{name}` |"))
        assert row.split(" | ")[3] == ("no" if name in NOT_OVERRIDABLE else "yes")


def test_every_agent_field_and_node_setting_appears_with_its_default():
    tenants = (ROOT / "docs/tenants.md").read_text()
    operations = (ROOT / "docs/operations.md").read_text()
    for name, spec in AGENT_SCHEMA.items():
        row = next(line for line in tenants.splitlines() if line.startswith(f"| `{name}` |"))
        assert row.split(" | ")[1] == docgen._default(spec)
    for name, spec in NODE_SCHEMA.items():
        rows = [line for line in operations.splitlines() if f" | `{name}` | " in line]
        assert len(rows) == (0 if spec.internal else 1), name
        if rows:
            env = rows[0].split(" | ")[0].removeprefix("| ")
            assert env == (f"`{spec.env}`" if spec.env else "—")
    assert "| `30000` |" in tenants and "| `8080` |" in operations


def test_a_stale_section_is_rewritten_and_the_prose_around_it_kept(tmp_path):
    sections = {"call-errors": docgen.SECTIONS["docs/protocol.md"]["call-errors"]}
    text = "intro\n<!-- BEGIN GENERATED: call-errors -->\nold table\n<!-- END GENERATED: call-errors -->\noutro\n"
    fresh = docgen.render(text, sections)
    assert fresh.startswith("intro\n<!-- BEGIN GENERATED: call-errors -->\n")
    assert fresh.endswith("<!-- END GENERATED: call-errors -->\noutro\n")
    assert "old table" not in fresh and "`mics.error.rate_limited` | 429 |" in fresh
    assert docgen.render(fresh, sections) == fresh


def test_check_mode_fails_on_a_stale_doc_and_write_mode_fixes_it(tmp_path):
    for rel in docgen.SECTIONS:
        target = tmp_path / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((ROOT / rel).read_text().replace("| 4429 |", "| 9999 |"))
    assert docgen.main(["--check", "--root", str(tmp_path)]) == 1
    assert docgen.main(["--root", str(tmp_path)]) == 0
    assert docgen.main(["--check", "--root", str(tmp_path)]) == 0
    assert "| 4429 |" in (tmp_path / "docs/protocol.md").read_text()


def test_a_doc_without_its_markers_is_an_error():
    with pytest.raises(docgen.DocError, match="tenant-config"):
        docgen.render("no markers here", docgen.SECTIONS["docs/tenants.md"], "docs/tenants.md")
