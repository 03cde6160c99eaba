"""`mailgate serve`, `mailgate queue ...` and `mailgate device ...`."""

from __future__ import annotations

import asyncio
import getpass
import json
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mailgate import operations
from mailgate.commands.common import (
    EXIT_FAILED,
    duration,
    emit_json,
    fail,
    store_and_settings,
    when,
)
from mailgate.config.commands import open_store
from mailgate.config.errors import ValidationError
from mailgate.config.keys import parse_endpoint
from mailgate.gateway.queue import MessageInfo, QueueStore, State

if TYPE_CHECKING:
    from mailgate.service import ListenOverride


@click.command("serve")
@click.option(
    "--listen",
    metavar="[HOST:]PORT",
    default=None,
    help=(
        "Listen here instead of listener.bind / listener.port (e.g. 127.0.0.1:2525). "
        "Port 0 takes any free port; --ready-file tells which."
    ),
)
@click.option(
    "--ready-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=(
        "Once listening, write the bound addresses here as JSON "
        '({"pid": N, "smtp": [{"host": H, "port": P, "implicit_tls": false}], '
        '"console": URL or null}), for supervisors and scripts; removed again when serve '
        "stops."
    ),
)
@click.option(
    "--console",
    "console",
    metavar="[HOST:]PORT",
    default=None,
    help="Serve the admin console here instead of console.bind / console.port.",
)
@click.option("--no-console", is_flag=True, help="Do not start the admin console.")
@click.pass_context
def serve_command(
    ctx: click.Context,
    listen: str | None,
    ready_file: Path | None,
    console: str | None,
    no_console: bool,
) -> None:
    """Run the gateway: accept mail from devices and deliver it through the provider."""
    import logging

    from mailgate.service import AlreadyServing, serve, serving_lock

    if logging.getLogger().level > logging.INFO:
        logging.getLogger().setLevel(logging.INFO)
    if logging.getLogger().level > logging.DEBUG:
        # aiosmtpd logs every connection and command at INFO (logger "mail.log"): several
        # lines per message on the hot path. Its warnings stay; DEBUG shows everything.
        logging.getLogger("mail.log").setLevel(logging.WARNING)
    override = _listen_override(listen)
    override.console_enabled = not no_console
    if console:
        host, port = _host_port(console, 8025)
        override.console_host, override.console_port = host, port
    store = open_store(ctx)
    with store:
        # Incomplete settings are fine: mail is held until the console completes them.
        settings = store.settings(allow_incomplete=True)
        try:
            with serving_lock(store.data_dir):
                asyncio.run(serve(store, settings, override, ready_file))
        except AlreadyServing as error:
            fail(str(error))
        except PermissionError:
            # bind(2) EACCES: a port below 1024 without CAP_NET_BIND_SERVICE.
            fail(
                "cannot listen: a port below 1024 needs privileges. Under systemd run "
                "`mailgate service install` again: it grants CAP_NET_BIND_SERVICE (and only "
                "that) when such a port is configured. Or choose a port from 1024 up with "
                "--listen or `mailgate config set listener.port N`."
            )
        except OSError as error:
            fail(
                f"cannot listen: {error.strerror or error}. Is another mailgate or mail "
                "server using the port? Choose another with --listen or "
                "`mailgate config set listener.port N`."
            )


def _listen_override(listen: str | None) -> ListenOverride:
    from mailgate.service import ListenOverride  # the gateway's imports are heavy

    override = ListenOverride()
    if listen:
        override.host, override.port = _host_port(listen, 2525)
    return override


def _host_port(text: str, default_port: int) -> tuple[str | None, int]:
    """[HOST:]PORT of a --listen / --console option; port 0 means any free port."""
    if text.isdigit():
        return None, int(text)
    # Port 0 ("any free port") makes sense for a listener, not for a server setting, so
    # parse_endpoint refuses it: take it off before parsing the host.
    head, _, tail = text.rpartition(":")
    any_port = tail == "0" and (":" not in head or head.endswith("]"))
    endpoint = parse_endpoint(head if any_port else text, default_port)
    return endpoint.host, 0 if any_port else endpoint.port


@contextmanager
def _queue(ctx: click.Context) -> Iterator[QueueStore]:
    store = open_store(ctx)
    with store:
        yield QueueStore(store.engine)


def _line(info: MessageInfo, now: float) -> str:
    rcpts = ", ".join(r.address for r in info.recipients[:3])
    if len(info.recipients) > 3:
        rcpts += f" (+{len(info.recipients) - 3})"
    age = duration(now - info.received_at)
    return (
        f"{info.id:>6}  {info.state.value:<8}  {age:>9}  {info.envelope_from or '<>'} -> {rcpts}"
        + (f"  [{info.subject}]" if info.subject else "")
    )


@click.group("queue")
def queue_group() -> None:
    """List and manage queued messages."""


@queue_group.command("list")
@click.option(
    "--state",
    "states",
    multiple=True,
    type=click.Choice([s.value for s in State]),
    help="Only messages in this state (repeatable).",
)
@click.option("--limit", default=100, show_default=True, help="At most this many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def queue_list(ctx: click.Context, states: tuple[str, ...], limit: int, as_json: bool) -> None:
    """List messages, newest first."""
    with _queue(ctx) as queue:
        infos = queue.messages([State(s) for s in states] or None, limit=limit)
    if as_json:
        click.echo(json.dumps([i.to_json() for i in infos], indent=2))
        return
    if not infos:
        click.echo("The queue is empty." if not states else "No messages in that state.")
        return
    now = time.time()
    click.echo(f"{'id':>6}  {'state':<8}  {'age':>9}  sender -> recipients")
    for info in infos:
        click.echo(_line(info, now))


@queue_group.command("show")
@click.argument("message_id", type=int)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def queue_show(ctx: click.Context, message_id: int, as_json: bool) -> None:
    """Show one message, its recipients and its history."""
    with _queue(ctx) as queue:
        info = queue.get(message_id)
        if info is None:
            fail(f"there is no message {message_id}; `mailgate queue list` shows the queue.")
        history = queue.history(message_id)
    if as_json:
        emit_json({**info.to_json(), "history": [{"at": at, "text": t} for at, t in history]})
        return
    click.echo(f"Message {info.id}: {info.state.value}")
    click.echo(f"  from      {info.envelope_from or '<>'}  (client {info.client or '?'})")
    click.echo(f"  subject   {info.subject}")
    click.echo(f"  received  {when(info.received_at)}, {info.size} bytes")
    click.echo(f"  attempts  {info.attempts}")
    if info.state in (State.QUEUED, State.DEFERRED):
        click.echo(f"  next try  {when(info.next_attempt_at)}")
    if info.held_reason:
        click.echo(f"  held      {info.held_reason}")
    if info.last_reply:
        click.echo(f"  last reply {info.last_reply}")
    click.echo("  recipients:")
    for rcpt in info.recipients:
        click.echo(f"    {rcpt.address}  {rcpt.state}" + (f"  {rcpt.reply}" if rcpt.reply else ""))
    click.echo("  history:")
    for at, text in history:
        click.echo(f"    {when(at)}  {text}")


def _act(ctx: click.Context, what: str, message_id: int | None, all_: bool) -> None:
    if message_id is None and not all_:
        raise click.UsageError(f"give a message id, or --all to {what} every message")
    with open_store(ctx) as store:
        handle = operations.OfflineHandle(store)
        count = operations.queue_action(handle, message_id, what, time.time())
    noun = "message" if count == 1 else "messages"
    click.echo(f"{what.capitalize()}: {count} {noun}.")
    if count == 0 and message_id is not None:
        sys.exit(EXIT_FAILED)


@queue_group.command("retry")
@click.argument("message_id", type=int, required=False)
@click.option("--all", "all_", is_flag=True, help="Every deferred and held message.")
@click.pass_context
def queue_retry(ctx: click.Context, message_id: int | None, all_: bool) -> None:
    """Try a deferred or held message now (a running gateway picks it up)."""
    _act(ctx, "retry", message_id, all_)


@queue_group.command("hold")
@click.argument("message_id", type=int, required=False)
@click.option("--all", "all_", is_flag=True, help="Every queued and deferred message.")
@click.pass_context
def queue_hold(ctx: click.Context, message_id: int | None, all_: bool) -> None:
    """Keep a message from being delivered until released."""
    _act(ctx, "hold", message_id, all_)


@queue_group.command("release")
@click.argument("message_id", type=int, required=False)
@click.option("--all", "all_", is_flag=True, help="Every held message.")
@click.pass_context
def queue_release(ctx: click.Context, message_id: int | None, all_: bool) -> None:
    """Let a held message be delivered."""
    _act(ctx, "release", message_id, all_)


@queue_group.command("delete")
@click.argument("message_id", type=int)
@click.pass_context
def queue_delete(ctx: click.Context, message_id: int) -> None:
    """Delete a message for good (it is not delivered and not bounced)."""
    with _queue(ctx) as queue:
        if not queue.delete(message_id):
            fail(
                f"message {message_id} does not exist or is being sent right now; "
                "hold it first, or try again in a moment."
            )
    click.echo(f"Deleted message {message_id}.")


@click.group("device")
def device_group() -> None:
    """Local accounts for devices that authenticate to mailgate (AUTH PLAIN/LOGIN)."""


@device_group.command("add")
@click.argument("username")
@click.option("--note", default="", help="What the account is for, e.g. the printer's location.")
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from standard input (scripts)."
)
@click.pass_context
def device_add(ctx: click.Context, username: str, note: str, password_stdin: bool) -> None:
    """Create a device account; the password is asked for (never on the command line)."""
    if password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        password = getpass.getpass(f"Password for {username}: ")
        if getpass.getpass("Again: ") != password:
            fail("the two passwords differ; nothing was changed.")
    store, settings = store_and_settings(ctx)
    with store:
        handle = operations.OfflineHandle(store)
        try:
            operations.add_device(handle, username, password, note, time.time())
        except ValidationError as error:
            fail(str(error), 2)
        auth = settings.listener.auth_required
    click.echo(f"Added device account {username}.")
    if not auth:
        click.echo(
            "Devices may still send without it: require it with "
            "`mailgate config set listener.auth_required yes`."
        )


@device_group.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
def device_list(ctx: click.Context, as_json: bool) -> None:
    """List device accounts (never their passwords)."""
    store = open_store(ctx)
    with store:
        accounts = operations.list_devices(operations.OfflineHandle(store))
    if as_json:
        click.echo(json.dumps([vars(a) for a in accounts], indent=2))
        return
    if not accounts:
        click.echo("No device accounts. Add one with `mailgate device add NAME`.")
    for account in accounts:
        click.echo(f"{account.username:<30} added {when(account.created_at)}  {account.note}")


@device_group.command("remove")
@click.argument("username")
@click.pass_context
def device_remove(ctx: click.Context, username: str) -> None:
    """Delete a device account."""
    store = open_store(ctx)
    with store:
        removed = operations.remove_device(operations.OfflineHandle(store), username)
    if not removed:
        fail(f"there is no device account {username!r}; `mailgate device list` shows them.")
    click.echo(f"Removed device account {username}.")
