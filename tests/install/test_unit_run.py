"""The generated unit's own commands, run the way systemd runs them, minus systemd.

These machines run no systemd, so this is the nearest honest check of "the unit starts
serve as its own user": mailgate is installed as an administrator would (a venv made with
Debian's /usr/bin/python3 in a directory every user can enter), `service install --root`
writes the unit, and its ExecStartPre= and ExecStart= lines run with its Environment= as
an unprivileged user (`nobody`, standing in for the `mailgate` user useradd would create)
in a data directory that user owns (what StateDirectory= sets up). serve must say READY
to the notify socket, own every file it writes, and stop on SIGTERM with STOPPING. The
sandbox directives themselves (ProtectSystem= and the rest) are not exercised here.
"""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailgate.cli import main
from tests.bounds import HANG

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
SYSTEM_PYTHON = Path("/usr/bin/python3")
#: pip fetches the dependencies from PyPI (or the machine's configured index).
INSTALL_TIMEOUT = 5 * HANG


@pytest.fixture(scope="module")
def open_dir() -> Iterator[Path]:
    """A directory every user can enter (pytest's tmp_path is under a 0700 one)."""
    if os.geteuid() != 0:
        pytest.skip("needs root: it runs the unit's commands as another user")
    if not SYSTEM_PYTHON.exists() or shutil.which("setpriv") is None:
        pytest.fail("needs /usr/bin/python3 and setpriv: `python3 dev.py test` installs them")
    path = Path(tempfile.mkdtemp(prefix="mailgate-unit-", dir="/tmp"))
    path.chmod(0o755)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def program(open_dir: Path) -> Path:
    """mailgate installed from this source tree into a venv of Debian's Python."""
    venv = open_dir / "venv"
    subprocess.run([str(SYSTEM_PYTHON), "-m", "venv", str(venv)], check=True, timeout=HANG)
    pip = [str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check"]
    done = subprocess.run(
        [*pip, str(ROOT)], capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=False
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return venv / "bin" / "mailgate"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _directive(unit: str, key: str) -> str:
    (value,) = [line.split("=", 1)[1] for line in unit.splitlines() if line.startswith(key + "=")]
    return value


def test_unit_commands_start_serve_as_an_unprivileged_user(open_dir: Path, program: Path) -> None:
    nobody = pwd.getpwnam("nobody")
    data = open_dir / "data"
    unit_root = open_dir / "root"
    runner = CliRunner()
    args = ["--data-dir", str(data), "service", "install", "--root", str(unit_root)]
    result = runner.invoke(main, [*args, "--executable", str(program)])
    assert result.exit_code == 0, result.output
    unit = (unit_root / "etc/systemd/system/mailgate.service").read_text()

    # What StateDirectory= does before the first start: the directory, owned by the user.
    data.mkdir(mode=0o700)
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    notify_path = open_dir / "notify.sock"
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify.bind(str(notify_path))
    notify_path.chmod(0o777)
    variable, _, value = _directive(unit, "Environment").partition("=")
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        variable: value,
        "NOTIFY_SOCKET": str(notify_path),
        "WATCHDOG_USEC": "1000000",
        "JOURNAL_STREAM": "",
    }
    as_user = [
        "setpriv",
        f"--reuid={nobody.pw_uid}",
        f"--regid={nobody.pw_gid}",
        "--clear-groups",
        "--",
    ]
    pre = shlex.split(_directive(unit, "ExecStartPre"))
    first = subprocess.run(
        [*as_user, *pre], env=env, capture_output=True, text=True, timeout=HANG, check=False
    )
    assert first.returncode == 0, first.stderr
    # Ports of our own: the defaults (2525, 8025) may be in use on a shared machine.
    for key, port in (("listener.port", _free_port()), ("console.port", _free_port())):
        set_port = [*pre[:-1], "config", "set", key, str(port)]
        done = subprocess.run([*as_user, *set_port], env=env, capture_output=True, check=False)
        assert done.returncode == 0, done.stderr

    log_path = open_dir / "serve.log"
    with log_path.open("wb") as log:
        serve = subprocess.Popen(
            [*as_user, *shlex.split(_directive(unit, "ExecStart"))],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        seen = _until(notify, "READY=1", serve, log_path)
        assert any("STATUS=listening on 0.0.0.0:" in d for d in seen), seen
        owners = {p.stat().st_uid for p in data.rglob("*")}
        assert owners == {nobody.pw_uid}, owners
        serve.send_signal(signal.SIGTERM)
        _until(notify, "STOPPING=1", serve, log_path)
        assert serve.wait(HANG) == 0, log_path.read_text()
    finally:
        if serve.poll() is None:
            serve.kill()
            serve.wait()
        notify.close()


def _until(
    sock: socket.socket, wanted: str, process: subprocess.Popen[bytes], log: Path
) -> list[str]:
    """Datagrams up to the first containing *wanted*; fails if serve exits first."""
    seen: list[str] = []
    deadline = time.monotonic() + HANG
    sock.settimeout(1.0)
    while not any(wanted in d for d in seen):
        if time.monotonic() > deadline or (process.poll() is not None and wanted != "STOPPING=1"):
            raise AssertionError(f"no {wanted}; got {seen}\n{log.read_text()}")
        try:
            seen.append(sock.recv(4096).decode())
        except TimeoutError:
            continue
    return seen
