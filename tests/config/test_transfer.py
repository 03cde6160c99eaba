"""TOML export and import: escaping, round trip, secrets left out."""

from __future__ import annotations

import tomllib

import pytest

from mailgate.config.errors import ValidationError
from mailgate.config.keys import defaults
from mailgate.config.store import Store
from mailgate.config.transfer import export_toml, parse_toml, toml_string

from .conftest import GUID


@pytest.mark.parametrize(
    "text",
    [
        "",
        "plain",
        'say "hi"',
        "back\\slash",
        "tab\tnew\nline\r",
        "\x00\x1f\x7f",
        "ünï 中文 ✓",
        "#[x]=",
    ],
)
def test_toml_strings_read_back_unchanged(text: str) -> None:
    assert tomllib.loads(f"v = {toml_string(text)}")["v"] == text


def test_export_is_complete_and_parses_back() -> None:
    values = {**defaults(), "sender.allowed": ["a@contoso.com", 'q"uote@contoso.com']}
    text = export_toml(values, header="test\nnot a comment continuation")
    assert parse_toml(text, "export") == values
    assert "Secrets are left out" in text


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("provider = ", "is not valid TOML"),
        ("[oauth.extra]\nx = 1", "not a mailgate setting table"),
    ],
)
def test_bad_files(text: str, why: str) -> None:
    with pytest.raises(ValidationError, match=why):
        parse_toml(text, "f.toml")


def test_export_import_between_two_data_dirs(
    store: Store, tmp_path_factory: pytest.TempPathFactory
) -> None:
    store.apply_provider("outlook-com", client_id=GUID, server="127.0.0.1:2525")
    store.set("smtp.password", "never-exported")
    store.set("sender.policy", "allow-list")
    text = export_toml(store.values())
    assert "never-exported" not in text
    with Store.open(tmp_path_factory.mktemp("other") / "data", create=True) as other:
        other.import_settings(parse_toml(text, "export"))
        assert other.values() == store.values()
        assert other.secret("smtp.password") is None
