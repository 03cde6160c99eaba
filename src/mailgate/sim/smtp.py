"""The simulated Exchange Online SMTP submission server (smtp.office365.com:587).

Theory of operation: :class:`ExchangeSmtpServer` listens with ``asyncio.start_server`` and
runs one :class:`_Session` per connection. A session reads through :class:`_Stream`, its own
byte buffer, so it decides exactly what ends a line, a DATA text (only CRLF.CRLF - a bare LF
never does, which closes the SMTP smuggling hole) and a BDAT chunk, and can throw away
plaintext pipelined after STARTTLS (RFC 3207 section 4.2; CVE-2011-0411). Replies come from
:mod:`mailgate.sim.exchange_replies`; per-mailbox limits are decided by the pure
:class:`mailgate.sim.limits.MailboxLimiter`; tokens are checked against the access tokens the
simulated identity platform issued into :class:`SimState`.

Why not aiosmtpd (which the product's gateway uses): Exchange's replies differ from
aiosmtpd's hard-coded ones almost everywhere - the EHLO keyword list and order, 504 instead
of 538 for AUTH before TLS, 530 5.7.57, "500 5.5.2 Line too long", enhanced codes on every
reply - and aiosmtpd has no BDAT/CHUNKING, which Exchange advertises. Overriding nearly
every ``smtp_*`` method of an untyped 1,500-line class would leave little of it and break
``mypy --strict``; Python 3.11's ``StreamWriter.start_tls`` makes STARTTLS a single call.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import enum
import logging
import re
import socket
import ssl
import struct
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.message import Message
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from typing import TypeAlias

from mailgate.sim import exchange_replies as replies
from mailgate.sim.directory import Mailbox
from mailgate.sim.limits import MailboxLimiter, Verdict
from mailgate.sim.state import SimState
from mailgate.transports import abort

logger = logging.getLogger(__name__)

#: Longest line taken at all. Exchange accepts AUTH lines carrying 2.5 KB tokens (SPEC), so
#: this is generous; ``Scenario.max_command_line`` imitates stricter servers below it.
HARD_LINE_LIMIT = 64 * 1024
IDLE_TIMEOUT = 600.0
_READ_SIZE = 256 * 1024

_PATH = re.compile(r"^(?P<kw>FROM|TO):\s*<(?P<addr>[^<>\s]*)>(?P<params>(\s+\S+)*)\s*$", re.I)
_Handler: TypeAlias = Callable[[str], Awaitable[None]]
_BDAT = re.compile(r"^(?P<size>\d{1,10})(?P<last>\s+LAST)?$", re.I)


# -- pure helpers -------------------------------------------------------------------------
@dataclass(frozen=True)
class XOAuth2Credentials:
    user: str
    token: str


def decode_xoauth2(response: str) -> XOAuth2Credentials | None:
    """Decode the XOAUTH2 initial response: base64("user=" UPN ^A "auth=Bearer " token ^A ^A)."""
    try:
        raw = base64.b64decode(response.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    parts = raw.split("\x01")
    if len(parts) < 3 or parts[-2:] != ["", ""]:
        return None
    fields: dict[str, str] = {}
    for part in parts[:-2]:
        key, sep, value = part.partition("=")
        if not sep:
            return None
        fields[key.lower()] = value
    scheme, _, token = fields.get("auth", "").partition(" ")
    user = fields.get("user", "")
    if not user or scheme.lower() != "bearer" or not token:
        return None
    return XOAuth2Credentials(user=user, token=token)


class AuthOutcome(enum.Enum):
    OK = "ok"
    BAD_TOKEN = "bad-token"
    TENANT_DISABLED = "tenant-disabled"
    MAILBOX_DISABLED = "mailbox-disabled"


def check_xoauth2(
    state: SimState, creds: XOAuth2Credentials | None, now: float
) -> tuple[AuthOutcome, Mailbox | None]:
    """Exchange's verdict on an XOAUTH2 attempt.

    A token counts only if the simulated sign-in issued it, it has not expired, it carries
    this cloud's SMTP.Send scope and ``user=`` names the mailbox it was issued to: its UPN,
    primary address or an alias (Exchange resolves any address of the mailbox, and compares
    case-insensitively). Turning SMTP AUTH off for the tenant or the mailbox blocks XOAUTH2
    too (SPEC), answered with 5.7.139 rather than 5.7.3.
    """
    if creds is None:
        return AuthOutcome.BAD_TOKEN, None
    grant = state.lookup_access_token(creds.token)
    if grant is None or grant.expires_at <= now or not state.profile.smtp_scope_in(grant.scopes):
        return AuthOutcome.BAD_TOKEN, None
    mailbox = state.directory.get(grant.upn)
    if (
        mailbox is None
        or creds.user.lower() not in mailbox.addresses
        or not mailbox.account_enabled
    ):
        return AuthOutcome.BAD_TOKEN, None
    if state.scenario.smtp_auth_disabled_tenant:
        return AuthOutcome.TENANT_DISABLED, mailbox
    if not mailbox.smtp_auth_enabled:
        return AuthOutcome.MAILBOX_DISABLED, mailbox
    return AuthOutcome.OK, mailbox


def parse_headers(data: bytes) -> Message:
    """The header block of a message (the body is not parsed: messages may be 35 MB)."""
    end = data.find(b"\r\n\r\n")
    head = data if end < 0 else data[: end + 2]
    return BytesHeaderParser(policy=compat32).parsebytes(head)


def denied_sender(mailbox: Mailbox, mail_from: str, headers: Message) -> str | None:
    """The first address the mailbox may not send as, or None.

    Exchange Online checks the envelope sender and the From header at submission
    (SendAsDenied arrives after DATA, not at MAIL). A null reverse-path (``<>``) is left to
    the From header check.
    """
    candidates = [mail_from] if mail_from else []
    candidates += [addr for _, addr in getaddresses([str(v) for v in headers.get_all("From", [])])]
    for address in candidates:
        if address and not mailbox.may_send_as(address):
            return address
    return None


def message_id(headers: Message, host: str) -> str:
    """The Message-ID Exchange echoes in its 250; Exchange adds one when the client did not."""
    value = str(headers.get("Message-ID", "")).strip()
    if value.startswith("<") and value.endswith(">"):
        return value
    return f"<{replies.exchange_id()}@{host}>"


def unstuff(text: bytes) -> bytes:
    """Undo dot-stuffing (RFC 5321 section 4.5.2): drop the first "." of every line."""
    if text.startswith(b"."):
        text = text[1:]
    return text.replace(b"\r\n.", b"\r\n")


# -- byte stream --------------------------------------------------------------------------
class _ClientGone(Exception):
    """The peer closed the connection, or the server dropped it."""


class _Stream:
    """Reads lines, DATA texts and BDAT chunks from one connection, with its own buffer."""

    def __init__(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        reply_delay: Callable[[], float] = lambda: 0.0,
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.buf = bytearray()
        #: Seconds to wait before each reply (Scenario.smtp_reply_delay, read at each write).
        self.reply_delay = reply_delay

    async def _fill(self) -> None:
        async with asyncio.timeout(IDLE_TIMEOUT):
            chunk = await self.reader.read(_READ_SIZE)
        if not chunk:
            raise _ClientGone
        self.buf += chunk

    async def read_line(self, limit: int) -> bytes | None:
        """One line without its line ending; None if it was longer than *limit* octets
        (CRLF included), in which case the whole line has been consumed."""
        start, too_long = 0, False
        while True:
            end = self.buf.find(b"\n", start)
            if end >= 0:
                line = bytes(self.buf[:end])
                del self.buf[: end + 1]
                if too_long or end + 1 > limit:
                    return None
                return line.removesuffix(b"\r")
            if len(self.buf) > limit:
                too_long = True
                self.buf.clear()
            start = len(self.buf)
            await self._fill()

    async def read_data(self, keep: int) -> tuple[bytes, bool]:
        """The text after DATA up to the "." line, unstuffed; True if it exceeded *keep*.

        Only CRLF "." CRLF ends it (RFC 5321 section 4.1.1.4). Reading goes on past *keep*
        without storing, so the reply comes at the end of the text as Exchange sends it.
        """
        kept = bytearray()
        overflow = False
        tail = b"\r\n"  # the DATA line's CRLF: the text starts at a line start
        while True:
            combined = tail + bytes(self.buf)
            found = combined.find(b"\r\n.\r\n")
            if found >= 0:
                text_end = found + 2  # the CRLF before the dot belongs to the text
                if text_end >= len(tail):
                    if not overflow:
                        kept += combined[len(tail) : text_end]
                else:
                    del kept[text_end - len(tail) :]
                self.buf = bytearray(combined[found + 5 :])
                overflow = overflow or len(kept) > keep
                return unstuff(bytes(kept)), overflow
            if not overflow:
                kept += self.buf
                overflow = len(kept) > keep + 2
            tail = combined[-4:]
            self.buf.clear()
            await self._fill()

    async def reset_in_data(self) -> None:
        """Fault injection: wait for part of the DATA text, then reset the connection (RST,
        not FIN: SO_LINGER 0), as a crashing server or a middlebox does."""
        if not self.buf:
            await self._fill()
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        abort(self.writer.transport)
        raise _ClientGone

    async def read_chunk(self, size: int, keep: int) -> bytes:
        """Exactly *size* octets (a BDAT chunk, RFC 3030), of which at most *keep* + 1 are kept."""
        kept = bytearray()
        remaining = size
        while remaining:
            if not self.buf:
                await self._fill()
            take = min(remaining, len(self.buf))
            room = keep + 1 - len(kept)
            if room > 0:
                kept += self.buf[: min(take, room)]
            del self.buf[:take]
            remaining -= take
        return bytes(kept)

    async def write(self, *lines: str) -> None:
        delay = self.reply_delay()
        if delay > 0:
            await asyncio.sleep(delay)
        self.writer.write("".join(line + "\r\n" for line in lines).encode("utf-8"))
        await self.writer.drain()


# -- one connection -----------------------------------------------------------------------
class _Session:
    def __init__(
        self, server: ExchangeSmtpServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.server = server
        self.state = server.state
        self.stream = _Stream(reader, writer, lambda: self.state.scenario.smtp_reply_delay)
        self.id = replies.exchange_id()
        peer = writer.get_extra_info("peername")
        self.client_ip = str(peer[0]) if peer else "127.0.0.1"
        self.tls = False
        self.greeted = False
        self.mailbox: Mailbox | None = None
        self.closing = False
        self._reset()

    @property
    def host(self) -> str:
        return self.state.profile.banner_host

    def _reset(self) -> None:
        self.mail_from: str | None = None
        self.rcpts: list[str] = []
        self.chunks: bytearray | None = None

    def _max_size(self) -> int:
        if self.state.scenario.limits:
            return self.server.limiter.limits.max_message_size
        return replies.ADVERTISED_SIZE

    async def run(self) -> None:
        refusal = self.state.scenario.smtp_connect_reply
        if refusal:
            # RFC 5321 section 3.1: a server may answer the connection with 421 (or 554).
            await self.stream.write(refusal)
            return
        await self.stream.write(replies.banner(self.host, self.state.clock()))
        while not self.closing:
            line = await self.stream.read_line(HARD_LINE_LIMIT)
            limit = self.state.scenario.max_command_line
            # Dovecot-like strictness (RFC 4954 section 4 allows it): CRLF counts.
            if line is None or (limit is not None and len(line) + 2 > limit):
                await self.stream.write(replies.LINE_TOO_LONG)
                continue
            text = line.decode("utf-8", "replace")
            verb, _, arg = text.strip().partition(" ")
            handler = self._handlers().get(verb.upper())
            if handler is None:
                await self.stream.write(replies.unrecognized_command(verb.upper()))
                continue
            try:
                await handler(arg.strip())
            except (_ClientGone, ConnectionError, ssl.SSLError, TimeoutError):
                raise
            except Exception:
                # Never show internal error text to a client; the log gets the details.
                logger.exception("simulated Exchange failed on %s", verb.upper())
                self._reset()
                await self.stream.write(replies.TEMPORARY_SERVER_ERROR)

    def _handlers(self) -> dict[str, _Handler]:
        return {
            "EHLO": self.ehlo,
            "HELO": self.helo,
            "STARTTLS": self.starttls,
            "AUTH": self.auth,
            "MAIL": self.mail,
            "RCPT": self.rcpt,
            "DATA": self.data,
            "BDAT": self.bdat,
            "RSET": self.rset,
            "NOOP": self.noop,
            "QUIT": self.quit,
        }

    # -- greeting and TLS -----------------------------------------------------------------
    async def ehlo(self, arg: str) -> None:
        if not arg:
            await self.stream.write(replies.INVALID_DOMAIN)
            return
        self.greeted = True
        self._reset()
        lines = replies.ehlo_lines(self.host, self.client_ip, self.tls)
        await self.stream.write(*(f"250-{line}" for line in lines[:-1]), f"250 {lines[-1]}")

    async def helo(self, arg: str) -> None:
        if not arg:
            await self.stream.write(replies.INVALID_DOMAIN)
            return
        self.greeted = True
        self._reset()
        await self.stream.write(replies.helo(self.host, self.client_ip))

    async def starttls(self, arg: str) -> None:
        if arg:
            await self.stream.write(replies.INVALID_ARGUMENTS)
            return
        if self.tls:
            await self.stream.write(replies.BAD_SEQUENCE)
            return
        if not self.greeted:
            await self.stream.write(replies.SEND_HELLO_FIRST)
            return
        await self.stream.write(replies.STARTTLS_READY)
        # RFC 3207 section 4.2: forget everything said before TLS, including pipelined text.
        self.stream.buf.clear()
        if self.state.scenario.smtp_tls_failure:
            # Fault injection: what the client reads as its ServerHello is not TLS at all.
            self.stream.writer.write(b"HTTP/1.0 400 not TLS\r\n\r\n")
            await self.stream.writer.drain()
            abort(self.stream.writer.transport)
            raise _ClientGone
        await self.stream.writer.start_tls(self.server.tls_context)
        self.tls = True
        self.greeted = False
        self._reset()

    # -- authentication -------------------------------------------------------------------
    async def auth(self, arg: str) -> None:
        if not self.tls:
            # Exchange offers no mechanism before STARTTLS.
            await self.stream.write(replies.UNRECOGNIZED_AUTH_TYPE)
            return
        if not self.greeted:
            await self.stream.write(replies.SEND_HELLO_FIRST)
            return
        if self.mailbox is not None:
            await self.stream.write(replies.ALREADY_AUTHENTICATED)
            return
        if self.mail_from is not None:
            await self.stream.write(replies.BAD_SEQUENCE)
            return
        mechanism, _, initial = arg.partition(" ")
        initial_response = initial.strip() or None
        if mechanism.upper() == "XOAUTH2":
            await self._auth_xoauth2(initial_response)
        elif mechanism.upper() == "LOGIN":
            await self._auth_login(initial_response)
        else:
            await self.stream.write(replies.UNRECOGNIZED_AUTH_TYPE)

    async def _read_sasl_response(self) -> str | None:
        """A SASL continuation line (not a command: ``max_command_line`` does not apply)."""
        line = await self.stream.read_line(HARD_LINE_LIMIT)
        if line is None:
            await self.stream.write(replies.LINE_TOO_LONG)
            return None
        text = line.decode("ascii", "replace").strip()
        if text == "*":  # RFC 4954 section 4: the client cancels
            await self.stream.write(replies.AUTH_ABORTED)
            return None
        return text

    async def _auth_xoauth2(self, initial: str | None) -> None:
        if initial is None:
            await self.stream.write(replies.AUTH_CONTINUE)
            initial = await self._read_sasl_response()
            if initial is None:
                return
        now = self.state.clock()
        outcome, mailbox = check_xoauth2(self.state, decode_xoauth2(initial), now)
        counters = self.state.counters
        if outcome is AuthOutcome.OK and mailbox is not None:
            with self.state.lock:
                counters.smtp_auth_success += 1
            self.mailbox = mailbox
            self.server.limiter.sessions.open(mailbox.upn.lower(), self.id)
            await self.stream.write(replies.AUTH_SUCCESS)
            return
        with self.state.lock:
            counters.smtp_auth_failure += 1
        if outcome is AuthOutcome.TENANT_DISABLED:
            await self.stream.write(replies.smtp_auth_disabled("Tenant", self.host, now))
        elif outcome is AuthOutcome.MAILBOX_DISABLED:
            await self.stream.write(replies.smtp_auth_disabled("Mailbox", self.host, now))
        else:
            if self.state.scenario.xoauth2_error_challenge:
                # RFC 7628 section 3.2.2: error as a challenge; any client answer ends it.
                await self.stream.write(
                    replies.xoauth2_error_challenge(self.state.profile.smtp_scope)
                )
                if await self.stream.read_line(HARD_LINE_LIMIT) is None:
                    await self.stream.write(replies.LINE_TOO_LONG)
                    return
            await self.stream.write(replies.auth_unsuccessful(self.host, self.state.clock()))

    async def _auth_login(self, initial: str | None) -> None:
        """AUTH LOGIN is advertised, but a password never works: basic auth is off."""
        if initial is None:
            await self.stream.write(replies.AUTH_LOGIN_USERNAME)
            if await self._read_sasl_response() is None:
                return
        await self.stream.write(replies.AUTH_LOGIN_PASSWORD)
        if await self._read_sasl_response() is None:
            return
        with self.state.lock:
            self.state.counters.smtp_auth_failure += 1
        if self.state.scenario.basic_auth_reply == "5.7.30":
            await self.stream.write(replies.BASIC_AUTH_NOT_SUPPORTED)
        else:
            await self.stream.write(replies.basic_auth_disabled(self.host, self.state.clock()))

    # -- the mail transaction -------------------------------------------------------------
    async def _may_transact(self) -> bool:
        if not self.greeted:
            await self.stream.write(replies.SEND_HELLO_FIRST)
            return False
        if self.mailbox is None:
            await self.stream.write(replies.not_authenticated(self.host, self.state.clock()))
            return False
        return True

    async def mail(self, arg: str) -> None:
        if not await self._may_transact():
            return
        if self.mail_from is not None:
            await self.stream.write(replies.SENDER_ALREADY_SPECIFIED)
            return
        match = _PATH.match(arg)
        if match is None or match["kw"].upper() != "FROM":
            await self.stream.write(replies.INVALID_SENDER)
            return
        for param in match["params"].split():
            name, _, value = param.partition("=")
            if name.upper() == "SIZE":
                if not value.isdigit():
                    await self.stream.write(replies.INVALID_ARGUMENTS)
                    return
                # RFC 1870: refuse a declared size at MAIL instead of after the transfer.
                if int(value) > self._max_size():
                    await self.stream.write(replies.MESSAGE_TOO_BIG)
                    return
        self.mail_from = match["addr"]
        await self.stream.write(replies.SENDER_OK)

    async def rcpt(self, arg: str) -> None:
        if not await self._may_transact():
            return
        if self.mail_from is None:
            await self.stream.write(replies.NEED_MAIL)
            return
        match = _PATH.match(arg)
        if match is None or match["kw"].upper() != "TO" or not match["addr"]:
            await self.stream.write(replies.INVALID_RECIPIENT)
            return
        if self.state.scenario.limits and not self.server.limiter.rcpt_allowed(len(self.rcpts)):
            await self.stream.write(replies.TOO_MANY_RECIPIENTS)
            return
        self.rcpts.append(match["addr"])
        await self.stream.write(replies.RECIPIENT_OK)

    async def _transaction_ready(self) -> bool:
        if not await self._may_transact():
            return False
        if self.mail_from is None:
            await self.stream.write(replies.NEED_MAIL)
            return False
        if not self.rcpts:
            await self.stream.write(replies.NEED_RCPT)
            return False
        return True

    async def data(self, arg: str) -> None:
        if arg:
            await self.stream.write(replies.INVALID_ARGUMENTS)
            return
        if self.chunks is not None:  # RFC 3030 section 3: no DATA after BDAT
            await self.stream.write(replies.BAD_SEQUENCE)
            return
        if not await self._transaction_ready():
            return
        await self.stream.write(replies.START_MAIL_INPUT)
        if self.state.scenario.smtp_reset_in_data:
            await self.stream.reset_in_data()
        text, overflow = await self.stream.read_data(self._max_size())
        await self._submit(text, overflow)

    async def bdat(self, arg: str) -> None:
        match = _BDAT.match(arg)
        if match is None:
            await self.stream.write(replies.INVALID_ARGUMENTS)
            return
        size, last = int(match["size"]), match["last"] is not None
        keep = self._max_size()
        # The chunk follows the command whatever the reply; read it to stay in step.
        chunk = await self.stream.read_chunk(size, keep - len(self.chunks or b""))
        if not await self._transaction_ready():
            self._reset()
            return
        if self.chunks is None:
            self.chunks = bytearray()
        self.chunks += chunk
        if not last:
            await self.stream.write(replies.chunk_received(size))
            return
        text = bytes(self.chunks)
        await self._submit(text, len(text) > keep)

    async def _submit(self, text: bytes, overflow: bool) -> None:
        """End of DATA / BDAT LAST: Exchange's submission checks, then store or refuse."""
        mailbox, mail_from, rcpts = self.mailbox, self.mail_from or "", list(self.rcpts)
        self._reset()
        assert mailbox is not None  # _transaction_ready checked it
        now = self.state.clock()
        key = mailbox.upn.lower()
        size = self._max_size() + 1 if overflow else len(text)
        limiter = self.server.limiter
        if self.state.scenario.limits:
            verdict = limiter.judge_submission(key, self.id, len(rcpts), size, now)
        else:
            verdict = Verdict.ACCEPT if size <= self._max_size() else Verdict.TOO_BIG
        if verdict is Verdict.TOO_BIG:
            await self.stream.write(replies.MESSAGE_TOO_BIG)
            return
        if verdict is Verdict.TOO_MANY_CONNECTIONS:
            if self.state.scenario.concurrency_reply == "thread":
                await self.stream.write(replies.sender_thread_limit_exceeded(self.host))
            else:
                await self.stream.write(replies.concurrent_connections_exceeded(self.host))
            return
        headers = parse_headers(text)
        denied = denied_sender(mailbox, mail_from, headers)
        if denied is not None:
            await self.stream.write(replies.send_as_denied(mailbox.upn, denied, self.host))
            return
        if verdict is Verdict.QUOTA_EXCEEDED:
            await self.stream.write(replies.submission_quota_exceeded(self.host))
            return
        if self.state.scenario.limits:
            limiter.record_submission(key, len(rcpts), now)
        self.state.store_message(
            mailbox.upn, mail_from, rcpts, text, delayed=verdict is Verdict.DELAY
        )
        await self.stream.write(replies.accepted(message_id(headers, self.host), self.host))

    # -- housekeeping ---------------------------------------------------------------------
    async def rset(self, arg: str) -> None:
        self._reset()
        await self.stream.write(replies.RESETTING)

    async def noop(self, arg: str) -> None:
        await self.stream.write(replies.NOOP_OK)

    async def quit(self, arg: str) -> None:
        self.closing = True
        await self.stream.write(replies.CLOSING)


class ExchangeSmtpServer:
    """Exchange Online's SMTP submission endpoint on 127.0.0.1 (STARTTLS, XOAUTH2)."""

    def __init__(
        self, state: SimState, tls_context: ssl.SSLContext, host: str = "127.0.0.1"
    ) -> None:
        self.state = state
        self.tls_context = tls_context
        self.host = host
        self.port = 0
        #: Per-mailbox limits; tests may prefill its windows instead of sending 10,000 mails.
        self.limiter = MailboxLimiter()
        self._server: asyncio.Server | None = None
        self._sessions: dict[_Session, asyncio.Task[None]] = {}

    async def start(self, port: int = 0) -> int:
        """Listen on *port* (0: any free port) and return the port bound."""
        self._server = await asyncio.start_server(self._serve, self.host, port)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def set_down(self, down: bool) -> None:
        """Down: stop listening (connections are refused) and drop open sessions, as an
        outage looks to a client. Up: listen again on the same port."""
        self.state.set_scenario(smtp_down=down)
        if down:
            await self._close_listener()
            await self._drop_sessions()
        elif self._server is None:
            await self.start(self.port)

    async def stop(self) -> None:
        await self._close_listener()
        await self._drop_sessions()

    async def _close_listener(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _drop_sessions(self) -> None:
        tasks = list(self._sessions.values())
        for session in list(self._sessions):
            abort(session.stream.writer.transport)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=5)
            for task in pending:
                task.cancel()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.state.scenario.smtp_down:  # switched by the control API without set_down
            abort(writer.transport)
            return
        with self.state.lock:
            self.state.counters.smtp_connections += 1
        session = _Session(self, reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._sessions[session] = task
        try:
            await session.run()
        except TimeoutError:
            with contextlib.suppress(Exception):
                await session.stream.write(replies.TIMEOUT)
        except (_ClientGone, ConnectionError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        except Exception:
            logger.exception("simulated Exchange session failed")
        finally:
            self._sessions.pop(session, None)
            if session.mailbox is not None:
                self.limiter.sessions.close(session.mailbox.upn.lower(), session.id)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()
