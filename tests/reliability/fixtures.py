"""Fixtures and measurements shared by the reliability and security tests.

They drive `mailgate serve` as a subprocess with the helpers of
tests/gateway/e2e_helpers.py: one simulator per module, one data directory per test
(copied from a configured template and signed in with the CLI).
"""

from __future__ import annotations

import os
import shutil
import smtplib
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from mailgate.config.store import Store
from mailgate.gateway.queue import Event, QueueStore
from mailgate.sim.server import SimulatorThread
from tests.bounds import SOCKET
from tests.gateway.e2e_helpers import DEVICE, Mailgate, Serve, mail

#: Seconds a fault is left in place while CPU time and log volume are measured.
FAULT_WINDOW = 3.0
#: CPU seconds serve may use in that window: a busy loop would use about all of it.
MAX_CPU_IN_WINDOW = 0.6
#: Log lines serve may write in that window.
MAX_LOG_LINES_IN_WINDOW = 8


@dataclass
class Wrapped(Mailgate):
    """`mailgate` with extra global options and an optional command prefix for `serve`
    (e.g. `unshare -m ...` to give it another /etc/resolv.conf)."""

    serve_prefix: list[str] = field(default_factory=list)
    serve_options: list[str] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        argv = super().argv(*args)
        if args and args[0] == "serve":
            at = argv.index("serve")
            return [*self.serve_prefix, *argv[:at], *self.serve_options, *argv[at:]]
        return argv


def signed_in_copy(template: Mailgate, sim: SimulatorThread, data_dir: Path) -> Wrapped:
    own = Wrapped(data_dir)
    shutil.copytree(template.data_dir, own.data_dir, dirs_exist_ok=True)
    own.login(sim)
    return own


@pytest.fixture
def mailgate(template: Mailgate, sim: SimulatorThread, tmp_path: Path) -> Wrapped:
    """This test's own data directory, signed in as scanner@contoso.com."""
    return signed_in_copy(template, sim, tmp_path / "data")


@pytest.fixture
def servers() -> Iterator[list[Serve]]:
    started: list[Serve] = []
    yield started
    for serve in started:
        if serve.process.poll() is None:
            serve.kill()


def start(mailgate: Mailgate, workdir: Path, servers: list[Serve]) -> Serve:
    serve = Serve.start(mailgate, workdir)
    servers.append(serve)
    return serve


def tokens(label: str, count: int) -> list[str]:
    run = uuid.uuid4().hex[:8]
    return [f"{label}-{run}-{i:03d}" for i in range(count)]


def send_all(port: int, subjects: list[str], timeout: float = SOCKET) -> None:
    """Several messages over one connection; each DATA must get 250."""
    with smtplib.SMTP("127.0.0.1", port, timeout=timeout) as client:
        client.ehlo("printer.local")
        for subject in subjects:
            client.sendmail(DEVICE, ["someone@fabrikam.com"], mail(subject))


def events(mailgate: Mailgate) -> list[Event]:
    with Store.open(mailgate.data_dir) as store:
        return QueueStore(store.engine).events(1000)


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
