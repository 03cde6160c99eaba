"""`mailgate login`, `logout` and `status`: the device's sign-in, from a terminal.

Like the manual's step 7: a code is shown, a person signs in at Microsoft with the sending
account, and the device records the account's UPN (for XOAUTH2) and primary address (the
sender address).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from typing import Any

import click
import segno

from mailgate import operations
from mailgate.account import device_sign_in, sender_address, token_manager
from mailgate.commands.common import (
    EXIT_FAILED,
    EXIT_TEMPORARY,
    EXIT_USAGE,
    duration,
    emit_json,
    fail,
    print_problem,
    store_and_settings,
    when,
)
from mailgate.identity.errors import SignInError
from mailgate.identity.signin import CodeIssued, Pending, SignedIn, SignInEvent, SignInFailed


def _show_code(event: CodeIssued, qr: bool) -> None:
    code = event.code
    click.echo("Sign in to Microsoft with the mailbox that will send mail:")
    click.echo(f"  1. open   {code.verification_uri}")
    click.echo(f"  2. enter  {code.user_code}")
    if qr:
        click.echo("")
        # Compact terminal QR code of the link, for a phone.
        segno.make(code.verification_uri, error="l").terminal(compact=True)
    left = code.seconds_left(time.time())
    click.echo(
        f"The code expires in {duration(left)} (at {when(code.expires_at)}). "
        "Waiting for the sign-in; Ctrl-C cancels."
    )


def _printer(as_json: bool, qr: bool) -> Any:
    tty = sys.stdout.isatty()

    def on_event(event: SignInEvent) -> None:
        if as_json:
            if not isinstance(event, SignInFailed):  # printed once, by the caller
                emit_json(event.to_json())
            return
        if isinstance(event, CodeIssued):
            _show_code(event, qr)
        elif isinstance(event, Pending) and tty:
            click.echo(f"\r  {duration(event.seconds_left)} left   ", nl=False)
        elif isinstance(event, SignedIn) and tty:
            click.echo("")

    return on_event


@click.command("login")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per event.")
@click.option("--no-qr", is_flag=True, help="Do not print a QR code of the sign-in link.")
@click.pass_context
def login_command(ctx: click.Context, as_json: bool, no_qr: bool) -> None:
    """Sign in to Microsoft with the OAuth 2.0 device code flow."""
    store, settings = store_and_settings(ctx)
    with store:
        if settings.outbound.oauth is None:
            fail(
                "the provider is `none`, which sends with a password, not a Microsoft sign-in. "
                "Choose one with `mailgate config provider exchange-online --client-id <GUID>`.",
                EXIT_USAGE,
            )
        stop = threading.Event()
        flow = device_sign_in(store, settings, _printer(as_json, not no_qr))
        try:
            code = flow.start()
            result = flow.wait(code, should_stop=stop.is_set)
        except SignInError as error:
            print_problem(error.problem, as_json)
            if not error.problem.retryable:
                sys.exit(EXIT_FAILED)
            # The login gave up; nothing else retries it. Say so, and exit like send does.
            if not as_json:
                click.echo(
                    "This is temporary: run `mailgate login` again in a few minutes.", err=True
                )
            sys.exit(EXIT_TEMPORARY)
        except KeyboardInterrupt:
            stop.set()
            fail("sign-in cancelled; run `mailgate login` again when ready.")
        finally:
            flow.close()
        address = sender_address(settings, store.account())
        if as_json:
            return
        click.echo(f"Signed in as {result.upn}.")
        click.echo(f"  XOAUTH2 user (UPN):  {result.upn}")
        if settings.sender_address and settings.sender_address != result.primary_address:
            click.echo(
                f"  Sender address:      {address} (sender.address; the account's primary "
                f"address is {result.primary_address})"
            )
        else:
            click.echo(f"  Sender address:      {address} (the account's primary address)")


@click.command("logout")
@click.pass_context
def logout_command(ctx: click.Context) -> None:
    """Forget the signed-in account and its tokens."""
    store, settings = store_and_settings(ctx)
    with store:
        account = store.account()
        if settings.outbound.oauth is None or account is None:
            click.echo("Nobody is signed in.")
            return
        asyncio.run(token_manager(store, settings).forget())
        click.echo(
            f"Signed out {account.upn}. Mail waits in the queue until someone signs in again "
            "with `mailgate login`."
        )


def status_data(ctx: click.Context) -> dict[str, Any]:
    """`mailgate status --json`: the console's Status page has the same function and fields."""
    store, _ = store_and_settings(ctx)  # refuses, with what to do, when not configured
    with store:
        return operations.status(operations.OfflineHandle(store), time.time())


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """Show the provider, the signed-in account, its tokens and the queue."""
    data = status_data(ctx)
    if as_json:
        emit_json(data)
        return
    now = time.time()
    click.echo(f"Provider:          {data['provider']}  ({data['server']}, {data['security']})")
    if "client_id" in data:
        click.echo(f"Sign-in host:      {data['sign_in_host']}  tenant {data['tenant']}")
        click.echo(f"Client ID:         {data['client_id']}")
    if not data["signed_in"]:
        if "client_id" in data:
            click.echo("Signed in:         no. Run `mailgate login`.")
    else:
        click.echo(f"Signed in as:      {data['upn']} (since {when(data['signed_in_at'])})")
        expires = data["access_token_expires_at"]
        if expires:
            state = "valid for" if expires > now else "expired"
            click.echo(f"Access token:      {state} {duration(expires - now)}")
        click.echo(
            f"Refresh token:     last used {duration(now - data['refresh_token_last_used_at'])} "
            f"ago; sign in again by {when(data['re_sign_in_needed_by'])} if unused"
        )
        if data["needs_sign_in"]:
            click.echo("                   Sign-in needed: run `mailgate login`.")
        if data["last_error"]:
            click.echo(f"Last error:        {data['last_error']} at {when(data['last_error_at'])}")
    click.echo(f"Sender address:    {data['sender_address'] or '(none yet: sign in)'}")
    counts = {k: v for k, v in data["queue"].items() if v}
    shown = ", ".join(f"{v} {k}" for k, v in counts.items()) or "empty"
    click.echo(f"Queue:             {shown}")
    if data["oldest_message_at"]:
        click.echo(f"Oldest message:    {duration(now - data['oldest_message_at'])} old")
