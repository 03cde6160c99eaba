"""`mailgate init` and `mailgate config ...` from the command line."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from mailgate.cli import main
from mailgate.config.keys import MANUAL_MISTYPED_GUID
from mailgate.config.presets import PRESETS
from tests.bounds import HANG

from .conftest import GUID

PASSWORD = "s3cret-Passw0rd"


def run(data_dir: Path, *args: str, stdin: str | None = None) -> Result:
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), *args], input=stdin)


@pytest.fixture
def ready(data_dir: Path) -> Path:
    assert run(data_dir, "init").exit_code == 0
    return data_dir


def test_help_lists_init_and_config() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "--data-dir" in result.output
    for name in ("init", "config"):
        assert name in result.output


def test_init_then_init_again(data_dir: Path) -> None:
    first = run(data_dir, "init")
    assert first.exit_code == 0, first.output
    assert f"Created the mailgate data directory {data_dir}" in first.output
    assert "secret.key (mode 0600)" in first.output
    assert stat.S_IMODE((data_dir / "secret.key").stat().st_mode) == 0o600
    digests = {p.name: hashlib.sha256(p.read_bytes()).digest() for p in data_dir.iterdir()}
    second = run(data_dir, "init")
    assert second.exit_code == 0
    assert "already exists; nothing was changed" in second.output
    assert {p.name: hashlib.sha256(p.read_bytes()).digest() for p in data_dir.iterdir()} == digests


def test_data_dir_from_environment(data_dir: Path) -> None:
    result = CliRunner().invoke(main, ["init"], env={"MAILGATE_DATA_DIR": str(data_dir)})
    assert result.exit_code == 0
    assert (data_dir / "mailgate.db").exists()


def test_commands_before_init_say_run_init(data_dir: Path) -> None:
    result = run(data_dir, "config", "show")
    assert result.exit_code == 1
    assert "Run `mailgate init`" in result.stderr


def test_provider_then_show_json(ready: Path) -> None:
    result = run(
        ready, "config", "provider", "exchange-online-21vianet", "--client-id", GUID.upper(),
        "--server", "127.0.0.1:2525", "--host", "127.0.0.1:4443",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert f"https://127.0.0.1:4443/common/adminconsent?client_id={GUID}" in result.output
    assert "mailgate login" in result.output
    shown = json.loads(run(ready, "config", "show", "--json").stdout)
    assert shown["provider"] == "exchange-online-21vianet"
    assert shown["oauth.client_id"] == GUID
    assert shown["oauth.scope"] == PRESETS["exchange-online-21vianet"].scope
    assert shown["smtp.server"] == ""
    assert shown["smtp.password"] == "(not set)"


def test_provider_without_client_id_says_what_next(ready: Path) -> None:
    result = run(ready, "config", "provider", "exchange-online")
    assert result.exit_code == 0
    assert "--client-id <GUID>" in result.output


@pytest.mark.parametrize(
    ("args", "why"),
    [
        (["config", "provider", "exchange-online", "--client-id", MANUAL_MISTYPED_GUID],
         "did you mean fad8cd81-a4a6-4e50-b186-5d84f6c275a5"),
        (["config", "provider", "exchange-online", "--scope", "https://partner.outlook.cn/SMTP.Send"],
         "https://outlook.office.com/SMTP.Send"),
        (["config", "provider", "gmail"], "gmail"),
        (["config", "set", "smtp.port", "25"], "Valid keys: provider, oauth.server"),
        (["config", "set", "smtp.server", "smtp://x"], "without a scheme"),
        (["config", "set", "oauth.client_id", GUID], "mailgate config provider NAME"),
        (["config", "set", "smtp.security"], "Missing argument"),
    ],
)  # fmt: skip
def test_usage_and_validation_errors_exit_2(ready: Path, args: list[str], why: str) -> None:
    result = run(ready, *args)
    assert result.exit_code == 2, result.output
    assert why in result.output


def test_password_from_stdin_is_never_shown(ready: Path) -> None:
    result = run(ready, "config", "set", "smtp.password", "-", stdin=PASSWORD + "\n")
    assert result.exit_code == 0
    assert "smtp.password = (set)" in result.output
    shown = run(ready, "config", "show")
    assert "(set)" in shown.output
    for output in (result.output, shown.output, run(ready, "config", "show", "--json").output):
        assert PASSWORD not in output
    assert PASSWORD.encode() not in (ready / "mailgate.db").read_bytes()


def test_password_on_the_command_line_warns(ready: Path) -> None:
    result = run(ready, "config", "set", "smtp.password", PASSWORD)
    assert result.exit_code == 0
    assert "shell history" in result.stderr
    assert PASSWORD not in result.output


def test_setting_the_server_switches_to_none(ready: Path) -> None:
    run(ready, "config", "provider", "exchange-online", "--client-id", GUID)
    result = run(ready, "config", "set", "smtp.server", "relay.example")
    assert result.exit_code == 0
    assert "provider = none" in result.output
    assert "only one SMTP server" in result.output
    shown = json.loads(run(ready, "config", "show", "--json").stdout)
    assert (shown["provider"], shown["smtp.server"]) == ("none", "relay.example:587")


def test_export_import(ready: Path, tmp_path: Path) -> None:
    run(ready, "config", "provider", "outlook-com", "--client-id", GUID)
    run(ready, "config", "set", "smtp.password", "-", stdin=PASSWORD + "\n")
    exported = run(ready, "config", "export")
    assert exported.exit_code == 0
    assert 'provider = "outlook-com"' in exported.stdout
    assert "Secrets are left out" in exported.stderr
    file = tmp_path / "settings.toml"
    assert run(ready, "config", "export", str(file)).exit_code == 0
    assert PASSWORD not in file.read_text()
    other = tmp_path / "other"
    run(other, "init")
    imported = run(other, "config", "import", str(file))
    assert imported.exit_code == 0, imported.output
    assert "Secrets are left out" in imported.output
    assert json.loads(run(other, "config", "show", "--json").stdout) == {
        **json.loads(run(ready, "config", "show", "--json").stdout),
        "smtp.password": "(not set)",
    }
    file.write_text('provider = "none"\n[smtp]\npassword = "x"\n')
    refused = run(other, "config", "import", str(file))
    assert refused.exit_code == 2
    assert "never exported or imported" in refused.stderr


def test_wrong_key_from_the_command_line(ready: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["--data-dir", str(ready), "config", "show"],
        env={"MAILGATE_SECRET_KEY": "q" * 43 + "="},
    )
    assert result.exit_code == 1
    assert "does not match this data directory" in result.stderr


def test_real_process_21vianet_against_simulator_addresses(tmp_path: Path) -> None:
    """What the issue's "done when" starts with, in real processes."""
    data_dir = tmp_path / "mg"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}

    def mailgate(*args: str) -> subprocess.CompletedProcess[str]:
        command = [sys.executable, "-m", "mailgate", "--data-dir", str(data_dir), *args]
        done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=HANG)
        assert done.returncode == 0, done.stderr
        return done

    mailgate("init")
    mailgate(
        "config", "provider", "exchange-online-21vianet", "--client-id", GUID,
        "--server", "127.0.0.1:2525", "--host", "127.0.0.1:4443",
    )  # fmt: skip
    shown = json.loads(mailgate("config", "show", "--json").stdout)
    assert shown["provider"] == "exchange-online-21vianet"
    assert shown["oauth.server"] == "127.0.0.1:2525"
    assert shown["oauth.host"] == "127.0.0.1:4443"
    assert (
        shown["oauth.scope"] == "https://partner.outlook.cn/SMTP.Send offline_access openid email"
    )
    assert shown["smtp.server"] == ""
