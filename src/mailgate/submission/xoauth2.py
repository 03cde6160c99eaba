"""The bearer-token SASL mechanisms, XOAUTH2 and OAUTHBEARER (RFC 7628), without I/O.

Initial response (Microsoft's "Authenticate an IMAP, POP or SMTP connection using OAuth"):
``base64("user=" UPN "\\x01auth=Bearer " token "\\x01\\x01")``. The ``user=`` is always the
UPN, never the sender address (Exchange authenticates the UPN; the From may be an alias).

OAUTHBEARER (RFC 7628 section 3.1) carries the same token behind a GS2 header:
``base64("n,a=" UPN "," "\x01host=" host "\x01port=" port "\x01auth=Bearer " token "\x01\x01")``.
mailgate uses it only where a server offers OAUTHBEARER and not XOAUTH2 (Exchange offers
XOAUTH2 only; Dovecot offers both).

One line or two steps (RFC 4954 section 4): "a client MUST NOT send an initial response
that would make the AUTH command line exceed 512 octets" (RFC 5321's command line limit).
Real access tokens are 1.5-2.5 KB, so ``AUTH XOAUTH2 <response>`` is ~3 KB: the client
sends ``AUTH XOAUTH2`` alone and the response after the server's "334 " (a SASL response
line is not a command line, so the limit does not apply to it). Exchange takes both forms;
Dovecot refuses command lines over 1030 octets with "500 5.5.2 Line too long".

Errors (RFC 7628 section 3.2.2): the server may answer a bad token with
``334 <base64 JSON>``; the client then sends a dummy response (XOAUTH2: an empty line;
OAUTHBEARER: a single ``\x01``, RFC 7628 section 3.2.3) and reads the final 535.
"""

from __future__ import annotations

import base64
import binascii
import json
from enum import Enum

#: RFC 5321 section 4.5.3.1.4: the command line limit every server must accept, CRLF included.
RFC5321_COMMAND_LINE = 512

XOAUTH2 = "XOAUTH2"
OAUTHBEARER = "OAUTHBEARER"

_FORBIDDEN = frozenset("\x00\x01\r\n")


class AuthForm(Enum):
    ONE_LINE = "one-line"
    TWO_STEP = "two-step"


def _check(upn: str, access_token: str) -> None:
    if not upn or any(c in _FORBIDDEN for c in upn) or any(c.isspace() for c in upn):
        raise ValueError("the UPN for XOAUTH2 is empty or contains control characters or spaces")
    if not access_token or any(c in _FORBIDDEN or c.isspace() for c in access_token):
        raise ValueError("the access token is empty or contains control characters or spaces")


def initial_response(upn: str, access_token: str) -> str:
    """The base64 XOAUTH2 initial response. The result is a secret: never log it.

    Raises ValueError (without the token in the message) if either part would break the
    ``\\x01`` framing or the command line.
    """
    _check(upn, access_token)
    raw = f"user={upn}\x01auth=Bearer {access_token}\x01\x01"
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


def oauthbearer_initial_response(upn: str, access_token: str, host: str, port: int) -> str:
    """The base64 OAUTHBEARER initial response (RFC 7628 section 3.1). A secret: never log it."""
    _check(upn, access_token)
    # RFC 5801 section 4: "," and "=" in the authzid are written =2C and =3D.
    authzid = upn.replace("=", "=3D").replace(",", "=2C")
    host = "".join(c for c in host if c not in _FORBIDDEN)
    raw = f"n,a={authzid},\x01host={host}\x01port={port}\x01auth=Bearer {access_token}\x01\x01"
    return base64.b64encode(raw.encode("utf-8")).decode("ascii")


def error_acknowledgement(mechanism: str) -> str:
    """What the client answers to a ``334`` error challenge before the server's final 535:
    XOAUTH2 an empty line (Microsoft, Google), OAUTHBEARER ``\\x01`` (RFC 7628 3.2.3)."""
    return "AQ==" if mechanism == OAUTHBEARER else ""


def auth_line_length(response: str, mechanism: str = XOAUTH2) -> int:
    """Octets of ``AUTH <mechanism> <response>`` CRLF on the wire."""
    return len(f"AUTH {mechanism} ") + len(response) + 2


def choose_form(
    response: str, max_command_line: int = RFC5321_COMMAND_LINE, mechanism: str = XOAUTH2
) -> AuthForm:
    """One line when it fits the command line limit every server must accept, else two steps
    (RFC 4954 section 4). Exchange would take a longer line, but no server has to."""
    if auth_line_length(response, mechanism) <= max_command_line:
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
