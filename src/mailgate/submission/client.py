"""The upstream SMTP session: connect, secure, authenticate, submit, reuse, quit.

Theory of operation: :class:`SubmissionClient` owns one :class:`SmtpWire` and walks the
submission session of RFC 6409 step by step; every decision it needs (which MAIL
parameters, one-line or two-step AUTH, what a reply means) comes from the pure modules
``protocol``, ``xoauth2`` and ``replies``. Every step has a timeout. Every failure leaves
as a :class:`SubmissionError` whose classification tells the caller what to do (retry,
hold until sign-in, fewer connections, split, fail) and tells the admin why.

Used by ``mailgate send`` (one message), ``mailgate doctor`` (up to AUTH) and the
delivery engine (many messages per connection, ``reset()`` in between).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import logging
import ssl
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from mailgate.config.model import OutboundConfig, TrustConfig
from mailgate.config.presets import Security
from mailgate.submission import protocol, xoauth2
from mailgate.submission.errors import SubmissionError, SubmissionNetworkError
from mailgate.submission.replies import (
    Classification,
    Reply,
    ReplyContext,
    ReplyError,
    ReplyKind,
    classify,
    network_failure,
)
from mailgate.submission.wire import SmtpWire, StartTlsInjection
from mailgate.trust import CaBundleError, ssl_context

log = logging.getLogger(__name__)

#: Called with (octets written so far, total octets) while DATA is uploaded.
Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class Timeouts:
    """Seconds per step. RFC 5321 section 4.5.3.2 suggests minutes; a gateway with a queue
    prefers to give up sooner and retry, except for the final reply to DATA, which
    Exchange may take long to give for a large message (RFC: 10 minutes)."""

    connect: float = 30.0
    greeting: float = 60.0
    command: float = 120.0
    data_chunk: float = 180.0
    data_end: float = 600.0
    quit: float = 5.0


@dataclass(frozen=True)
class XOAuth2Credentials:
    upn: str
    access_token: str = field(repr=False)


@dataclass(frozen=True)
class PasswordCredentials:
    username: str
    password: str = field(repr=False)


Credentials = XOAuth2Credentials | PasswordCredentials


@dataclass(frozen=True)
class SendResult:
    #: The server's final reply to DATA.
    reply: Reply
    #: Exchange: the id in "250 2.0.0 OK <id> [Hostname=...]"; Postfix/Exim queue ids too.
    queue_id: str | None
    hostname: str | None
    accepted: tuple[str, ...]
    #: Recipients the server refused, with its reply (the message went to the others).
    refused: Mapping[str, Reply]
    #: Not offered after "452 4.5.3 Too many recipients": send them in another transaction.
    deferred: tuple[str, ...]
    #: Octets written in DATA (after CRLF normalisation and dot-stuffing).
    size: int


def _local_error(kind: ReplyKind, summary: str, advice: str, stage: str) -> SubmissionError:
    return SubmissionError(Classification(kind, summary, advice), stage=stage)


class SubmissionClient:
    """One connection to the upstream SMTP server. Not for concurrent use by several tasks;
    calls are serialised by a lock anyway.

    ``async with SubmissionClient() as client: await client.connect(outbound, trust); ...``
    """

    def __init__(
        self,
        *,
        timeouts: Timeouts | None = None,
        local_hostname: str | None = None,
        chunk_size: int = 64 * 1024,
        primary_address: str | None = None,
    ) -> None:
        """*primary_address* only improves explanations (5.2.252)."""
        self.timeouts = timeouts or Timeouts()
        self._local_hostname = local_hostname
        self._chunk_size = chunk_size
        self._context = ReplyContext(primary_address=primary_address)
        self._wire: SmtpWire | None = None
        self._server = ""
        self._host, self._port = "", 0
        #: The step in progress, for errors without a reply (never a command line).
        self._stage = ""
        self._lock = asyncio.Lock()
        self.extensions = protocol.Extensions({})
        self.greeting: Reply | None = None
        #: The SASL mechanism of the last successful AUTH ("XOAUTH2", "OAUTHBEARER", ...).
        self.auth_mechanism: str | None = None

    async def __aenter__(self) -> SubmissionClient:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def connected(self) -> bool:
        return self._wire is not None and not self._wire.closed

    @property
    def encrypted(self) -> bool:
        return self._wire is not None and self._wire.encrypted

    # -- connection ----------------------------------------------------------------------
    async def connect(
        self,
        outbound: OutboundConfig,
        trust: TrustConfig | None = None,
        *,
        context: ssl.SSLContext | None = None,
    ) -> Reply:
        """Connect, read the greeting, EHLO, and secure the session as *outbound* says.

        *context* overrides the context built from *trust* (:func:`ssl_context`).
        Returns the greeting. Raises :class:`SubmissionError`.
        """
        host, port = outbound.server.host, outbound.server.port
        self._server = str(outbound.server)
        self._host, self._port = host, port
        self._context = dataclasses.replace(
            self._context, server=self._server, oauth=outbound.oauth is not None
        )
        tls = None if outbound.security is Security.NONE else (context or self._tls(trust))
        await self.close()  # a second connect() replaces the connection
        try:
            async with self._lock, self._guard("connect"):
                implicit = tls if outbound.security is Security.TLS else None
                self._wire = await SmtpWire.open(host, port, implicit, self.timeouts.connect)
                self.greeting = await self._wire.read_reply(self.timeouts.greeting)
                if self.greeting.code != 220:
                    raise self._refused(self.greeting, "connect", session=True)
                await self._ehlo()
                if outbound.security is Security.STARTTLS:
                    assert tls is not None
                    await self._starttls(tls, host)
                return self.greeting
        except BaseException:
            await self._drop()  # a half set-up session is of no use; no QUIT when cancelled
            raise

    async def _ehlo(self) -> None:
        wire = self._need_wire()
        name = self._local_hostname or wire.local_address_literal()
        reply = await wire.command(f"EHLO {name}", self.timeouts.command)
        if reply.code == 250:
            self.extensions = protocol.parse_ehlo(reply)
            return
        if reply.code in {500, 502}:  # RFC 5321 section 3.2: fall back to HELO, no extensions.
            reply = await wire.command(f"HELO {name}", self.timeouts.command)
            if reply.code == 250:
                self.extensions = protocol.Extensions({})
                return
        raise self._refused(reply, "EHLO", session=True)

    async def _starttls(self, tls: ssl.SSLContext, host: str) -> None:
        wire = self._need_wire()
        if not self.extensions.has("STARTTLS"):
            raise _local_error(
                ReplyKind.NETWORK,
                f"The server {self._server} does not offer STARTTLS.",
                "Check the server address and port, or set the security to implicit TLS "
                "(port 465) if that is what the server speaks.",
                "STARTTLS",
            )
        reply = await wire.command("STARTTLS", self.timeouts.command)
        if reply.code != 220:
            raise self._refused(reply, "STARTTLS", session=True)
        await wire.starttls(tls, host, self.timeouts.connect)
        # RFC 3207 section 4.2: forget what was learnt before TLS and ask again.
        self.extensions = protocol.Extensions({})
        await self._ehlo()

    # -- authentication --------------------------------------------------------------------
    async def authenticate(self, credentials: Credentials) -> Reply:
        """AUTH XOAUTH2 (or OAUTHBEARER) as the UPN, or PLAIN/LOGIN with a password.

        Returns the 235."""
        async with self._lock, self._guard("AUTH"):
            if isinstance(credentials, XOAuth2Credentials):
                self._context = dataclasses.replace(self._context, upn=credentials.upn)
                return await self._auth_bearer(credentials)
            return await self._auth_password(credentials)

    def _check_mechanism(self, wanted: set[str], preferred: tuple[str, ...] = ()) -> str:
        offered = self.extensions.auth_mechanisms
        for mechanism in preferred:
            if mechanism in offered:
                return mechanism
        usable = sorted(wanted & offered)
        if usable:
            return usable[-1]  # PLAIN before LOGIN
        raise _local_error(
            ReplyKind.AUTH,
            f"The server {self._server} does not offer AUTH {' or '.join(sorted(wanted))} "
            f"(it offers: {', '.join(sorted(offered)) or 'no AUTH at all'}).",
            "Check the server address, port and security setting; Exchange Online offers "
            "AUTH XOAUTH2 only after STARTTLS on port 587.",
            "AUTH",
        )

    async def _auth_bearer(self, credentials: XOAuth2Credentials) -> Reply:
        if not self.encrypted:
            raise _local_error(
                ReplyKind.AUTH,
                "mailgate does not send a sign-in token over an unencrypted connection.",
                "Set the security to STARTTLS or implicit TLS.",
                "AUTH",
            )
        # XOAUTH2 where offered (Exchange offers nothing else); OAUTHBEARER (RFC 7628) else.
        mechanism = self._check_mechanism(
            {xoauth2.XOAUTH2, xoauth2.OAUTHBEARER}, (xoauth2.XOAUTH2, xoauth2.OAUTHBEARER)
        )
        upn, token = credentials.upn, credentials.access_token
        try:
            response = (
                xoauth2.initial_response(upn, token)
                if mechanism == xoauth2.XOAUTH2
                else xoauth2.oauthbearer_initial_response(upn, token, self._host, self._port)
            )
        except ValueError as exc:
            raise _local_error(
                ReplyKind.AUTH, f"Cannot sign in to SMTP: {exc}.", "Sign in again.", "AUTH"
            ) from None
        form = xoauth2.choose_form(response, mechanism=mechanism)
        if form is xoauth2.AuthForm.ONE_LINE:
            reply = await self._cmd(f"AUTH {mechanism} {response}")
            if xoauth2.is_line_too_long(reply.code, reply.text):
                # A server stricter than RFC 5321's 512 octets: ask again in two steps.
                reply = await self._two_step(mechanism, response)
        else:
            reply = await self._two_step(mechanism, response)
        reply = await self._finish_sasl(reply, xoauth2.error_acknowledgement(mechanism))
        self.auth_mechanism = mechanism
        return reply

    async def _auth_password(self, credentials: PasswordCredentials) -> Reply:
        mechanism = self._check_mechanism({"PLAIN", "LOGIN"})
        user, password = credentials.username, credentials.password
        if mechanism == "PLAIN":
            # RFC 4616: authzid NUL authcid NUL passwd.
            response = _b64(f"\0{user}\0{password}")
            if len(f"AUTH PLAIN {response}\r\n") <= xoauth2.RFC5321_COMMAND_LINE:
                reply = await self._cmd(f"AUTH PLAIN {response}")
            else:
                reply = await self._two_step("PLAIN", response)
        else:
            reply = await self._two_step("LOGIN", _b64(user))
            if reply.code == 334:
                reply = await self._cmd(_b64(password))
        reply = await self._finish_sasl(reply)
        self.auth_mechanism = mechanism
        return reply

    async def _two_step(self, mechanism: str, response: str) -> Reply:
        reply = await self._cmd(f"AUTH {mechanism}")
        if reply.code != 334:
            return reply
        return await self._cmd(response)

    async def _finish_sasl(self, reply: Reply, acknowledgement: str = "") -> Reply:
        challenge: dict[str, object] | None = None
        if reply.code == 334:
            # Error challenge (RFC 7628 section 3.2.3): acknowledge it, then read the 535.
            challenge = xoauth2.decode_error_challenge(reply.text)
            reply = await self._cmd(acknowledgement)
            if reply.code == 334:  # still asking: cancel (RFC 4954 section 4)
                reply = await self._cmd("*")
        if reply.code != 235:
            raise SubmissionError(
                classify(reply, self._context), reply, stage="AUTH", challenge=challenge
            )
        return reply

    # -- sending ---------------------------------------------------------------------------
    async def send(
        self,
        mail_from: str,
        rcpt_tos: list[str],
        data: bytes,
        progress: Progress | None = None,
    ) -> SendResult:
        """Submit one message. *data* is the message as bytes (any line endings).

        Refused recipients are reported in the result while any recipient was accepted.
        A failure before DATA leaves the session reset (RSET) for the next message.
        """
        protocol.check_address(mail_from, "sender")
        for rcpt in rcpt_tos:
            protocol.check_address(rcpt, "recipient")
        if not rcpt_tos:
            raise ValueError("a message needs at least one recipient")
        ctx = dataclasses.replace(self._context, sender_address=mail_from)
        async with self._lock, self._guard("MAIL FROM"):
            payload, mail_line = self._mail_command(mail_from, rcpt_tos, data)
            if self.extensions.has("PIPELINING"):
                accepted, refused, deferred = await self._pipelined(mail_line, rcpt_tos, ctx)
            else:
                reply = await self._cmd(mail_line)
                if reply.code != 250:
                    await self._rset_quietly()
                    raise SubmissionError(classify(reply, ctx), reply, stage="MAIL FROM")
                self._stage = "RCPT TO"
                accepted, refused, deferred = await self._recipients(rcpt_tos, ctx)
                self._stage = "DATA"
                reply = await self._cmd("DATA")
                if reply.code != 354:
                    await self._rset_quietly()
                    raise SubmissionError(classify(reply, ctx), reply, stage="DATA")
            final = await self._upload(payload, progress, ctx)
            queue_id, hostname = protocol.parse_queue_id(final)
            return SendResult(
                final, queue_id, hostname, accepted, refused, deferred, size=len(payload)
            )

    def _mail_command(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> tuple[bytes, str]:
        """(the DATA payload on the wire, the MAIL FROM line), or why it cannot be sent."""
        eight_bit = protocol.needs_8bitmime(data)
        smtputf8 = protocol.needs_smtputf8(mail_from, rcpt_tos, data)
        missing = protocol.missing_extension(self.extensions, eight_bit, smtputf8)
        if missing:
            raise _local_error(
                ReplyKind.PERMANENT,
                f"The message needs the {missing} extension, which {self._server} does not offer.",
                "Use ASCII addresses, or a server that supports international mail.",
                "MAIL FROM",
            )
        payload = protocol.encode_data(data)
        params = protocol.mail_parameters(self.extensions, len(payload), eight_bit, smtputf8)
        return payload, " ".join([f"MAIL FROM:<{mail_from}>", *params])

    async def _pipelined(
        self, mail_line: str, rcpt_tos: list[str], ctx: ReplyContext
    ) -> tuple[tuple[str, ...], dict[str, Reply], tuple[str, ...]]:
        """RFC 2920: MAIL, every RCPT and DATA in one write (one round trip instead of
        2 + recipients), then their replies read in order and judged one by one."""
        wire = self._need_wire()
        lines = [mail_line, *(f"RCPT TO:<{rcpt}>" for rcpt in rcpt_tos), "DATA"]
        await wire.write_commands(lines, self.timeouts.command)
        mail = await self._read()
        self._stage = "RCPT TO"
        replies = [await self._read() for _ in rcpt_tos]
        self._stage = "DATA"
        data = await self._read()
        too_many = lambda reply: classify(reply, ctx).kind is ReplyKind.TOO_MANY_RECIPIENTS  # noqa: E731
        recipients = protocol.sort_recipients(rcpt_tos, replies, too_many)
        step = protocol.after_pipeline(mail, recipients, data)
        if step is protocol.AfterPipeline.UPLOAD:
            return recipients.accepted, recipients.refused, recipients.deferred
        if step is protocol.AfterPipeline.END_EMPTY_DATA:
            await wire.write(b".\r\n", self.timeouts.command)
            await self._read()
        await self._rset_quietly()
        if step is protocol.AfterPipeline.DATA_REFUSED:
            raise SubmissionError(classify(data, ctx), data, stage="DATA")
        if mail.code != 250:
            raise SubmissionError(classify(mail, ctx), mail, stage="MAIL FROM")
        first = recipients.first_refusal or data
        raise SubmissionError(
            classify(first, ctx), first, stage="RCPT TO", refused=recipients.refused
        )

    async def _read(self) -> Reply:
        reply = await self._need_wire().read_reply(self.timeouts.command)
        if reply.code == 421:  # RFC 5321 section 3.8: the server is closing the channel.
            await self._need_wire().close()
        return reply

    async def _recipients(
        self, rcpt_tos: list[str], ctx: ReplyContext
    ) -> tuple[tuple[str, ...], dict[str, Reply], tuple[str, ...]]:
        accepted: list[str] = []
        refused: dict[str, Reply] = {}
        deferred: tuple[str, ...] = ()
        limit_reply: Reply | None = None
        for index, rcpt in enumerate(rcpt_tos):
            reply = await self._cmd(f"RCPT TO:<{rcpt}>")
            if reply.code in {250, 251}:
                accepted.append(rcpt)
                continue
            if classify(reply, ctx).kind is ReplyKind.TOO_MANY_RECIPIENTS:
                # RFC 5321 section 4.5.3.1.10: the rest goes in a later transaction.
                deferred = tuple(rcpt_tos[index:])
                limit_reply = reply
                break
            refused[rcpt] = reply
        if not accepted:
            await self._rset_quietly()
            first = next(iter(refused.values())) if refused else limit_reply
            assert first is not None  # rcpt_tos is not empty: each was refused or deferred
            raise SubmissionError(classify(first, ctx), first, stage="RCPT TO", refused=refused)
        return tuple(accepted), refused, deferred

    async def _upload(self, payload: bytes, progress: Progress | None, ctx: ReplyContext) -> Reply:
        wire = self._need_wire()
        total, view = len(payload), memoryview(payload)
        if progress:
            progress(0, total)
        for start in range(0, total, self._chunk_size):
            chunk = view[start : start + self._chunk_size]
            try:
                await wire.write(chunk, self.timeouts.data_chunk)
            except (OSError, TimeoutError):
                # The server may have said why before closing (e.g. 552 mid-upload).
                early = await self._early_reply()
                if early is None:
                    raise
                raise SubmissionError(classify(early, ctx), early, stage="DATA") from None
            if progress:
                progress(start + len(chunk), total)
        final = await wire.read_reply(self.timeouts.data_end)
        if final.code != 250:
            raise SubmissionError(classify(final, ctx), final, stage="end of DATA")
        return final

    async def _early_reply(self) -> Reply | None:
        with contextlib.suppress(OSError, TimeoutError, ReplyError):
            return await self._need_wire().read_reply(1.0)
        return None

    # -- between and after messages -----------------------------------------------------------
    async def reset(self) -> Reply:
        """RSET: abandon any transaction so the connection can carry the next message."""
        async with self._lock, self._guard("RSET"):
            reply = await self._cmd("RSET")
            if reply.code != 250:
                raise self._refused(reply, "RSET")
            return reply

    async def noop(self) -> Reply:
        """NOOP: is a reused connection still alive?"""
        async with self._lock, self._guard("NOOP"):
            reply = await self._cmd("NOOP")
            if reply.code != 250:
                raise self._refused(reply, "NOOP")
            return reply

    async def close(self) -> None:
        """QUIT and close. Never raises; safe to call twice."""
        wire, self._wire = self._wire, None
        if wire is None:
            return
        if not wire.closed:
            with contextlib.suppress(OSError, TimeoutError, ReplyError, ssl.SSLError):
                await wire.command("QUIT", self.timeouts.quit)
        await wire.close()

    # -- helpers ---------------------------------------------------------------------------
    def _need_wire(self) -> SmtpWire:
        if self._wire is None or self._wire.closed:
            raise _local_error(
                ReplyKind.NETWORK,
                f"The connection to {self._server or 'the SMTP server'} is closed.",
                "Connect again.",
                "",
            )
        return self._wire

    async def _cmd(self, line: str) -> Reply:
        reply = await self._need_wire().command(line, self.timeouts.command)
        if reply.code == 421:  # RFC 5321 section 3.8: the server is closing the channel.
            await self._need_wire().close()
        return reply

    async def _rset_quietly(self) -> None:
        """End a failed transaction. If RSET does not come back 250 the session's state is
        unknown (a late reply would be read as the next command's): drop the connection,
        so a connected client is always between transactions (the delivery engine relies
        on this to reuse a connection without another RSET)."""
        if self.connected:
            reply: Reply | None = None
            with contextlib.suppress(OSError, TimeoutError, ReplyError):
                reply = await self._cmd("RSET")
            if reply is None or reply.code != 250:
                await self._drop()

    def _refused(self, reply: Reply, stage: str, session: bool = False) -> SubmissionError:
        classification = classify(reply, self._context)
        if session and classification.bounces:
            # A refusal of the session (RFC 5321 section 3.1: "554 No SMTP service here")
            # says nothing about any message: never bounce mail for it.
            classification = network_failure(
                f"The server {self._server} refused the session at {stage}.",
                "Check the server address and port; mailgate tries again later.",
            )
        return SubmissionError(classification, reply, stage=stage)

    def _tls(self, trust: TrustConfig | None) -> ssl.SSLContext:
        try:
            return ssl_context(trust)
        except CaBundleError as exc:
            raise SubmissionNetworkError(
                network_failure(f"TLS cannot be set up: {exc}.", "Fix the CA bundle setting."),
                stage="connect",
            ) from None

    @contextlib.asynccontextmanager
    async def _guard(self, stage: str) -> AsyncIterator[None]:
        """Turn socket, TLS and protocol faults into SubmissionNetworkError; close the wire."""
        self._stage = stage
        try:
            yield
        except SubmissionError as exc:
            if (exc.reply is not None and exc.reply.code == 421) or self._wire_broken():
                await self._drop()
            raise
        except (OSError, TimeoutError, ReplyError, ssl.SSLError) as exc:
            await self._drop()
            raise SubmissionNetworkError(
                _explain_fault(exc, self._server, self._stage), stage=self._stage
            ) from None

    def _wire_broken(self) -> bool:
        return self._wire is not None and self._wire.closed

    async def _drop(self) -> None:
        wire, self._wire = self._wire, None
        if wire is not None:
            await wire.close()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _explain_fault(exc: BaseException, server: str, stage: str) -> Classification:
    """Words for a fault with no reply; never includes what we sent."""
    during = f" during {stage}" if stage else ""
    if isinstance(exc, ssl.SSLCertVerificationError):
        return network_failure(
            f"The certificate of {server} could not be verified ({exc.verify_message}).",
            "Check the server name. If a TLS-inspecting proxy or a private CA signs it, add "
            "that CA certificate with the CA bundle setting (MAILGATE_CA_BUNDLE).",
        )
    if isinstance(exc, StartTlsInjection):
        return network_failure(
            f"{server} sent data right after agreeing to STARTTLS; the connection was closed "
            "because someone may be tampering with it.",
        )
    if isinstance(exc, ssl.SSLError):
        return network_failure(
            f"The TLS handshake with {server} failed ({exc.reason or exc}).",
            "Check the security setting: implicit TLS (usually port 465) or STARTTLS "
            "(usually 587).",
        )
    if isinstance(exc, TimeoutError):
        return network_failure(f"{server} did not answer in time{during}.")
    if isinstance(exc, ReplyError):
        return network_failure(
            f"{server} answered with something that is not SMTP ({exc}).",
            "Check the server address, port and security setting.",
        )
    if isinstance(exc, ConnectionRefusedError):
        return network_failure(f"{server} refused the connection (nothing listens there).")
    return network_failure(f"The connection to {server} failed{during}: {exc}.")
