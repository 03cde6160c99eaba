"""SMTP replies from the upstream server: parsing, and what each one means for mailgate.

Theory of operation: :class:`ReplyReader` turns bytes from the server into :class:`Reply`
objects (RFC 5321 section 4.2: "ddd-text" continuation lines, "ddd text" final line) and
knows nothing of sockets. :func:`classify` then decides what a reply means - accepted,
retry later, hold until someone signs in, use fewer connections, split the recipients,
fail the message - and words an explanation for the administrator with the UPN and
addresses filled in.

Exchange's texts drift between clouds and over the years, so classification looks at the
reply code, the enhanced status code (RFC 3463 / RFC 2034) and a few stable keywords
(`SendAsDenied`, `SubmissionQuotaExceeded`, "for the Tenant"), never at whole sentences.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

#: RFC 5321 section 4.5.3.1.5 allows 512 octets per reply line; real servers send more
#: (Exchange's SendAsDenied line is ~450 before the UPN and address). Bound memory anyway.
MAX_REPLY_LINE = 16 * 1024
MAX_REPLY_SIZE = 64 * 1024

# RFC 3463 section 2: class "." subject "." detail, subject and detail up to 3 digits.
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?=\s|$)")


class ReplyError(Exception):
    """The server sent something that is not an SMTP reply."""


@dataclass(frozen=True)
class Reply:
    """One complete SMTP reply; ``lines`` are the texts after "ddd-" / "ddd "."""

    code: int
    lines: tuple[str, ...] = ("",)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    @property
    def enhanced(self) -> str | None:
        """The enhanced status code ("5.7.139"), if the first line starts with one."""
        match = _ENHANCED.match(self.lines[0]) if self.lines else None
        return match.group(0) if match else None

    @property
    def detail(self) -> str:
        """The first line's text without the enhanced status code."""
        first = self.lines[0] if self.lines else ""
        enhanced = self.enhanced
        return first[len(enhanced) :].strip() if enhanced else first.strip()

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    def __str__(self) -> str:
        return "\n".join(f"{self.code} {line}".rstrip() for line in self.lines)


def enhanced_status(text: str | None) -> str | None:
    """The enhanced status code of a reply kept as text (``str(Reply)``, as the queue keeps
    a recipient's reply): "5.2.252" from "554 5.2.252 SendAsDenied; ...", else None."""
    first = (text or "").split("\n", 1)[0]
    code, _, rest = first.partition(" ")
    match = _ENHANCED.match(rest) if len(code) == 3 and code.isdigit() else None
    return match.group(0) if match else None


def parse_reply(text: str) -> Reply:
    """Parse a complete reply written out as text (one or more CRLF- or LF-separated lines)."""
    reader = ReplyReader()
    reader.feed((text.rstrip("\r\n") + "\r\n").encode("utf-8"))
    reply = reader.next_reply()
    if reply is None or reader.buffered:
        raise ReplyError(f"not exactly one complete SMTP reply: {text!r}")
    return reply


class ReplyReader:
    """Incremental reply parser: ``feed()`` bytes as they arrive, ``next_reply()`` when whole.

    Bytes after a complete reply stay buffered (``buffered`` > 0); before a STARTTLS
    upgrade that must be zero, or a man in the middle injected plaintext commands
    (RFC 3207 section 4.2, CVE-2011-0411).
    """

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._lines: list[str] = []
        self._size = 0

    @property
    def buffered(self) -> int:
        return len(self._buffer)

    def feed(self, data: bytes) -> None:
        self._buffer.extend(data)

    def next_reply(self) -> Reply | None:
        """The next complete reply, or None until more bytes arrive."""
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > MAX_REPLY_LINE:
                    raise ReplyError("reply line too long")
                return None
            raw = bytes(self._buffer[: end + 1])
            del self._buffer[: end + 1]
            reply = self._take_line(raw)
            if reply is not None:
                return reply

    def _take_line(self, raw: bytes) -> Reply | None:
        self._size += len(raw)
        if len(raw) > MAX_REPLY_LINE or self._size > MAX_REPLY_SIZE:
            raise ReplyError("reply too long")
        line = raw.rstrip(b"\r\n").decode("utf-8", "replace")
        if len(line) < 3 or not line[:3].isdigit() or line[3:4] not in ("", " ", "-"):
            raise ReplyError(f"malformed reply line: {line[:80]!r}")
        code = int(line[:3])
        self._lines.append(line[4:])
        if line[3:4] == "-":
            return None
        lines, self._lines, self._size = tuple(self._lines), [], 0
        return Reply(code, lines)


# -- classification ---------------------------------------------------------------------------
class ReplyKind(StrEnum):
    ACCEPTED = "accepted"
    #: 4xx: try again later with backoff.
    TEMPORARY = "temporary"
    #: The server did not accept our credentials or needs them: hold until sign-in / fix.
    AUTH = "auth"
    #: 432 4.3.2: too many connections or submissions at once for this mailbox.
    THROTTLED = "throttled"
    #: 554 5.2.0 SubmissionQuotaExceeded: the rolling 24-hour recipient quota is used up.
    QUOTA = "quota"
    #: 554 5.2.252: the mailbox may not send as this address.
    SEND_AS_DENIED = "send-as-denied"
    #: 452 4.5.3: more recipients than the server takes in one message.
    TOO_MANY_RECIPIENTS = "too-many-recipients"
    #: 552 5.3.4: message larger than the server or mailbox allows.
    TOO_LARGE = "too-large"
    #: Any other 5xx: the message fails.
    PERMANENT = "permanent"
    #: No reply at all: connection refused, reset, timed out, TLS failed (made up locally).
    NETWORK = "network"


class Action(StrEnum):
    """What the caller (the `send` command, the delivery engine) should do next."""

    NONE = "none"
    RETRY = "retry"
    HOLD_UNTIL_SIGN_IN = "hold-until-sign-in"
    FEWER_CONNECTIONS = "fewer-connections"
    DEFER_UNTIL_QUOTA_WINDOW = "defer-until-quota-window"
    SPLIT_RECIPIENTS = "split-recipients"
    FAIL = "fail"


_ACTIONS: dict[ReplyKind, Action] = {
    ReplyKind.ACCEPTED: Action.NONE,
    ReplyKind.TEMPORARY: Action.RETRY,
    ReplyKind.NETWORK: Action.RETRY,
    ReplyKind.AUTH: Action.HOLD_UNTIL_SIGN_IN,
    ReplyKind.THROTTLED: Action.FEWER_CONNECTIONS,
    # Exchange calls this a "permanent exception", but the quota is a rolling 24-hour
    # window: the same message goes through once older submissions leave it. Bouncing
    # would lose mail a device cannot resend, so we defer (within the queue lifetime).
    ReplyKind.QUOTA: Action.DEFER_UNTIL_QUOTA_WINDOW,
    ReplyKind.TOO_MANY_RECIPIENTS: Action.SPLIT_RECIPIENTS,
    ReplyKind.SEND_AS_DENIED: Action.FAIL,
    ReplyKind.TOO_LARGE: Action.FAIL,
    ReplyKind.PERMANENT: Action.FAIL,
}


@dataclass(frozen=True)
class ReplyContext:
    """What the explanation may name. Nothing here is secret."""

    upn: str | None = None
    #: The envelope sender (MAIL FROM) that was refused or used.
    sender_address: str | None = None
    #: The signed-in account's primary address (the ID token's `email` claim).
    primary_address: str | None = None
    #: True when signing in with XOAUTH2 (an OAuth provider), False for passwords.
    oauth: bool = True
    server: str | None = None
    #: Exchange Online allows 3 concurrent connections per mailbox.
    mailbox_connection_limit: int = 3


@dataclass(frozen=True)
class Classification:
    kind: ReplyKind
    #: One sentence: what happened, in an administrator's words.
    summary: str
    #: What to do about it, with commands and names filled in.
    advice: str

    @property
    def action(self) -> Action:
        return _ACTIONS[self.kind]

    @property
    def transient(self) -> bool:
        """Trying the same message again later may succeed without anyone doing anything."""
        return self.kind in {
            ReplyKind.TEMPORARY,
            ReplyKind.NETWORK,
            ReplyKind.THROTTLED,
            ReplyKind.QUOTA,
            ReplyKind.TOO_MANY_RECIPIENTS,
        }

    @property
    def bounces(self) -> bool:
        """The message fails for good: report it to its sender."""
        return self.action is Action.FAIL

    def __str__(self) -> str:
        return f"{self.summary} {self.advice}".strip()


def _upn(ctx: ReplyContext) -> str:
    return ctx.upn or "<upn>"


def _has(reply: Reply, *words: str) -> bool:
    text = reply.text.lower()
    return any(word.lower() in text for word in words)


def _smtp_auth_disabled(reply: Reply, ctx: ReplyContext) -> Classification:
    # 5.7.139: the same enhanced code covers three causes; the stable words tell them apart.
    upn = _upn(ctx)
    mailbox_fix = f"Set-CASMailbox -Identity {upn} -SmtpClientAuthenticationDisabled $false"
    tenant_fix = "Set-TransportConfig -SmtpClientAuthenticationDisabled $false"
    if _has(reply, "for the tenant"):
        return Classification(
            ReplyKind.AUTH,
            "SMTP AUTH is turned off for the whole Microsoft 365 tenant; this also blocks XOAUTH2.",
            f"An Exchange administrator can allow it for this mailbox only with "
            f"`{mailbox_fix}` (recommended), or for the tenant with `{tenant_fix}`. "
            "Changes can take an hour to apply. See https://aka.ms/smtp_auth_disabled.",
        )
    if _has(reply, "for the mailbox"):
        return Classification(
            ReplyKind.AUTH,
            f"SMTP AUTH is turned off for the mailbox {upn}; this also blocks XOAUTH2.",
            f"An Exchange administrator can turn it on with `{mailbox_fix}`. "
            "Changes can take an hour to apply. See https://aka.ms/smtp_auth_disabled.",
        )
    if _has(reply, "basic authentication"):
        return Classification(
            ReplyKind.AUTH,
            "Exchange Online no longer accepts passwords (basic authentication) for SMTP.",
            "Choose an OAuth provider, e.g. `mailgate config provider exchange-online "
            "--client-id <GUID>`, then sign in with `mailgate login`.",
        )
    return Classification(
        ReplyKind.AUTH,
        f"SMTP AUTH is turned off for the tenant or for the mailbox {upn}.",
        f"An Exchange administrator can turn it on with `{mailbox_fix}` "
        f"(or for the tenant: `{tenant_fix}`). See https://aka.ms/smtp_auth_disabled.",
    )


def _auth_unsuccessful(reply: Reply, ctx: ReplyContext) -> Classification:
    if not ctx.oauth:
        server = f"The SMTP server {ctx.server}" if ctx.server else "The SMTP server"
        return Classification(
            ReplyKind.AUTH,
            f"{server} refused the user name or password.",
            "Check the SMTP user name and password in the settings (`mailgate config show`).",
        )
    # No server name in the words: the same 535 comes from Exchange (5.7.3) and from any
    # RFC 4954 server (Dovecot: 5.7.8), and mailgate already refreshed the token once.
    server = f"The SMTP server {ctx.server}" if ctx.server else "The SMTP server"
    code = " ".join(part for part in (str(reply.code), reply.enhanced) if part)
    return Classification(
        ReplyKind.AUTH,
        f"{server} refused the sign-in token for {_upn(ctx)} ({code}: authentication failed).",
        "Sign in again with `mailgate login`, and check that the account is the one that "
        f"should send (UPN {_upn(ctx)}), that the scope setting names the server's SMTP "
        "permission (Exchange: SMTP.Send of your cloud) and that SMTP AUTH is allowed for the "
        "mailbox. Mail is held until the next successful sign-in.",
    )


def _not_authenticated(reply: Reply, ctx: ReplyContext) -> Classification:
    how = (
        "Sign in with `mailgate login`."
        if ctx.oauth
        else "Set an SMTP user name and password for this server in the settings."
    )
    return Classification(
        ReplyKind.AUTH,
        "The server wants the client to authenticate before it accepts mail.",
        how,
    )


def _basic_auth_not_supported(reply: Reply, ctx: ReplyContext) -> Classification:
    return Classification(
        ReplyKind.AUTH,
        "Exchange does not accept passwords (basic authentication) for client submission.",
        "Choose an OAuth provider (`mailgate config provider exchange-online --client-id "
        "<GUID>`) and sign in with `mailgate login`.",
    )


def _send_as_denied(reply: Reply, ctx: ReplyContext) -> Classification:
    sender = ctx.sender_address or "the sender address"
    own = ctx.primary_address or "its primary address"
    return Classification(
        ReplyKind.SEND_AS_DENIED,
        f"Exchange refused to let {_upn(ctx)} send as {sender} (SendAsDenied).",
        f"The signed-in account may only send as {own}, one of its aliases, or an address "
        "it has Send As permission on (granted in the Exchange admin center). Set the "
        "sender address setting to one of those, or use the sender policy `rewrite` so "
        "relayed mail goes out from the sender address.",
    )


def _throttled(reply: Reply, ctx: ReplyContext) -> Classification:
    return Classification(
        ReplyKind.THROTTLED,
        f"Too many connections or submissions at once for {_upn(ctx)}: Exchange allows "
        f"{ctx.mailbox_connection_limit} concurrent connections per mailbox.",
        "mailgate will retry with fewer connections. Stop other devices or programs that "
        "send as the same mailbox at the same time, or give them their own mailbox.",
    )


def _quota(reply: Reply, ctx: ReplyContext) -> Classification:
    return Classification(
        ReplyKind.QUOTA,
        f"The mailbox {_upn(ctx)} has used up its sending quota (Exchange Online: 10,000 "
        "recipients in any 24 hours).",
        "The message is kept and sent once the 24-hour window allows it. To send more, "
        "spread the mail over several mailboxes or use a bulk mail service.",
    )


def _too_many_recipients(reply: Reply, ctx: ReplyContext) -> Classification:
    return Classification(
        ReplyKind.TOO_MANY_RECIPIENTS,
        "The server takes no more recipients in this message (Exchange: 500 per message).",
        "The remaining recipients are sent in another message.",
    )


def _too_large(reply: Reply, ctx: ReplyContext) -> Classification:
    return Classification(
        ReplyKind.TOO_LARGE,
        "The message is larger than the server allows (Exchange Online: 35 MB by default, "
        "the mailbox's MaxSendSize; attachments grow by a third when encoded).",
        "Send smaller attachments, or have an Exchange administrator raise MaxSendSize "
        f"(`Set-Mailbox -Identity {_upn(ctx)} -MaxSendSize 150MB`).",
    )


def _temporary(reply: Reply, ctx: ReplyContext) -> Classification:
    return Classification(
        ReplyKind.TEMPORARY,
        f"The server could not take the message right now ({reply.code} {reply.detail}).",
        "mailgate tries again later; nothing to do unless it keeps happening.",
    )


def _permanent(reply: Reply, ctx: ReplyContext) -> Classification:
    return Classification(
        ReplyKind.PERMANENT,
        f"The server refused permanently ({reply.code} {reply.detail}).",
        "The message is not retried. Check the server's reply; if a recipient or the sender "
        "address is wrong, correct it and send again.",
    )


def _accepted(reply: Reply, ctx: ReplyContext) -> Classification:
    return Classification(ReplyKind.ACCEPTED, "Accepted.", "")


_Rule = tuple[Callable[[Reply], bool], Callable[[Reply, ReplyContext], Classification]]

# First match wins; order matters (a 535 5.7.139 must not be read as a plain 535).
_RULES: tuple[_Rule, ...] = (
    (lambda r: r.positive, _accepted),
    (lambda r: r.enhanced == "5.7.139", _smtp_auth_disabled),
    (lambda r: r.enhanced == "5.7.30", _basic_auth_not_supported),
    (lambda r: r.enhanced == "5.7.57" or r.code == 530, _not_authenticated),
    # 535 (RFC 4954 section 6) and the credential codes 5.7.3 / 5.7.8; 534/538 are
    # "mechanism too weak" / "encryption required" for the chosen mechanism.
    (lambda r: r.code in {534, 535, 538} or r.enhanced in {"5.7.3", "5.7.8"}, _auth_unsuccessful),
    (lambda r: r.enhanced == "5.2.252" or _has(r, "SendAsDenied"), _send_as_denied),
    (lambda r: _has(r, "SubmissionQuotaExceeded"), _quota),
    # 432 is Exchange's concurrency reply; 4.3.2 alone ("system not accepting network
    # messages", RFC 3463) is also used by a 421 for maintenance, which is not throttling.
    (
        lambda r: r.code == 432 or (r.enhanced == "4.3.2" and _has(r, "concurrent", "thread")),
        _throttled,
    ),
    # RFC 5321 section 4.5.3.1.10: 452 "too many recipients"; RFC 3463: X.5.3.
    (
        lambda r: r.enhanced in {"4.5.3", "5.5.3"} or (r.code == 452 and _has(r, "recipients")),
        _too_many_recipients,
    ),
    # RFC 3463: X.3.4 "message too big for system", X.2.3 "message length exceeds limit".
    (
        lambda r: r.enhanced in {"5.3.4", "5.2.3", "4.3.4"} or (r.code == 552 and not r.enhanced),
        _too_large,
    ),
    (lambda r: 400 <= r.code < 500, _temporary),
)


def classify(reply: Reply, context: ReplyContext | None = None) -> Classification:
    """What *reply* means and what to do about it; see :class:`ReplyKind`."""
    ctx = context or ReplyContext()
    for matches, explain in _RULES:
        if matches(reply):
            return explain(reply, ctx)
    return _permanent(reply, ctx)


def token_may_be_stale(reply: Reply) -> bool:
    """After this reply to AUTH with a bearer token, is one refresh and one more try worth it?

    Any 535 (RFC 4954 section 6: credentials invalid) may mean the token expired or was
    revoked early on the server's side: Exchange says 5.7.3, Dovecot 5.7.8, others nothing.
    Not 5.7.139: SMTP AUTH is off for the tenant or mailbox, a new token does not help.
    """
    return reply.code == 535 and reply.enhanced != "5.7.139"


def network_failure(what: str, advice: str | None = None) -> Classification:
    """A classification for faults with no reply (refused, reset, timed out, TLS)."""
    return Classification(
        ReplyKind.NETWORK,
        what,
        advice or "mailgate tries again later; `mailgate doctor` checks the way to the server.",
    )
