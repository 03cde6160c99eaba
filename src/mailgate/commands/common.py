"""Helpers every command shares: opening the store and settings, printing problems."""

from __future__ import annotations

import datetime as dt
import json
import sys
from typing import TYPE_CHECKING, Any, NoReturn

import click

from mailgate.config.commands import open_store
from mailgate.identity.errors import SignInProblem

if TYPE_CHECKING:
    from mailgate.config.model import Settings
    from mailgate.config.store import Store

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
#: sysexits.h EX_TEMPFAIL: try again later (what mail tools use for temporary failures).
EXIT_TEMPORARY = 75


def store_and_settings(ctx: click.Context) -> tuple[Store, Settings]:
    store = open_store(ctx)
    try:
        return store, store.settings()
    except BaseException:
        store.close()
        raise


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"Error: {message}", err=True)
    sys.exit(code)


def print_problem(problem: SignInProblem, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps({"event": "error", **problem.to_json()}))
        return
    click.echo(f"Sign-in failed: {problem.code}: {problem.title}.", err=True)
    if problem.explanation:
        click.echo(problem.explanation, err=True)
    if problem.what_to_do:
        click.echo(f"What to do: {problem.what_to_do}", err=True)


def emit_json(obj: dict[str, Any]) -> None:
    click.echo(json.dumps(obj, default=str))
    sys.stdout.flush()


def when(timestamp: float | None) -> str:
    if timestamp is None:
        return "unknown"
    return dt.datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M %Z")


def duration(seconds: float) -> str:
    """A rough, readable span: "45 s", "12 min", "3 h 5 min", "17 days"."""
    seconds = abs(seconds)
    if seconds < 90:
        return f"{int(seconds)} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min"
    if seconds < 2 * 86400:
        hours, rest = divmod(int(seconds), 3600)
        return f"{hours} h {rest // 60} min" if rest >= 60 else f"{hours} h"
    return f"{int(seconds // 86400)} days"
