"""The crash harness (scripts/crash_harness.py), short: 3 kill -9 rounds, 300 messages.
The long run (docs/RELIABILITY.md) is not part of the test suite."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.bounds import HANG
from tests.gateway.e2e_helpers import environment

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "crash_harness.py"


def test_three_kill_rounds_lose_nothing(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(SCRIPT), "--rounds", "3", "--messages", "300", "--json"],
        capture_output=True,
        text=True,
        env=environment(),
        timeout=3 * HANG,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["ok"] is True, figures
    assert figures["kills"] == figures["rounds"] == 3
    assert figures["lost"] == 0
    assert figures["unexplained_duplicates"] == 0
    assert figures["accepted"] >= 250, figures
    assert figures["delivered"] == figures["accepted"]
