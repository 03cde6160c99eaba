"""The `mailgate` command line. It parses arguments, calls the services, and prints.

Command bodies live in mailgate.commands (and mailgate.config.commands); this module
registers them, and holds the two that only start things: `sim` and `demo`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
from pathlib import Path
from typing import Any

import click

from mailgate import __version__, logsetup
from mailgate.commands.backup import backup_command, restore_command
from mailgate.commands.doctor import doctor_command
from mailgate.commands.gateway import device_group, queue_group, serve_command
from mailgate.commands.send import send_command
from mailgate.commands.service import service_group
from mailgate.commands.signin import login_command, logout_command, status_command
from mailgate.config.commands import config_group, init_command
from mailgate.config.paths import CliState
from mailgate.errors import MailgateError


class MailgateGroup(click.Group):
    """The one place where an error a command raises meets the user: a MailgateError
    becomes its sentence on stderr and its exit status (commands catch only what they
    present themselves, as `send --json` does)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except MailgateError as error:
            click.echo(f"Error: {error}", err=True)
            sys.exit(error.exit_code)


@click.group(cls=MailgateGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mailgate")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Data directory (default: $MAILGATE_DATA_DIR, else /var/lib/mailgate as root, "
    "else $XDG_DATA_HOME/mailgate or ~/.local/share/mailgate).",
)
@click.option(
    "--log-format",
    type=click.Choice(logsetup.FORMATS),
    default="auto",
    show_default=True,
    envvar="MAILGATE_LOG_FORMAT",
    help="Log lines on stderr: journal (syslog priority prefixes, no timestamps; chosen "
    "automatically under systemd), json (one object per line, for log shippers) or text.",
)
@click.pass_context
def main(ctx: click.Context, verbose: int, data_dir: Path | None, log_format: str) -> None:
    """mailgate: relay mail from printers, scanners and applications that speak plain SMTP
    to Exchange Online / Outlook.com, signing in with OAuth 2.0 like a modern device."""
    # Subcommands read it with ctx.find_object(CliState).data_dir.
    ctx.obj = CliState(data_dir_option=data_dir)
    level = logging.WARNING - 10 * verbose
    logsetup.configure(log_format, max(level, logging.DEBUG))


@main.command()
@click.option(
    "--profile",
    type=click.Choice(["global", "21vianet", "gcc-high", "consumers"]),
    default="global",
    show_default=True,
    help="Which Microsoft cloud to play.",
)
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--idp-port",
    type=int,
    default=0,
    show_default=True,
    help="HTTPS identity platform port (0: any free).",
)
@click.option(
    "--smtp-port",
    type=int,
    default=0,
    show_default=True,
    help="SMTP submission port (0: any free).",
)
@click.option(
    "--workdir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where to write the simulator's CA and certificate (default: a temporary directory).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the bound addresses as one JSON line.")
def sim(
    profile: str, host: str, idp_port: int, smtp_port: int, workdir: Path | None, as_json: bool
) -> None:
    """Run the simulated Microsoft cloud (identity platform and Exchange SMTP)."""
    from mailgate.sim.server import Simulator

    async def run() -> None:
        simulator = Simulator(
            profile=profile, host=host, idp_port=idp_port, smtp_port=smtp_port, workdir=workdir
        )
        # Signals first: whoever reads the printed addresses may stop us at once.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await simulator.start()
        info = simulator.info()
        if as_json:
            click.echo(json.dumps(info), nl=True)
        else:
            _print_sim_info(info)
        sys.stdout.flush()
        serving = asyncio.ensure_future(simulator.serve_forever())
        await asyncio.wait(
            [serving, asyncio.ensure_future(stop.wait())], return_when=asyncio.FIRST_COMPLETED
        )
        await simulator.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())


def _print_sim_info(info: dict[str, object]) -> None:
    lines = [
        f"mailgate simulator ({info['profile']} cloud) is running. Stop it with Ctrl-C.",
        "",
        f"  identity platform   {info['identity_platform']}",
        f"  sign-in host        {info['sign_in_host']}",
        f"  device sign-in page {info['devicelogin']}",
        f"  SMTP submission     {info['smtp_server']}   (STARTTLS, AUTH XOAUTH2)",
        f"  CA certificate      {info['ca_file']}",
        f"  accepted mail       {info['mailbox_page']}",
        f"  control API         {info['control_api']}",
        "",
        "Accounts you can sign in as:",
    ]
    accounts = info.get("accounts")
    if isinstance(accounts, list):
        for account in accounts:
            lines.append(f"  {account['upn']}  (primary address {account['primary_address']})")
    lines += [
        "",
        "Browsers warn about the certificate: it is signed by the simulator's own CA above.",
        "Trust that file, or accept the warning for this local address only.",
    ]
    click.echo("\n".join(lines))


@main.command()
@click.option(
    "--profile",
    type=click.Choice(["global", "21vianet", "gcc-high", "consumers"]),
    default="21vianet",
    show_default=True,
    help="Which Microsoft cloud the simulator plays (21Vianet: the manual's own).",
)
@click.option(
    "--auto-approve",
    metavar="UPN",
    default=None,
    help="Approve the sign-in as this account without a browser.",
)
@click.option("--once", is_flag=True, help="Exit after the first message is delivered.")
@click.option(
    "--keep",
    "keep",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Keep the demo's data directory here (default: a temporary one).",
)
@click.option(
    "--port",
    type=int,
    default=2525,
    show_default=True,
    help="SMTP port of the demo gateway (0: any free port; a busy port falls back to that).",
)
def demo(profile: str, auto_approve: str | None, once: bool, keep: Path | None, port: int) -> None:
    """Run the simulator and a gateway wired to it; sign in like the device, send mail."""
    from mailgate.demo import run_demo

    sys.exit(run_demo(profile, auto_approve, once, keep, port))


main.add_command(init_command)
main.add_command(config_group)
main.add_command(login_command)
main.add_command(logout_command)
main.add_command(status_command)
main.add_command(send_command)
main.add_command(serve_command)
main.add_command(queue_group)
main.add_command(device_group)
main.add_command(doctor_command)
main.add_command(service_group)
main.add_command(backup_command)
main.add_command(restore_command)
