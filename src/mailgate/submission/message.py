"""Build the MIME message that `mailgate send` submits.

Header injection is impossible by construction: every value that goes into a header is
checked for CR/LF first (with a ValueError that names the field), and addresses are parsed
into ``email.headerregistry.Address`` objects, never pasted as text. Bcc recipients go
only into the envelope (RFC 5322 section 3.6.3 allows either; hiding them is the point).

Bodies are encoded 7-bit clean (quoted-printable or base64, whichever is shorter), so the
message only needs SMTPUTF8 (RFC 6531) when an address itself is not ASCII.
"""

from __future__ import annotations

import datetime as dt
import email.policy
import email.utils
import mimetypes
from collections.abc import Iterable, Sequence
from email.errors import HeaderParseError
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

# cte_type 7bit makes set_content() pick quoted-printable/base64 for non-ASCII text.
_BUILD_POLICY = email.policy.default.clone(cte_type="7bit")


def _no_line_breaks(value: str, field: str) -> str:
    if any(c in value for c in "\r\n\x00"):
        raise ValueError(f"{field} must not contain line breaks (CR/LF) or NUL characters")
    return value


def parse_addresses(values: Iterable[str], field: str) -> list[Address]:
    """Parse "Name <a@b>" / "a@b" strings (several per string, comma-separated, allowed)."""
    addresses: list[Address] = []
    for value in values:
        _no_line_breaks(value, field)
        for name, addr in email.utils.getaddresses([value]):
            addresses.append(_address(name, addr, field, value))
    return addresses


# RFC 5322 section 3.2.3 specials that cannot appear unquoted in an address.
_SPECIALS = frozenset('()<>[]:;,\\"')


def _address(name: str, addr: str, field: str, original: str) -> Address:
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in addr):
        raise ValueError(f"{field}: {original!r} is not an e-mail address")
    try:
        return Address(display_name=name, addr_spec=addr)
    except (HeaderParseError, ValueError, IndexError) as exc:
        if addr.isascii() or any(c in addr for c in _SPECIALS):
            raise ValueError(f"{field}: {original!r} is not an e-mail address ({exc})") from None
    # RFC 6532 internationalised address: the stdlib parser only takes ASCII local parts.
    return Address(display_name=name, username=local, domain=domain)


def _unique(addresses: Sequence[Address]) -> list[str]:
    seen: set[str] = set()
    result: list[str] = []
    for address in addresses:
        key = address.addr_spec.lower()
        if key not in seen:
            seen.add(key)
            result.append(address.addr_spec)
    return result


def _attach(message: EmailMessage, path: Path) -> None:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValueError(f"attachment {path} cannot be read: {exc.strerror or exc}") from None
    mime, encoding = mimetypes.guess_type(path.name)
    # A compressed file (report.csv.gz) is not text/csv; send it as opaque bytes.
    if mime is None or encoding is not None:
        mime = "application/octet-stream"
    maintype, _, subtype = mime.partition("/")
    # Non-ASCII file names become RFC 2231 filename*=utf-8''... parameters.
    message.add_attachment(data, maintype=maintype, subtype=subtype, filename=path.name)


def build_message(
    sender: str,
    to: Sequence[str],
    cc: Sequence[str],
    bcc: Sequence[str],
    subject: str,
    body: str,
    attachments: Sequence[Path] = (),
    from_header: str | None = None,
    now: dt.datetime | None = None,
) -> tuple[EmailMessage, list[str]]:
    """The message and its envelope recipients (To, Cc and Bcc, each address once).

    *sender* is the envelope sender and, unless *from_header* ("Name <addr>") is given,
    the From address; its domain names the Message-ID. Raises ValueError naming the field.
    """
    sender_address = _address("", _no_line_breaks(sender, "sender"), "sender", sender)
    from_addresses = parse_addresses([from_header], "From") if from_header else [sender_address]
    if len(from_addresses) != 1:
        raise ValueError("From must be exactly one address")
    to_addresses = parse_addresses(to, "To")
    cc_addresses = parse_addresses(cc, "Cc")
    bcc_addresses = parse_addresses(bcc, "Bcc")
    recipients = _unique([*to_addresses, *cc_addresses, *bcc_addresses])
    if not recipients:
        raise ValueError("give at least one recipient (To, Cc or Bcc)")

    message = EmailMessage(policy=_BUILD_POLICY)
    message["From"] = from_addresses
    if to_addresses:
        message["To"] = to_addresses
    if cc_addresses:
        message["Cc"] = cc_addresses
    message["Subject"] = _no_line_breaks(subject, "Subject")
    message["Date"] = email.utils.format_datetime(now or dt.datetime.now(dt.UTC).astimezone())
    # RFC 5322 section 3.6.4: unique id; the sender's domain makes it ours.
    message["Message-ID"] = email.utils.make_msgid(domain=sender_address.domain)
    message.set_content(body)
    for path in attachments:
        _attach(message, path)
    return message, recipients


def needs_smtputf8(message: EmailMessage) -> bool:
    """An address in From/To/Cc is not ASCII (RFC 6531): headers must go out as UTF-8."""
    for field in ("From", "To", "Cc", "Reply-To"):
        header = message.get(field)
        for address in getattr(header, "addresses", ()):
            if not str(address.addr_spec).isascii():
                return True
    return False


def serialize(message: EmailMessage) -> bytes:
    """The message as octets for DATA: CRLF line ends, headers folded at 78 (RFC 5322 2.1.1)."""
    policy = email.policy.SMTPUTF8 if needs_smtputf8(message) else email.policy.SMTP
    return message.as_bytes(policy=policy)
