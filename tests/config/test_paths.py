"""Where the data directory is: --data-dir, MAILGATE_DATA_DIR, or the documented default."""

from __future__ import annotations

from pathlib import Path

import pytest

from mailgate.config.paths import CliState, default_data_dir, resolve_data_dir


@pytest.mark.parametrize(
    ("env", "as_root", "expected"),
    [
        ({}, True, Path("/var/lib/mailgate")),
        ({"XDG_DATA_HOME": "/srv/xdg"}, True, Path("/var/lib/mailgate")),
        ({"XDG_DATA_HOME": "/srv/xdg"}, False, Path("/srv/xdg/mailgate")),
        ({"XDG_DATA_HOME": "relative/xdg"}, False, Path.home() / ".local/share/mailgate"),
        ({}, False, Path.home() / ".local/share/mailgate"),
    ],
)
def test_default_data_dir(env: dict[str, str], as_root: bool, expected: Path) -> None:
    assert default_data_dir(env, as_root=as_root) == expected


def test_option_wins_over_environment(tmp_path: Path) -> None:
    env = {"MAILGATE_DATA_DIR": "/from/env", "XDG_DATA_HOME": "/srv/xdg"}
    assert resolve_data_dir(tmp_path / "opt", env) == tmp_path / "opt"
    assert resolve_data_dir(None, env) == Path("/from/env")
    assert resolve_data_dir("~/mg", {}) == Path.home() / "mg"
    assert resolve_data_dir("relative", {}) == Path.cwd() / "relative"


def test_cli_state_resolves_lazily(monkeypatch: pytest.MonkeyPatch) -> None:
    state = CliState()
    monkeypatch.setenv("MAILGATE_DATA_DIR", "/later")
    assert state.data_dir == Path("/later")
