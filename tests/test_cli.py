"""The command line: placeholders refuse honestly, `sim --json` prints what it bound."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

from click.testing import CliRunner

from mailgate.cli import main
from tests.bounds import HANG

COMMANDS = [
    "init",
    "config",
    "serve",
    "login",
    "logout",
    "status",
    "send",
    "queue",
    "device",
    "doctor",
    "sim",
    "demo",
]


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_sim_json_prints_bound_ports_and_stops_on_sigterm() -> None:
    with subprocess.Popen(
        [sys.executable, "-m", "mailgate", "sim", "--profile", "21vianet", "--json"],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        _check_sim_json(process)


def _check_sim_json(process: subprocess.Popen[str]) -> None:
    try:
        assert process.stdout is not None
        info = json.loads(process.stdout.readline())
        assert info["profile"] == "21vianet"
        assert info["smtp_port"] > 0
        assert info["identity_platform"].startswith("https://127.0.0.1:")
        assert info["devicelogin"].endswith("/deviceloginchina")
        assert info["scope"] == "https://partner.outlook.cn/SMTP.Send offline_access openid email"
        assert os.path.exists(info["ca_file"])
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=HANG) == 0
