"""The systemd unit and the install plan: what is written and run, and that systemd itself
accepts the unit (`systemd-analyze verify`)."""

from __future__ import annotations

import shutil
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailgate.cli import main
from mailgate.install.systemd import (
    Host,
    RemoveFile,
    Run,
    UnitOptions,
    WriteFile,
    install_plan,
    interpreter,
    needs_low_ports,
    render_unit,
    uninstall_plan,
    unreachable_dirs,
)
from tests.bounds import HANG

#: The real program of this venv: systemd-analyze verify checks that ExecStart exists.
MAILGATE = Path(sys.executable).with_name("mailgate")


def _directives(unit: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            found.setdefault(key, []).append(value)
    return found


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        ([2525, 8025], False),
        ([2525, None, 8025], False),
        ([25, 8025], True),
        ([2525, 465, 8025], True),
        ([2525, 80], True),
        ([0, 8025], False),  # port 0: any free port, never a privileged one
        ([1024], False),
        ([1023], True),
    ],
)
def test_needs_low_ports(ports: list[int | None], expected: bool) -> None:
    assert needs_low_ports(ports) is expected


def test_unit_runs_serve_as_its_user_with_notify_and_hardening() -> None:
    d = _directives(render_unit(UnitOptions(Path("/opt/mailgate/bin/mailgate"))))
    assert d["Type"] == ["notify"]
    assert d["User"] == ["mailgate"]
    assert d["ExecStart"] == ["/opt/mailgate/bin/mailgate --data-dir /var/lib/mailgate serve"]
    assert d["ExecStartPre"] == ["/opt/mailgate/bin/mailgate --data-dir /var/lib/mailgate init"]
    assert d["Restart"] == ["on-failure"]
    assert d["WatchdogSec"] == ["60s"]
    assert d["StateDirectory"] == ["mailgate"]
    assert d["ProtectSystem"] == ["strict"]
    assert d["ReadWritePaths"] == ["/var/lib/mailgate"]
    assert d["NoNewPrivileges"] == ["yes"]
    assert d["PrivateTmp"] == ["yes"]
    assert d["ProtectHome"] == ["yes"]
    assert d["CapabilityBoundingSet"] == [""]
    assert "AmbientCapabilities" not in d


def test_a_low_port_gets_only_net_bind_service() -> None:
    d = _directives(render_unit(UnitOptions(Path("/usr/bin/mailgate"), low_ports=True)))
    assert d["CapabilityBoundingSet"] == ["CAP_NET_BIND_SERVICE"]
    assert d["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]


@pytest.mark.parametrize(
    ("executable", "protect_home"),
    [
        ("/opt/mailgate/bin/mailgate", "yes"),
        ("/home/admin/.local/bin/mailgate", "read-only"),
        ("/root/venv/bin/mailgate", "read-only"),
    ],
)
def test_protect_home_keeps_the_program_visible(executable: str, protect_home: str) -> None:
    d = _directives(render_unit(UnitOptions(Path(executable))))
    assert d["ProtectHome"] == [protect_home]


def test_another_data_dir_is_the_writable_path() -> None:
    opts = UnitOptions(Path("/usr/bin/mailgate"), data_dir=Path("/srv/mail gate"))
    d = _directives(render_unit(opts))
    assert d["ReadWritePaths"] == ["/srv/mail gate"]
    assert d["ExecStart"] == ["/usr/bin/mailgate --data-dir '/srv/mail gate' serve"]
    assert "StateDirectory" not in d  # only for directories under /var/lib


OPTS = UnitOptions(Path("/usr/bin/mailgate"))


def test_install_plan_creates_the_user_then_starts() -> None:
    steps = install_plan(OPTS, Host(user_exists=False, systemd_running=True))
    assert isinstance(steps[0], Run)
    assert steps[0].argv[:2] == ("useradd", "--system")
    assert steps[0].argv[-1] == "mailgate"
    assert isinstance(steps[1], WriteFile)
    assert steps[1].path == Path("/etc/systemd/system/mailgate.service")
    assert [s.argv for s in steps[2:] if isinstance(s, Run)] == [
        ("systemctl", "daemon-reload"),
        ("systemctl", "enable", "--now", "mailgate.service"),
    ]


@pytest.mark.parametrize(
    ("host", "start", "runs"),
    [
        (
            Host(True, True),
            True,
            [("systemctl", "daemon-reload"), ("systemctl", "enable", "--now", "mailgate.service")],
        ),
        (
            Host(True, True),
            False,
            [("systemctl", "daemon-reload"), ("systemctl", "enable", "mailgate.service")],
        ),
        (Host(True, False), True, []),  # no systemd here: write the unit only
        (Host(False, True, Path("/tmp/image")), True, []),  # --root: nothing runs here
    ],
)
def test_install_plan_runs(host: Host, start: bool, runs: list[tuple[str, ...]]) -> None:
    steps = install_plan(OPTS, host, start)
    assert [s.argv for s in steps if isinstance(s, Run)] == runs
    (write,) = [s for s in steps if isinstance(s, WriteFile)]
    assert write.path == host.root / "etc/systemd/system/mailgate.service"


def test_uninstall_plan_keeps_data() -> None:
    steps = uninstall_plan(Host(True, True))
    assert isinstance(steps[0], Run)
    assert steps[0].argv == ("systemctl", "disable", "--now", "mailgate.service")
    assert steps[1] == RemoveFile(Path("/etc/systemd/system/mailgate.service"))
    assert all("/var/lib" not in str(s) for s in steps)


def test_unreachable_dirs() -> None:
    modes = {
        Path("/"): 0o755,
        Path("/root"): 0o700,
        Path("/root/.local"): 0o755,
        Path("/root/.local/bin"): 0o755,
    }
    blocked = unreachable_dirs(Path("/root/.local/bin/mailgate"), lambda p: modes[p])
    assert blocked == [Path("/root")]
    modes[Path("/root")] = 0o711
    assert unreachable_dirs(Path("/root/.local/bin/mailgate"), lambda p: modes[p]) == []


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    if shutil.which("systemd-analyze") is None:
        pytest.fail("systemd-analyze is missing: `python3 dev.py test` installs systemd")
    return subprocess.run(
        ["systemd-analyze", "verify", str(unit)],
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
    )


@pytest.mark.parametrize("low_ports", [False, True])
def test_installed_unit_verifies(tmp_path: Path, low_ports: bool) -> None:
    args = ["service", "install", "--root", str(tmp_path), "--executable", str(MAILGATE)]
    result = CliRunner().invoke(main, args + (["--low-ports"] if low_ports else []))
    assert result.exit_code == 0, result.output
    unit = tmp_path / "etc/systemd/system/mailgate.service"
    assert stat.S_IMODE(unit.stat().st_mode) == 0o644
    verified = _verify(unit)
    # verify exits 0 with warnings about unknown keys: nothing may be printed at all.
    assert (verified.returncode, verified.stdout, verified.stderr) == (0, "", "")


def test_verify_catches_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: a missing program and a misspelt key are reported."""
    text = render_unit(UnitOptions(tmp_path / "missing" / "mailgate"))
    unit = tmp_path / "mailgate.service"
    unit.write_text(text.replace("ProtectClock=", "ProtectClok="))
    verified = _verify(unit)
    assert verified.returncode != 0
    assert "ProtectClok" in verified.stderr
    assert "is not executable" in verified.stderr


def test_dry_run_changes_nothing_and_says_what_it_would_do(tmp_path: Path) -> None:
    args = ["service", "install", "--root", str(tmp_path), "--dry-run"]
    result = CliRunner().invoke(main, [*args, "--executable", str(MAILGATE)])
    assert result.exit_code == 0, result.output
    assert f"would write {tmp_path}/etc/systemd/system/mailgate.service" in result.output
    assert list(tmp_path.iterdir()) == []


def test_uninstall_removes_the_unit(tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["service", "install", "--root", str(tmp_path), "--executable", str(MAILGATE)]
    assert runner.invoke(main, base).exit_code == 0
    unit = tmp_path / "etc/systemd/system/mailgate.service"
    assert unit.exists()
    result = runner.invoke(main, ["service", "uninstall", "--root", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert not unit.exists()
    assert "are kept" in result.output


def test_configured_low_port_grants_the_capability(tmp_path: Path) -> None:
    data = tmp_path / "data"
    runner = CliRunner()
    assert runner.invoke(main, ["--data-dir", str(data), "init"]).exit_code == 0
    set_port = ["--data-dir", str(data), "config", "set", "listener.port", "25"]
    assert runner.invoke(main, set_port).exit_code == 0
    root = tmp_path / "root"
    args = ["--data-dir", str(data), "service", "install", "--root", str(root)]
    result = runner.invoke(main, [*args, "--executable", str(MAILGATE)])
    assert result.exit_code == 0, result.output
    d = _directives((root / "etc/systemd/system/mailgate.service").read_text())
    assert d["AmbientCapabilities"] == ["CAP_NET_BIND_SERVICE"]
    assert d["ReadWritePaths"] == [str(data)]


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (b"#!/opt/mailgate/bin/python\n", Path("/opt/mailgate/bin/python")),
        (b"#! /usr/bin/python3 -I\n", Path("/usr/bin/python3")),
        (b"#!\n", None),
        (b"\x7fELF\x02\x01", None),
    ],
)
def test_interpreter(line: bytes, expected: Path | None) -> None:
    assert interpreter(line) == expected


def test_install_refuses_a_program_the_service_user_cannot_reach(tmp_path: Path) -> None:
    """A venv whose Python sits in a 0700 directory (pyenv or pipx under /root) would fail
    at every start; install says so before writing anything, though the script itself is
    where anyone can run it."""
    closed = tmp_path / "closed"  # tmp_path's parents are 0700 too
    closed.mkdir(mode=0o700)
    (closed / "python").write_text("")  # never run: install only checks the way to it
    open_dir = Path(tempfile.mkdtemp(prefix="mailgate-test-", dir="/tmp"))
    try:
        open_dir.chmod(0o755)
        script = open_dir / "mailgate"
        script.write_text(f"#!{closed / 'python'}\n")
        script.chmod(0o755)
        args = ["service", "install", "--dry-run", "--executable", str(script)]
        result = CliRunner().invoke(main, args)
    finally:
        shutil.rmtree(open_dir)
    assert result.exit_code == 1, result.output
    assert f"could not run {closed / 'python'}" in result.output
    assert "/usr/bin/python3" in result.output


def test_serve_refused_a_low_port_says_how_to_grant_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """bind(2) EACCES (port < 1024 without the capability) is not "port in use"."""
    import mailgate.service

    async def refused(*_args: object, **_kwargs: object) -> None:
        raise PermissionError(13, "Permission denied")

    data = ["--data-dir", str(tmp_path / "data")]
    runner = CliRunner()
    assert runner.invoke(main, [*data, "init"]).exit_code == 0
    monkeypatch.setattr(mailgate.service, "serve", refused)
    result = runner.invoke(main, [*data, "serve", "--listen", "127.0.0.1:25", "--no-console"])
    assert result.exit_code == 1, result.output
    assert "`mailgate service install` again" in result.output
    assert "CAP_NET_BIND_SERVICE" in result.output
