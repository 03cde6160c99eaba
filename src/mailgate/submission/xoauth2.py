"""The SASL XOAUTH2 mechanism as Exchange Online and Outlook.com take it, without I/O.

Initial response (Microsoft's "Authenticate an IMAP, POP or SMTP connection using OAuth"):
``base64("user=" UPN "\\x01auth=Bearer " token "\\x01\\x01")``. The ``user=`` is always the
UPN, never the sender address (Exchange authenticates the UPN; the From may be an alias).

One line or two steps (RFC 4954 section 4): the initial response may go on the AUTH line,
but a server may refuse long command lines. Real access tokens are 1.5-2.5 KB, so
``AUTH XOAUTH2 <response>`` is ~3 KB; RFC 5321 section 4.5.3.1.4 only promises 512 octets,
Dovecot refuses more than 1030 with "500 5.5.2 Line too long". Exchange takes long lines.
The two-step form sends ``AUTH XOAUTH2`` alone and the response after the server's "334 ".

Errors (RFC 7628 section 3.2.2 style): the server may answer a bad token with
``334 <base64 JSON>``; the client must send an empty line and then reads the final 535.
"""

from __future__ import annotations

import base64
import binascii
import json
from enum import Enum

#: RFC 5321 section 4.5.3.1.4: the command line limit every server must accept, CRLF included.
RFC5321_COMMAND_LINE = 512

_AUTH_PREFIX = "AUTH XOAUTH2 "
_FORBIDDEN = frozenset("\x00\x01\r\n")


class AuthForm(Enum):
    ONE_LINE = "one-line"
    TWO_STEP = "two-step"


def initial_response(upn: str, access_token: str) -> str:
    """The base64 XOAUTH2 initial response. The result is a secret: never log it.

    Raises ValueError (without the token in the message) if either part would break the
    ``\\x01`` framing or the command line.
    """
    if not upn or any(c in _FORBIDDEN for c in upn) or any(c.isspace() for c in upn):
        raise ValueError("the UPN for XOAUTH2 is empty or contains control characters or spaces")
    if not access_token or any(c in _FORBIDDEN or c.isspace() for c in access_token):
        raise ValueError("the access token is empty or contains control characters or spaces")
    raw = f"user={upn}\x01auth=Bearer {access_token}\x01\x01"
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


def auth_line_length(response: str) -> int:
    """Octets of ``AUTH XOAUTH2 <response>`` CRLF on the wire."""
    return len(_AUTH_PREFIX) + len(response) + 2


def choose_form(response: str, max_command_line: int | None = RFC5321_COMMAND_LINE) -> AuthForm:
    """One line when it fits the server's line limit; *None* means the server takes long lines."""
    if max_command_line is None or auth_line_length(response) <= max_command_line:
        return AuthForm.ONE_LINE
    return AuthForm.TWO_STEP


def is_line_too_long(code: int, text: str) -> bool:
    """Does this reply to a one-line AUTH mean "your line was too long, try two steps"?

    Dovecot: "500 5.5.2 Line too long"; others answer 500 or 501 with similar words.
    """
    lowered = text.lower()
    return code in {500, 501} and ("too long" in lowered or "line length" in lowered)


def decode_error_challenge(challenge: str) -> dict[str, object] | None:
    """The JSON object in a ``334 <base64 JSON>`` error challenge, or None if there is none.

    *challenge* is the reply text after "334 ". Example from RFC 7628 section 3.2.2:
    ``{"status":"invalid_token","scope":"...","schemes":"bearer"}``.
    """
    text = challenge.strip()
    if not text:
        return None
    try:
        decoded = json.loads(base64.b64decode(text, validate=True).decode("utf-8"))
    except (binascii.Error, ValueError, UnicodeDecodeError):
        return None
    return decoded if isinstance(decoded, dict) else None
