"""The root of every error a user of mailgate can meet.

Each subclass's message is a whole sentence that says what happened and what to do next,
so the CLI (one handler, in cli.py) and the console show it as it is. `exit_code` follows
the CLI's convention: 2 for a usage or validation error, 1 for everything else.
"""

from __future__ import annotations


class MailgateError(Exception):
    """An error whose message tells the user what to do."""

    exit_code = 1
