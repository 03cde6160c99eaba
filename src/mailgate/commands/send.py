"""`mailgate send`: the device's "Send e-mail" application, from a terminal.

Builds a MIME message, signs in to the provider as the configured account (XOAUTH2 as the
UPN), sends it, and reports the server's queue id. Exit codes: 0 sent, 75 temporary
failure (try again later), 1 permanent failure, 2 usage.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import TextIO

import click
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from mailgate.account import missing_sender_advice, sender_address, token_manager
from mailgate.commands.common import (
    EXIT_FAILED,
    EXIT_TEMPORARY,
    EXIT_USAGE,
    emit_json,
    fail,
    print_problem,
    store_and_settings,
)
from mailgate.config.model import SenderPolicy, Settings
from mailgate.identity.errors import IdentityError
from mailgate.submission.client import SendResult
from mailgate.submission.errors import SubmissionError
from mailgate.submission.message import build_message, serialize
from mailgate.upstream import Upstream

#: Show a progress bar above this size (a scan of a few pages is already several MB).
PROGRESS_FROM = 1024 * 1024


def choose_sender(settings: Settings, default: str | None, wanted: str | None) -> str:
    """The envelope sender: --from where the sender policy allows it, else the default.

    Raises click.UsageError saying what to change when --from is not allowed.
    """
    if default is None:
        # --from alone is no sender: the policy needs the address it rewrites to.
        raise click.UsageError(missing_sender_advice(settings))
    if wanted is None or wanted.lower() == default.lower():
        return default
    policy = settings.sender_policy
    allowed = {a.lower() for a in settings.sender_allowed}
    if policy is SenderPolicy.PASS_THROUGH or (
        policy is SenderPolicy.ALLOW_LIST and wanted.lower() in allowed
    ):
        return wanted
    raise click.UsageError(
        f"--from {wanted} is not allowed by the sender policy ({policy.value}); mail goes out "
        f"as {default}. To send as an alias or send-as address, add it with `mailgate config "
        "set sender.allowed ...` and `mailgate config set sender.policy allow-list`."
    )


async def _send(
    upstream: Upstream, sender: str, recipients: list[str], data: bytes, show: bool
) -> SendResult:
    client = await upstream.open()
    async with client:
        if not show:
            return await client.send(sender, recipients, data)
        with Progress(
            "[progress.description]{task.description}",
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            transient=True,
        ) as bar:
            task = bar.add_task("Uploading", total=len(data))
            return await client.send(
                sender, recipients, data, lambda done, total: bar.update(task, completed=done)
            )


@click.command("send")
@click.option("--to", "to", multiple=True, metavar="ADDRESS", help="Recipient (repeatable).")
@click.option("--cc", multiple=True, metavar="ADDRESS", help="Copy recipient (repeatable).")
@click.option("--bcc", multiple=True, metavar="ADDRESS", help="Hidden recipient (repeatable).")
@click.option("--subject", default="", help="Subject line (UTF-8 welcome).")
@click.option("--body", default=None, help="Message text.")
@click.option(
    "--body-file", type=click.File("r", encoding="utf-8"), default=None, help="Read the text."
)
@click.option(
    "--attach",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Attach a file (repeatable); the MIME type is guessed from its name.",
)
@click.option("--from", "from_", default=None, help="Sender address, where the policy allows.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as one JSON object.")
@click.pass_context
def send_command(
    ctx: click.Context,
    to: tuple[str, ...],
    cc: tuple[str, ...],
    bcc: tuple[str, ...],
    subject: str,
    body: str | None,
    body_file: TextIO | None,
    attach: tuple[Path, ...],
    from_: str | None,
    as_json: bool,
) -> None:
    """Send one message through the configured provider."""
    if body is not None and body_file is not None:
        raise click.UsageError("give --body or --body-file, not both")
    text = body_file.read() if body_file is not None else (body or "")
    store, settings = store_and_settings(ctx)
    with store:
        account = store.account()
        oauth = settings.outbound.oauth
        if oauth is not None and account is None:
            fail("nobody is signed in: run `mailgate login` first.", EXIT_USAGE)
        sender = choose_sender(settings, sender_address(settings, account), from_)
        try:
            message, recipients = build_message(sender, to, cc, bcc, subject, text, attach)
        except ValueError as error:
            raise click.UsageError(str(error)) from None
        data = serialize(message)
        tokens = token_manager(store, settings) if oauth is not None else None
        upstream = Upstream(store, settings, tokens, account.primary_address if account else None)
        show = not as_json and sys.stderr.isatty() and len(data) >= PROGRESS_FROM
        try:
            result = asyncio.run(_send(upstream, sender, recipients, data, show))
        except IdentityError as error:
            print_problem(error.problem, as_json)
            if not error.problem.retryable:
                sys.exit(EXIT_FAILED)
            if not as_json:
                # As for SMTP faults: nothing retries a terminal send, the caller must.
                click.echo("This is temporary: try again later.", err=True)
            sys.exit(EXIT_TEMPORARY)
        except SubmissionError as error:
            _report_failure(error, as_json)
        _report(result, sender, recipients, as_json)


def _report_failure(error: SubmissionError, as_json: bool) -> None:
    cls = error.classification
    code = EXIT_TEMPORARY if cls.transient else EXIT_FAILED
    if as_json:
        emit_json(
            {
                "sent": False,
                "kind": cls.kind.value,
                "summary": cls.summary,
                "advice": cls.advice,
                "reply": str(error.reply) if error.reply else None,
                "stage": error.stage,
            }
        )
    else:
        click.echo(f"Not sent: {cls.summary}", err=True)
        if error.reply is not None:
            click.echo(f"Server reply to {error.stage}: {error.reply}", err=True)
        if cls.advice:
            click.echo(f"What to do: {cls.advice}", err=True)
        if cls.transient:
            click.echo("This is temporary: try again later.", err=True)
    sys.exit(code)


def _report(result: SendResult, sender: str, recipients: list[str], as_json: bool) -> None:
    if as_json:
        emit_json(
            {
                "sent": True,
                "queue_id": result.queue_id,
                "server": result.hostname,
                "reply": str(result.reply),
                "sender": sender,
                "accepted": list(result.accepted),
                "refused": {k: str(v) for k, v in result.refused.items()},
                "size": result.size,
            }
        )
    else:
        click.echo(
            f"Sent from {sender} to {len(result.accepted)} recipient(s); "
            f"server queue id {result.queue_id or '(none given)'}."
        )
        for address, reply in result.refused.items():
            click.echo(f"  refused: {address}: {reply}", err=True)
    if result.refused:
        sys.exit(EXIT_FAILED)
