"""The systemd unit that runs `mailgate serve`, and the plan that installs it.

Theory of operation: `render_unit` turns a few facts (the mailgate executable, the service
user, the data directory, whether a port below 1024 is configured) into the unit text;
`install_plan` / `uninstall_plan` list what to do as data (write a file, run a command),
so a dry run prints exactly what a real run does and tests check the plan without a
systemd. commands/service.py carries the plan out.

The unit follows systemd.service(5), systemd.exec(5) and systemd.resource-control(5):
`Type=notify` with READY/STOPPING/WATCHDOG sent by serve (mailgate.notify), a restart on
failure, the data directory as `StateDirectory=` (created and owned by the service user),
and a sandbox where the only writable place is that directory. The capability bounding
set is empty unless a port below 1024 is configured; then it is CAP_NET_BIND_SERVICE
alone, given as an ambient capability (the process runs as the unprivileged user).
"""

from __future__ import annotations

import os
import shlex
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

UNIT_NAME = "mailgate.service"
UNIT_DIR = Path("/etc/systemd/system")
DEFAULT_USER = "mailgate"
DATA_DIR = Path("/var/lib/mailgate")
#: serve gives deliveries in flight 30 s after SIGTERM; the rest stays queued.
STOP_TIMEOUT = 45
#: systemd restarts serve when its event loop stops pinging for this long.
WATCHDOG_SEC = 60
#: Ports below this need CAP_NET_BIND_SERVICE (ip(7), net.ipv4.ip_unprivileged_port_start).
PRIVILEGED_PORTS = 1024


@dataclass(frozen=True)
class UnitOptions:
    executable: Path
    user: str = DEFAULT_USER
    data_dir: Path = DATA_DIR
    #: A listener or console port below 1024 is configured.
    low_ports: bool = False
    #: Extra arguments for `serve` (e.g. --listen), already split.
    serve_args: tuple[str, ...] = ()


def needs_low_ports(ports: Iterable[int | None]) -> bool:
    """True when any configured port (0 = any free port) is privileged."""
    return any(port is not None and 0 < port < PRIVILEGED_PORTS for port in ports)


def _state_directory(data_dir: Path) -> str | None:
    """StateDirectory= takes a path relative to /var/lib (systemd.exec(5))."""
    try:
        relative = data_dir.relative_to("/var/lib")
    except ValueError:
        return None
    return str(relative) if str(relative) != "." else None


def _protect_home(executable: Path) -> str:
    """ProtectHome=yes hides /home, /root and /run/user: read-only when mailgate lives there."""
    homes = (Path("/home"), Path("/root"), Path("/run/user"))
    return "read-only" if any(executable.is_relative_to(h) for h in homes) else "yes"


def _command(*args: str | Path) -> str:
    # systemd's ExecStart= quoting is close to the shell's for plain words (systemd.service(5)
    # "Command lines"); shlex.quote only quotes what needs it.
    return " ".join(shlex.quote(str(a)) for a in args)


def render_unit(opts: UnitOptions) -> str:
    """The unit file's text."""
    data = str(opts.data_dir)
    mailgate = (opts.executable, "--data-dir", data)
    state = _state_directory(opts.data_dir)
    caps = "CAP_NET_BIND_SERVICE" if opts.low_ports else ""
    lines = [
        "# Written by `mailgate service install`; run it again rather than editing this file",
        "# (or use `systemctl edit mailgate` for local additions).",
        "[Unit]",
        "Description=mailgate SMTP relay to Exchange Online / Outlook.com (OAuth 2.0)",
        "Wants=network-online.target",
        "After=network-online.target",
        "",
        "[Service]",
        "Type=notify",
        "NotifyAccess=main",
        f"User={opts.user}",
        f"Group={opts.user}",
        f"Environment=MAILGATE_DATA_DIR={data}",
        # init is idempotent: it creates the data directory and key on the first start only.
        f"ExecStartPre={_command(*mailgate, 'init')}",
        f"ExecStart={_command(*mailgate, 'serve', *opts.serve_args)}",
        "Restart=on-failure",
        "RestartSec=5s",
        f"TimeoutStopSec={STOP_TIMEOUT}s",
        f"WatchdogSec={WATCHDOG_SEC}s",
        "UMask=0077",
    ]
    if state is not None:
        lines += [f"StateDirectory={state}", "StateDirectoryMode=0700"]
    lines += [
        "# Sandbox (systemd.exec(5)): only the data directory is writable.",
        "ProtectSystem=strict",
        f"ReadWritePaths={data}",
        f"ProtectHome={_protect_home(opts.executable)}",
        "PrivateTmp=yes",
        "PrivateDevices=yes",
        "NoNewPrivileges=yes",
        f"CapabilityBoundingSet={caps}",
    ]
    if opts.low_ports:
        lines.append("AmbientCapabilities=CAP_NET_BIND_SERVICE")
    lines += [
        "ProtectKernelTunables=yes",
        "ProtectKernelModules=yes",
        "ProtectKernelLogs=yes",
        "ProtectControlGroups=yes",
        "ProtectClock=yes",
        "ProtectHostname=yes",
        "ProtectProc=invisible",
        "RestrictSUIDSGID=yes",
        "RestrictRealtime=yes",
        "RestrictNamespaces=yes",
        "LockPersonality=yes",
        "RemoveIPC=yes",
        # AF_NETLINK: glibc's getaddrinfo asks the kernel for the host's addresses with it.
        "RestrictAddressFamilies=AF_UNIX AF_INET AF_INET6 AF_NETLINK",
        "SystemCallArchitectures=native",
        "SystemCallFilter=@system-service",
        "SystemCallErrorNumber=EPERM",
        # No MemoryDenyWriteExecute=: cffi callbacks (argon2-cffi) may need W+X pages.
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


@dataclass(frozen=True)
class WriteFile:
    path: Path
    text: str
    mode: int = 0o644


@dataclass(frozen=True)
class RemoveFile:
    path: Path


@dataclass(frozen=True)
class Run:
    argv: tuple[str, ...]
    #: Why, for the dry run's listing.
    why: str = ""
    #: A failure is reported but does not stop the plan (e.g. stopping a unit not running).
    may_fail: bool = False


Step = WriteFile | RemoveFile | Run


@dataclass(frozen=True)
class Host:
    """What the plan depends on, read from the machine by commands/service.py."""

    #: The service user exists already.
    user_exists: bool
    #: systemd runs here (sd_booted(3): /run/systemd/system exists).
    systemd_running: bool
    root: Path = Path("/")
    missing_tools: frozenset[str] = field(default_factory=frozenset)


def unit_path(root: Path) -> Path:
    return root / UNIT_DIR.relative_to("/") / UNIT_NAME


def useradd_argv(user: str, data_dir: Path) -> tuple[str, ...]:
    """useradd(8): a system account with its own group, no login shell, no home created."""
    return (
        "useradd",
        "--system",
        "--user-group",
        "--home-dir",
        str(data_dir),
        "--no-create-home",
        "--shell",
        "/usr/sbin/nologin",
        "--comment",
        "mailgate SMTP relay",
        user,
    )


def install_plan(opts: UnitOptions, host: Host, start: bool = True) -> list[Step]:
    """Create the user if missing, write the unit, and (where systemd runs) enable and
    start it. Under a --root other than / nothing is run on this machine."""
    on_this_machine = host.root == Path("/")
    steps: list[Step] = []
    if not host.user_exists and on_this_machine:
        steps.append(Run(useradd_argv(opts.user, opts.data_dir), "create the service user"))
    steps.append(WriteFile(unit_path(host.root), render_unit(opts)))
    if host.systemd_running and on_this_machine:
        steps.append(Run(("systemctl", "daemon-reload"), "load the new unit"))
        enable = ("systemctl", "enable", "--now", UNIT_NAME) if start else ()
        steps.append(
            Run(enable or ("systemctl", "enable", UNIT_NAME), "start now and at every boot")
        )
    return steps


def uninstall_plan(host: Host) -> list[Step]:
    """Stop and disable the unit and remove its file; data and user stay (say so)."""
    on_this_machine = host.root == Path("/")
    steps: list[Step] = []
    if host.systemd_running and on_this_machine:
        steps.append(Run(("systemctl", "disable", "--now", UNIT_NAME), "stop it", may_fail=True))
    steps.append(RemoveFile(unit_path(host.root)))
    if host.systemd_running and on_this_machine:
        steps.append(Run(("systemctl", "daemon-reload"), "forget the unit"))
    return steps


def unreachable_dirs(
    executable: Path, stat_mode: Callable[[Path], int] = lambda p: p.stat().st_mode
) -> list[Path]:
    """Directories on the way to *executable* that another user cannot enter (no o+x).

    The service runs as its own user: an executable under /root or a 0700 home cannot
    start (pipx installs into ~/.local by default)."""
    blocked = []
    for parent in reversed(executable.parents):
        if not stat_mode(parent) & stat.S_IXOTH:
            blocked.append(parent)
    return blocked


def interpreter(first_line: bytes) -> Path | None:
    """The interpreter a script's `#!` line names (pip's console scripts have one)."""
    if not first_line.startswith(b"#!"):
        return None
    words = first_line[2:].strip().split()
    return Path(words[0].decode("utf-8", "replace")) if words else None


def systemd_running(root: Path = Path("/")) -> bool:
    """sd_booted(3): the system was booted with systemd when /run/systemd/system exists."""
    return os.path.isdir(root / "run/systemd/system")
