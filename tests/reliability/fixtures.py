"""Measurements of the reliability tests: how quiet `serve` stays while a fault lasts.

The fixtures that drive `serve` (one simulator per module, one signed-in data directory
per test) are those of tests/gateway/e2e_helpers.py.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from tests.gateway.e2e_helpers import Serve

#: Seconds a fault is left in place while CPU time and log volume are measured.
FAULT_WINDOW = 3.0
#: CPU seconds serve may use in that window: a busy loop would use about all of it.
MAX_CPU_IN_WINDOW = 0.6
#: Log lines serve may write in that window.
MAX_LOG_LINES_IN_WINDOW = 8


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process, all its threads (proc(5): fields 14 and 15)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Quiet:
    cpu: float
    log_lines: int


def measure_quiet(serve: Serve, seconds: float = FAULT_WINDOW) -> Quiet:
    """CPU seconds and log lines of *serve* over *seconds* while a fault lasts."""
    cpu, lines = cpu_seconds(serve.process.pid), serve.log_lines()
    time.sleep(seconds)
    return Quiet(cpu_seconds(serve.process.pid) - cpu, serve.log_lines() - lines)


def assert_quiet(quiet: Quiet, serve: Serve) -> None:
    assert quiet.cpu <= MAX_CPU_IN_WINDOW, (quiet, serve.log()[-3000:])
    assert quiet.log_lines <= MAX_LOG_LINES_IN_WINDOW, (quiet, serve.log()[-3000:])
