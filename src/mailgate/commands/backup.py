"""`mailgate backup FILE` and `mailgate restore FILE`."""

from __future__ import annotations

from pathlib import Path

import click

from mailgate.commands.common import when
from mailgate.config.commands import data_dir_of, open_store


@click.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
def backup_command(ctx: click.Context, file: Path) -> None:
    """Copy settings, account, tokens (still encrypted) and queued mail to FILE.

    Safe while `mailgate serve` runs. The secret key is never in the backup: keep it apart."""
    from mailgate.backup import backup

    data_dir = data_dir_of(ctx)
    with open_store(ctx) as store:  # checks the directory and its key first
        origin = store.key_origin
    report = backup(data_dir, file, origin)
    noun = "message" if report.pending == 1 else "messages"
    click.echo(
        f"Backed up {data_dir} to {report.path} ({report.size} bytes, {report.pending} {noun} "
        "not yet delivered)."
    )
    click.echo(
        f"The secret key is NOT in the backup. It is in {report.key_origin}: keep a copy of it "
        "apart from the backup (another medium, a password manager). Restore needs it, and "
        "whoever has both can use the sign-in."
    )
    click.echo(
        "Files you pointed settings at (TLS certificates, a CA bundle) are not in the backup; "
        "back them up where they are."
    )


@click.command("restore")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--key-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="The secret key of the data directory the backup was made from (copied in, 0600).",
)
@click.pass_context
def restore_command(ctx: click.Context, file: Path, key_file: Path | None) -> None:
    """Restore a backup onto a fresh data directory; `serve` then delivers its queued mail."""
    from mailgate.backup import restore

    report = restore(file, data_dir_of(ctx), key_file)
    made = "an unknown time"
    if report.backup_created_at is not None:
        made = when(report.backup_created_at)
    click.echo(
        f"Restored the backup of {made} (mailgate {report.backup_version or '?'}) into "
        f"{report.data_dir}."
    )
    click.echo(
        f"{report.pending} message(s) wait to be delivered ({report.held} held). Start "
        "`mailgate serve` (or the service) to deliver them; `mailgate status` shows the "
        "account and token health."
    )
