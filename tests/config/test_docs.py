"""Every setting is documented: docs/SETTINGS.md carries the table generated from KEYS."""

from __future__ import annotations

from pathlib import Path

from mailgate.config.keys import markdown_table

DOC = Path(__file__).resolve().parents[2] / "docs" / "SETTINGS.md"


def test_settings_reference_is_current() -> None:
    assert markdown_table() in DOC.read_text(encoding="utf-8"), (
        "docs/SETTINGS.md is out of date: replace its table with "
        "mailgate.config.keys.markdown_table()"
    )
