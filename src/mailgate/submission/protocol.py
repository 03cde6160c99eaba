"""Client-side SMTP decisions that need no socket: EHLO keywords, MAIL parameters, DATA encoding.

Everything here is a pure function so it can be tested with tables; ``client.py`` only
carries the bytes these functions produce.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from dataclasses import dataclass

from mailgate.submission.replies import Reply


@dataclass(frozen=True)
class Extensions:
    """What the server offered in its EHLO reply (RFC 5321 section 4.1.1.1)."""

    keywords: dict[str, str]

    def has(self, keyword: str) -> bool:
        return keyword.upper() in self.keywords

    @property
    def auth_mechanisms(self) -> frozenset[str]:
        return frozenset(self.keywords.get("AUTH", "").upper().split())

    @property
    def size_limit(self) -> int | None:
        """RFC 1870: "SIZE 157286400"; "SIZE" or "SIZE 0" mean no fixed limit."""
        value = self.keywords.get("SIZE", "")
        return int(value) if value.isdigit() and int(value) > 0 else None


def parse_ehlo(reply: Reply) -> Extensions:
    """Keywords of an EHLO reply; the first line is the greeting, the rest "KEYWORD params"."""
    keywords: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            keywords[keyword.upper()] = params.strip()
    return Extensions(keywords)


# -- envelope ------------------------------------------------------------------------------------
def check_address(address: str, field: str) -> str:
    """Refuse addresses that would break or inject into the MAIL/RCPT command line."""
    if any(c in address for c in "\r\n\x00<>") or any(c.isspace() for c in address):
        raise ValueError(f"{field} address {address!r} contains spaces, <, > or control characters")
    return address


def needs_smtputf8(mail_from: str, rcpt_tos: list[str], data: bytes) -> bool:
    """RFC 6531 section 3.4: non-ASCII addresses or UTF-8 in the message header need SMTPUTF8."""
    if not all(a.isascii() for a in [mail_from, *rcpt_tos]):
        return True
    end = data.find(b"\r\n\r\n")
    if end < 0:
        end = data.find(b"\n\n")
    header = data if end < 0 else data[:end]
    return not header.isascii()


def needs_8bitmime(data: bytes) -> bool:
    """RFC 6152: any octet over 127 makes the body 8-bit."""
    return not data.isascii()


def mail_parameters(
    extensions: Extensions, size: int, eight_bit: bool, smtputf8: bool
) -> list[str]:
    """ESMTP parameters for MAIL FROM, only those the server offered.

    SIZE (RFC 1870 section 6) lets the server refuse an oversized message before upload.
    Callers check that 8BITMIME/SMTPUTF8 are offered when needed; see ``missing_extension``.
    """
    params: list[str] = []
    if extensions.has("SIZE"):
        params.append(f"SIZE={size}")
    if eight_bit and extensions.has("8BITMIME"):
        params.append("BODY=8BITMIME")
    if smtputf8 and extensions.has("SMTPUTF8"):
        params.append("SMTPUTF8")
    return params


def missing_extension(extensions: Extensions, eight_bit: bool, smtputf8: bool) -> str | None:
    """The extension the message needs that the server lacks, if any."""
    if smtputf8 and not extensions.has("SMTPUTF8"):
        return "SMTPUTF8"
    if eight_bit and not extensions.has("8BITMIME"):
        return "8BITMIME"
    return None


# -- DATA -------------------------------------------------------------------------------------
_LINE_ENDS = re.compile(rb"\r\n|\r|\n")
_LEADING_DOT = re.compile(rb"^\.", re.MULTILINE)


def encode_data(data: bytes) -> bytes:
    """The DATA payload on the wire, terminator included.

    RFC 5321 section 2.3.8: lines end in CRLF only, so bare CR and bare LF become CRLF
    (this also closes the SMTP smuggling hole of CVE-2023-51764 style "\\n.\\r\\n").
    Section 4.5.2: a line starting with "." gets another "."; the message ends with
    CRLF "." CRLF.
    """
    # Fast paths (C-speed counts instead of two regex passes over the whole message):
    # mail from devices is nearly always CRLF already and rarely has a line starting "."
    crlf = data.count(b"\r\n")
    body = data if crlf == data.count(b"\r") == data.count(b"\n") else _LINE_ENDS.sub(b"\r\n", data)
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    if b"\n." in body or body.startswith(b"."):
        body = _LEADING_DOT.sub(b"..", body)
    return body + b".\r\n"


# -- end of DATA -------------------------------------------------------------------------------
_QUEUE_ID = re.compile(r"<([^<>\s]+)>")
_HOSTNAME = re.compile(r"\[Hostname=([^\]\s]+)\]")
_POSTFIX_QUEUED = re.compile(r"queued as ([0-9A-Za-z]+)")
_EXIM_ID = re.compile(r"\bid=([0-9A-Za-z-]+)")


def parse_queue_id(reply: Reply) -> tuple[str | None, str | None]:
    """(queue id, server host name) from the final reply to DATA, where the server gives them.

    Exchange Online: "250 2.0.0 OK <message-id> [Hostname=SYBP282MB2635.AUSP282.PROD.
    OUTLOOK.COM]" - the id is the message's Message-ID (Outlook.com puts its own there).
    Postfix: "250 2.0.0 Ok: queued as 4Xyz"; Exim: "250 OK id=1abc-000-00".
    """
    text = reply.text
    host_match = _HOSTNAME.search(text)
    host = host_match.group(1) if host_match else None
    for pattern in (_QUEUE_ID, _POSTFIX_QUEUED, _EXIM_ID):
        match = pattern.search(text)
        if match:
            return match.group(1), host
    return None, host


# -- PIPELINING (RFC 2920) ---------------------------------------------------------------------
@dataclass(frozen=True)
class RecipientReplies:
    """Each recipient sorted by its own reply to RCPT TO."""

    accepted: tuple[str, ...]
    refused: dict[str, Reply]
    #: Refused for "too many recipients" (452 4.5.3): RFC 5321 section 4.5.3.1.10 says to
    #: send these in a later transaction, so they are neither delivered nor failed.
    deferred: tuple[str, ...]
    #: The first reply that was not a 250/251 (for the error when none was accepted).
    first_refusal: Reply | None


def sort_recipients(
    rcpt_tos: list[str], replies: list[Reply], too_many: Callable[[Reply], bool]
) -> RecipientReplies:
    """Pair pipelined RCPT replies with their recipients, in order (RFC 2920 section 3.1:
    replies come in the order the commands were sent) and classify each one on its own."""
    if len(replies) != len(rcpt_tos):
        raise ValueError("one reply per recipient is needed")
    accepted: list[str] = []
    refused: dict[str, Reply] = {}
    deferred: list[str] = []
    first: Reply | None = None
    for rcpt, reply in zip(rcpt_tos, replies, strict=True):
        if reply.code in {250, 251}:
            accepted.append(rcpt)
            continue
        first = first or reply
        if too_many(reply):
            deferred.append(rcpt)
        else:
            refused[rcpt] = reply
    return RecipientReplies(tuple(accepted), refused, tuple(deferred), first)


class AfterPipeline(enum.Enum):
    """What the client does once it has read the replies to MAIL, RCPT... and DATA."""

    #: 354 and at least one recipient: send the message.
    UPLOAD = "upload"
    #: MAIL refused, or no recipient accepted, and DATA was refused too: RSET, report.
    ABANDON = "abandon"
    #: Nothing to deliver but the server said 354 anyway (a server that does not check
    #: recipients at DATA): RFC 2920 section 3.1, end the data with a lone "." then RSET.
    END_EMPTY_DATA = "end empty data"
    #: Recipients accepted but DATA refused: RSET, report DATA's reply.
    DATA_REFUSED = "data refused"


def after_pipeline(mail: Reply, recipients: RecipientReplies, data: Reply) -> AfterPipeline:
    """The decision after a pipelined MAIL / RCPT... / DATA group."""
    deliverable = mail.code == 250 and bool(recipients.accepted)
    if data.code == 354:
        return AfterPipeline.UPLOAD if deliverable else AfterPipeline.END_EMPTY_DATA
    return AfterPipeline.DATA_REFUSED if deliverable else AfterPipeline.ABANDON
