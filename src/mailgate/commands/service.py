"""`mailgate service install` / `uninstall`: run serve under systemd as its own user."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import click

from mailgate.commands.common import EXIT_USAGE, fail
from mailgate.config.paths import CliState
from mailgate.install.systemd import (
    DATA_DIR,
    DEFAULT_USER,
    UNIT_NAME,
    Host,
    RemoveFile,
    Run,
    Step,
    UnitOptions,
    WriteFile,
    install_plan,
    interpreter,
    needs_low_ports,
    systemd_running,
    uninstall_plan,
    unreachable_dirs,
)

_ROOT_HELP = (
    "Write the unit under this directory instead of / (for packaging and tests); "
    "then no user is created and systemctl is not run."
)


@click.group("service")
def service_group() -> None:
    """Install or remove the systemd service that runs `mailgate serve`."""


def _executable(given: Path | None) -> Path:
    """The mailgate program the unit starts: --executable, else the one running now."""
    if given is not None:
        return given.absolute()
    beside = Path(sys.executable).with_name("mailgate")  # a venv's or pipx's bin/
    if beside.exists():
        return beside.absolute()
    found = shutil.which("mailgate")
    if found is None:
        fail("cannot tell where the mailgate program is; give it with --executable PATH.")
    return Path(found).absolute()


def _configured_ports(data_dir: Path) -> list[int | None]:
    """The listener and console ports of an existing data directory (defaults otherwise)."""
    from mailgate.config.errors import ConfigError
    from mailgate.config.model import ConsoleConfig, ListenerConfig
    from mailgate.config.store import Store

    if not (data_dir / "mailgate.db").exists():
        return [ListenerConfig.port, ConsoleConfig.port]
    try:
        with Store.open(data_dir) as store:
            settings = store.settings(allow_incomplete=True)
    except ConfigError as error:
        click.echo(f"Note: could not read the ports from {data_dir} ({error}).", err=True)
        return [ListenerConfig.port, ConsoleConfig.port]
    listener, console = settings.listener, settings.console
    return [listener.port, listener.tls_port, console.port]


def _check_reachable(program: Path) -> None:
    """The service user must be able to run the program and its Python: a venv made with a
    Python under /root (pyenv, pipx's default ~/.local) cannot start as another user."""
    try:
        with program.open("rb") as file:
            python = interpreter(file.readline(256))
    except OSError as error:
        fail(f"cannot read {program}: {error.strerror}; give the program with --executable.")
    for path in (program, python):
        if path is None:
            continue
        # The way to the name and the way to what a symlink points at must both be open.
        blocked = unreachable_dirs(path.absolute()) + unreachable_dirs(path.resolve())
        if blocked:
            fail(
                f"the service user could not run {path}: {blocked[0]} is closed to other "
                "users. Install mailgate where every user can run it (a venv made with "
                "Debian's /usr/bin/python3 under /opt/mailgate, or `pipx install --global .`), "
                "then run this again with that program."
            )


def _user_exists(user: str) -> bool:
    try:
        pwd.getpwnam(user)
    except KeyError:
        return False
    return True


def _describe(step: Step) -> str:
    if isinstance(step, WriteFile):
        return f"write {step.path} (mode {step.mode:04o})"
    if isinstance(step, RemoveFile):
        return f"remove {step.path}"
    return shlex.join(step.argv) + (f"    # {step.why}" if step.why else "")


def _carry_out(steps: list[Step], dry_run: bool) -> None:
    for step in steps:
        click.echo(("would " if dry_run else "") + _describe(step))
        if dry_run:
            continue
        if isinstance(step, WriteFile):
            step.path.parent.mkdir(parents=True, exist_ok=True)
            partial = step.path.with_name(step.path.name + ".partial")
            partial.write_text(step.text, encoding="utf-8")
            partial.chmod(step.mode)
            partial.replace(step.path)
        elif isinstance(step, RemoveFile):
            step.path.unlink(missing_ok=True)
        else:
            _run(step)


def _run(step: Run) -> None:
    try:
        code = subprocess.run(step.argv, check=False).returncode  # noqa: S603 - our own plan
    except FileNotFoundError:
        code = 127
    if code != 0 and not step.may_fail:
        fail(
            f"`{' '.join(step.argv)}` failed (exit {code}); fix what it printed and run "
            "`mailgate service install` again (it is safe to repeat)."
        )


@service_group.command("install")
@click.option("--user", default=DEFAULT_USER, show_default=True, help="Service user.")
@click.option(
    "--executable",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The mailgate program to run (default: the one running this command).",
)
@click.option(
    "--low-ports",
    is_flag=True,
    help="Allow ports below 1024 (e.g. 25, 465) even if none is configured yet.",
)
@click.option("--no-start", is_flag=True, help="Enable at boot, but do not start it now.")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), help=_ROOT_HELP)
@click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing.")
@click.pass_context
def install_command(
    ctx: click.Context,
    user: str,
    executable: Path | None,
    low_ports: bool,
    no_start: bool,
    root: Path | None,
    dry_run: bool,
) -> None:
    """Write /etc/systemd/system/mailgate.service, create the service user, start it.

    The data directory is /var/lib/mailgate unless --data-dir is given."""
    state = ctx.find_object(CliState) or CliState()
    data_dir = (state.data_dir_option or DATA_DIR).absolute()
    program = _executable(executable)
    host = Host(_user_exists(user), systemd_running(), (root or Path("/")).absolute())
    on_this_machine = host.root == Path("/")
    if on_this_machine and not dry_run and os.geteuid() != 0:
        fail("installing a system service needs root: run it with sudo.", EXIT_USAGE)
    if on_this_machine:
        _check_reachable(program)
    opts = UnitOptions(
        program, user, data_dir, low_ports or needs_low_ports(_configured_ports(data_dir))
    )
    _carry_out(install_plan(opts, host, start=not no_start), dry_run)
    if dry_run:
        return
    admin = f"sudo -u {user} {program} --data-dir {data_dir}"
    click.echo(
        f"Installed {UNIT_NAME}: it runs `mailgate serve` as {user} with data in {data_dir}."
    )
    if not host.systemd_running or not on_this_machine:
        click.echo(
            "systemd is not running here: start it on the target with "
            f"`systemctl enable --now {UNIT_NAME}`."
        )
    click.echo(f"Manage it as the service user so the files stay its own, e.g. `{admin} login`.")
    click.echo(f"Logs: `journalctl -u {UNIT_NAME}`. Back up {data_dir}/secret.key apart.")


@service_group.command("uninstall")
@click.option("--root", type=click.Path(file_okay=False, path_type=Path), help=_ROOT_HELP)
@click.option("--dry-run", is_flag=True, help="Show what would be done; change nothing.")
@click.pass_context
def uninstall_command(ctx: click.Context, root: Path | None, dry_run: bool) -> None:
    """Stop and remove the systemd service. The data directory and the user stay."""
    host = Host(True, systemd_running(), (root or Path("/")).absolute())
    if host.root == Path("/") and not dry_run and os.geteuid() != 0:
        fail("removing a system service needs root: run it with sudo.", EXIT_USAGE)
    _carry_out(uninstall_plan(host), dry_run)
    if not dry_run:
        state = ctx.find_object(CliState) or CliState()
        data_dir = state.data_dir_option or DATA_DIR
        click.echo(
            f"Removed {UNIT_NAME}. The data in {data_dir} and the service user are kept: "
            f"`mailgate backup FILE` first, then remove them by hand if you want them gone."
        )
