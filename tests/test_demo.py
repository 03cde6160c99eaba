"""The README's first command: the demo runs simulator and gateway, and mail goes through."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.bounds import HANG


@pytest.mark.parametrize("profile", ["global", "21vianet"])
def test_demo_signs_in_and_delivers(profile: str) -> None:
    upn = "scanner@contoso.com" if profile == "global" else "scanner@contoso.cn"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "mailgate", "demo", "--profile", profile),
            *("--auto-approve", upn, "--once", "--port", "0"),
        ],
        capture_output=True,
        text=True,
        timeout=HANG,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "https://microsoft.com/devicelogin" in out  # what a device shows (per cloud)
    assert "which the simulator plays at its own address: open" in out
    assert f"Signed in as {upn}" in out
    assert "A first message went device -> mailgate -> simulated Exchange" in out
    assert "deprecated" not in result.stderr
