"""The simulated Exchange Online SMTP server, spoken to byte by byte from the test's loop."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import re
import ssl
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from mailgate.sim import exchange_replies as replies
from mailgate.sim.ca import CertificateFiles, create_certificates
from mailgate.sim.profiles import get_profile
from mailgate.sim.smtp import ExchangeSmtpServer, decode_xoauth2, unstuff
from mailgate.sim.state import SimState

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SCANNER = "scanner@contoso.com"
HOST = "BY1PR10CA0041.outlook.office365.com"
T0 = 1_780_315_200.0  # Mon, 1 Jun 2026 12:00:00 +0000
SUFFIX = r"\[" + re.escape(HOST) + r" \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [0-9A-F]{16}\]"


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class Client:
    """A deliberately dumb SMTP client: sends lines, returns replies verbatim."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, port: int) -> tuple[Client, str]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        client = cls(reader, writer)
        return client, await client.reply()

    async def reply(self) -> str:
        lines = []
        while True:
            line = (await self.reader.readuntil(b"\r\n")).decode().removesuffix("\r\n")
            lines.append(line)
            if len(line) < 4 or line[3] != "-":
                return "\n".join(lines)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def cmd(self, line: str) -> str:
        await self.send(line.encode() + b"\r\n")
        return await self.reply()

    async def starttls(self, context: ssl.SSLContext) -> str:
        reply = await self.cmd("STARTTLS")
        await self.writer.start_tls(context, server_hostname="localhost")
        return reply

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            await self.writer.wait_closed()


def xoauth2(upn: str, token: str) -> str:
    return base64.b64encode(f"user={upn}\x01auth=Bearer {token}\x01\x01".encode()).decode()


def message(sender: str = SCANNER, to: str = "someone@example.org", body: str = "hello") -> bytes:
    return (
        f"From: Scanner <{sender}>\r\nTo: {to}\r\nSubject: scan\r\n"
        f"Message-ID: <scan-1@device.local>\r\n\r\n{body}\r\n"
    ).encode()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def state(clock: FakeClock) -> SimState:
    return SimState.create(get_profile("global"), clock=clock)


@pytest.fixture
def certs(tmp_path: Path) -> CertificateFiles:
    return create_certificates(tmp_path)


@pytest.fixture
def client_tls(certs: CertificateFiles) -> ssl.SSLContext:
    return certs.client_context()


@pytest.fixture
async def server(state: SimState, certs: CertificateFiles) -> AsyncIterator[ExchangeSmtpServer]:
    smtp = ExchangeSmtpServer(state, certs.server_context())
    await smtp.start(0)
    yield smtp
    await smtp.stop()


def token_for(state: SimState, upn: str = SCANNER, scopes: list[str] | None = None) -> str:
    scopes = scopes if scopes is not None else [state.profile.smtp_scope]
    return state.issue_access_token(upn, CLIENT_ID, scopes, 3600).token


async def tls_session(server: ExchangeSmtpServer, context: ssl.SSLContext) -> Client:
    client, _ = await Client.connect(server.port)
    await client.cmd("EHLO device.local")
    assert await client.starttls(context) == replies.STARTTLS_READY
    await client.cmd("EHLO device.local")
    return client


async def authed(server: ExchangeSmtpServer, context: ssl.SSLContext, upn: str = SCANNER) -> Client:
    client = await tls_session(server, context)
    reply = await client.cmd("AUTH XOAUTH2 " + xoauth2(upn, token_for(server.state, upn)))
    assert reply == "235 2.7.0 Authentication successful"
    return client


async def send(client: Client, data: bytes, rcpts: list[str], sender: str = SCANNER) -> str:
    assert await client.cmd(f"MAIL FROM:<{sender}>") == "250 2.1.0 Sender OK"
    for rcpt in rcpts:
        assert await client.cmd(f"RCPT TO:<{rcpt}>") == "250 2.1.5 Recipient OK"
    assert await client.cmd("DATA") == "354 Start mail input; end with <CRLF>.<CRLF>"
    await client.send(data + b".\r\n")
    return await client.reply()


ACCEPTED = re.compile(
    r"^250 2\.0\.0 OK <scan-1@device\.local> \[Hostname=" + re.escape(HOST) + r"\]$"
)


# -- greeting, EHLO, STARTTLS ------------------------------------------------------------
async def test_banner_ehlo_and_starttls(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext
) -> None:
    client, banner = await Client.connect(server.port)
    assert banner == (
        f"220 {HOST} Microsoft ESMTP MAIL Service ready at Mon, 1 Jun 2026 12:00:00 +0000 "
        + banner[-18:]
    )
    assert re.fullmatch(r"\[[0-9A-F]{16}\]", banner[-18:])
    assert await client.cmd("EHLO device.local") == "\n".join(
        [
            f"250-{HOST} Hello [127.0.0.1]",
            "250-SIZE 157286400",
            "250-PIPELINING",
            "250-DSN",
            "250-ENHANCEDSTATUSCODES",
            "250-STARTTLS",
            "250-8BITMIME",
            "250-BINARYMIME",
            "250-CHUNKING",
            "250 SMTPUTF8",
        ]
    )
    assert await client.starttls(client_tls) == "220 2.0.0 SMTP server ready"
    after = await client.cmd("EHLO device.local")
    assert after.splitlines()[5] == "250-AUTH LOGIN XOAUTH2"
    assert "STARTTLS" not in after
    assert await client.cmd("QUIT") == "221 2.0.0 Service closing transmission channel"
    await client.close()
    assert server.state.counters.smtp_connections == 1


async def test_banner_is_fresh_per_connection(server: ExchangeSmtpServer) -> None:
    first, banner1 = await Client.connect(server.port)
    second, banner2 = await Client.connect(server.port)
    assert banner1[-18:] != banner2[-18:]
    await first.close()
    await second.close()


async def test_plaintext_pipelined_after_starttls_is_discarded(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext
) -> None:
    client, _ = await Client.connect(server.port)
    await client.cmd("EHLO device.local")
    await client.send(b"STARTTLS\r\nRSET\r\n")  # injected RSET must not be answered inside TLS
    assert await client.reply() == replies.STARTTLS_READY
    await client.writer.start_tls(client_tls, server_hostname="localhost")
    assert await client.cmd("NOOP") == "250 2.0.0 OK"
    await client.close()


async def test_commands_before_authentication(server: ExchangeSmtpServer) -> None:
    client, _ = await Client.connect(server.port)
    assert await client.cmd("MAIL FROM:<x@contoso.com>") == "503 5.5.2 Send hello first"
    assert await client.cmd("HELO device.local") == f"250 {HOST} Hello [127.0.0.1]"
    assert await client.cmd("EHLO") == "501 5.5.4 Invalid domain name"
    await client.cmd("EHLO device.local")
    assert re.fullmatch(
        r"530 5\.7\.57 Client not authenticated to send mail\. " + SUFFIX,
        await client.cmd("MAIL FROM:<x@contoso.com>"),
    )
    # Exchange offers no SASL mechanism before STARTTLS
    reply = await client.cmd("AUTH XOAUTH2 " + xoauth2(SCANNER, "x"))
    assert reply == "504 5.7.4 Unrecognized authentication type"
    assert await client.cmd("XYZZY") == "500 5.3.3 Unrecognized command 'XYZZY'"
    assert await client.cmd("NOOP") == "250 2.0.0 OK"
    assert await client.cmd("RSET") == "250 2.0.0 Resetting"
    await client.close()


# -- XOAUTH2 -----------------------------------------------------------------------------
def test_decode_xoauth2() -> None:
    creds = decode_xoauth2(xoauth2(SCANNER, "tok"))
    assert creds is not None
    assert (creds.user, creds.token) == (SCANNER, "tok")
    for bad in ["", "***", base64.b64encode(b"user=a\x01auth=Basic x\x01\x01").decode()]:
        assert decode_xoauth2(bad) is None
    assert decode_xoauth2(base64.b64encode(b"user=a\x01auth=Bearer t").decode()) is None


async def test_xoauth2_one_line_and_send(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext
) -> None:
    client = await tls_session(server, client_tls)
    token = token_for(server.state)
    assert len(token) >= 1700  # a realistic token: the AUTH line is ~2.4 KB
    reply = await client.cmd("AUTH XOAUTH2 " + xoauth2(SCANNER.upper(), token))
    assert reply == "235 2.7.0 Authentication successful"
    assert await client.cmd("AUTH XOAUTH2 x") == "503 5.5.2 Already authenticated"
    assert ACCEPTED.match(await send(client, message(), ["a@example.org", "b@example.org"]))
    stored = server.state.messages[-1]
    assert (stored.upn, stored.mail_from, stored.rcpt_tos) == (
        SCANNER,
        SCANNER,
        ["a@example.org", "b@example.org"],
    )
    assert stored.data == message()
    assert not stored.delayed
    assert server.state.counters.smtp_auth_success == 1
    await client.close()


async def test_xoauth2_two_step(server: ExchangeSmtpServer, client_tls: ssl.SSLContext) -> None:
    client = await tls_session(server, client_tls)
    assert await client.cmd("AUTH XOAUTH2") == "334 "
    assert await client.cmd("*") == "501 5.0.0 Authentication aborted"  # RFC 4954 cancel
    assert await client.cmd("AUTH XOAUTH2") == "334 "
    assert await client.cmd(xoauth2(SCANNER, token_for(server.state))) == (
        "235 2.7.0 Authentication successful"
    )
    await client.close()


async def test_accepted_reply_without_message_id(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext
) -> None:
    client = await authed(server, client_tls)
    reply = await send(client, b"From: scanner@contoso.com\r\n\r\nx\r\n", ["a@example.org"])
    assert re.fullmatch(
        r"250 2\.0\.0 OK <[0-9A-F]{16}@" + re.escape(HOST) + r"> \[Hostname=.*\]", reply
    )
    await client.close()


def expired_token(state: SimState, clock: FakeClock) -> str:
    response = xoauth2(SCANNER, token_for(state))
    clock.now += 3600  # issued for 3600 s: expired exactly now
    return response


BAD_TOKENS: dict[str, Callable[[SimState, FakeClock], str]] = {
    "unknown": lambda s, c: xoauth2(SCANNER, "EwBIBMl6BAAUnot-issued"),
    "expired": expired_token,
    "wrong scope": lambda s, c: xoauth2(
        SCANNER, token_for(s, scopes=["https://graph.microsoft.com/Mail.Send"])
    ),
    "other user": lambda s, c: xoauth2("reception@contoso.com", token_for(s)),
    "not base64": lambda s, c: "not base64!",
}


@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
@pytest.mark.parametrize("challenge", [True, False])
async def test_bad_tokens(
    server: ExchangeSmtpServer,
    client_tls: ssl.SSLContext,
    clock: FakeClock,
    case: str,
    challenge: bool,
) -> None:
    server.state.set_scenario(xoauth2_error_challenge=challenge)
    client = await tls_session(server, client_tls)
    reply = await client.cmd("AUTH XOAUTH2 " + BAD_TOKENS[case](server.state, clock))
    if challenge:
        assert reply.startswith("334 ")
        assert json.loads(base64.b64decode(reply[4:])) == {
            "status": "401",
            "schemes": "bearer",
            "scope": "https://outlook.office.com/SMTP.Send",
        }
        reply = await client.cmd("")
    assert re.fullmatch(r"535 5\.7\.3 Authentication unsuccessful " + SUFFIX, reply)
    assert server.state.counters.smtp_auth_failure == 1
    await client.close()


@pytest.mark.parametrize(
    "user", ["scanner@contoso.com", "SCAN@contoso.com", "scan@contoso.com"]
)  # UPN (= primary address here) and an alias, any case
async def test_user_may_be_any_address_of_the_mailbox(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext, user: str
) -> None:
    client = await tls_session(server, client_tls)
    reply = await client.cmd("AUTH XOAUTH2 " + xoauth2(user, token_for(server.state)))
    assert reply == "235 2.7.0 Authentication successful"
    await client.close()


async def test_worldwide_takes_the_office365_com_resource_too(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext
) -> None:
    token = token_for(server.state, scopes=["https://outlook.office365.com/SMTP.Send"])
    client = await tls_session(server, client_tls)
    reply = await client.cmd("AUTH XOAUTH2 " + xoauth2(SCANNER, token))
    assert reply == "235 2.7.0 Authentication successful"
    await client.close()


async def test_disabled_account_is_refused(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext
) -> None:
    server.state.set_scenario(xoauth2_error_challenge=False)
    mailbox = server.state.directory.get(SCANNER)
    assert mailbox is not None
    mailbox.account_enabled = False
    client = await tls_session(server, client_tls)
    reply = await client.cmd("AUTH XOAUTH2 " + xoauth2(SCANNER, token_for(server.state)))
    assert reply.startswith("535 5.7.3 Authentication unsuccessful [")
    await client.close()


@pytest.mark.parametrize(
    ("upn", "tenant_off", "scope"),
    [(SCANNER, True, "Tenant"), ("legacy@contoso.com", False, "Mailbox")],
)
async def test_smtp_auth_disabled(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext, upn: str, tenant_off: bool, scope: str
) -> None:
    server.state.set_scenario(smtp_auth_disabled_tenant=tenant_off)
    client = await tls_session(server, client_tls)
    reply = await client.cmd("AUTH XOAUTH2 " + xoauth2(upn, token_for(server.state, upn)))
    assert re.fullmatch(
        r"535 5\.7\.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
        + scope
        + r"\. Visit https://aka\.ms/smtp_auth_disabled for more information\. "
        + SUFFIX,
        reply,
    )
    await client.close()


async def test_auth_login_basic_is_disabled(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext
) -> None:
    client = await tls_session(server, client_tls)
    assert await client.cmd("AUTH PLAIN AGEAYg==") == "504 5.7.4 Unrecognized authentication type"
    assert await client.cmd("AUTH LOGIN") == "334 VXNlcm5hbWU6"
    assert await client.cmd(base64.b64encode(SCANNER.encode()).decode()) == "334 UGFzc3dvcmQ6"
    reply = await client.cmd(base64.b64encode(b"hunter2").decode())
    assert re.fullmatch(
        r"535 5\.7\.139 Authentication unsuccessful, basic authentication is disabled\. " + SUFFIX,
        reply,
    )
    await client.close()


async def test_strict_line_length_forces_two_step_auth(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext
) -> None:
    server.state.set_scenario(max_command_line=1030)
    client = await tls_session(server, client_tls)
    response = xoauth2(SCANNER, token_for(server.state))
    assert await client.cmd("AUTH XOAUTH2 " + response) == "500 5.5.2 Line too long"
    assert await client.cmd("NOOP " + "x" * 1023) == "250 2.0.0 OK"  # 1030 octets with CRLF
    assert await client.cmd("NOOP " + "x" * 1024) == "500 5.5.2 Line too long"
    assert await client.cmd("AUTH XOAUTH2") == "334 "
    assert await client.cmd(response) == "235 2.7.0 Authentication successful"
    await client.close()


# -- submission ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("envelope", "header", "denied"),
    [
        ("scan@contoso.com", SCANNER, None),  # alias
        ("reception@contoso.com", "reception@contoso.com", None),  # send-as grant
        ("", SCANNER, None),  # null reverse-path: only the From header counts
        ("ceo@contoso.com", SCANNER, "ceo@contoso.com"),
        (SCANNER, "ceo@contoso.com", "ceo@contoso.com"),
    ],
)
async def test_send_as_checked_at_end_of_data(
    server: ExchangeSmtpServer,
    client_tls: ssl.SSLContext,
    envelope: str,
    header: str,
    denied: str | None,
) -> None:
    client = await authed(server, client_tls)
    reply = await send(client, message(sender=header), ["a@example.org"], sender=envelope)
    if denied is None:
        assert ACCEPTED.match(reply)
    else:
        assert reply == (
            f"554 5.2.252 SendAsDenied; {SCANNER} not allowed to send as {denied}; "
            "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; "
            "Failed to process message due to a permanent exception with message "
            "[BeginDiagnosticData]Cannot submit message. 1.84300:0A000000, 1.84300:0E000000, "
            "1.73948:00000000, 0.117068:0B000000, 1.79180:0A000000, 1.79180:FA000000"
            f"[EndDiagnosticData] [Hostname={HOST}]"
        )
        assert server.state.messages == []
    await client.close()


async def test_several_messages_per_connection(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext
) -> None:
    client = await authed(server, client_tls)
    for i in range(3):
        assert ACCEPTED.match(await send(client, message(body=f"n{i}"), ["a@example.org"]))
        assert await client.cmd("RSET") == "250 2.0.0 Resetting"
    # an abandoned transaction is forgotten after RSET
    await client.cmd(f"MAIL FROM:<{SCANNER}>")
    assert await client.cmd("RSET") == "250 2.0.0 Resetting"
    assert await client.cmd("DATA") == "503 5.5.2 Need mail command"
    assert len(server.state.messages) == 3
    await client.close()


async def test_data_is_unstuffed_and_bare_lf_dot_does_not_end_it(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext
) -> None:
    client = await authed(server, client_tls)
    body = b"From: scanner@contoso.com\r\n\r\n..leading dot\r\nsmuggle\n.\r\nstill text\r\n"
    assert (await send(client, body, ["a@example.org"])).startswith("250 2.0.0 OK <")
    assert server.state.messages[-1].data == (
        b"From: scanner@contoso.com\r\n\r\n.leading dot\r\nsmuggle\n.\r\nstill text\r\n"
    )
    await client.close()


def test_unstuff() -> None:
    assert unstuff(b"..a\r\n..b\r\n.c\r\nd\r\n") == b".a\r\n.b\r\nc\r\nd\r\n"


async def test_data_split_across_reads(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext
) -> None:
    client = await authed(server, client_tls)
    await client.cmd(f"MAIL FROM:<{SCANNER}>")
    await client.cmd("RCPT TO:<a@example.org>")
    await client.cmd("DATA")
    for piece in [b"From: scanner@contoso.com\r\n\r\nbody\r", b"\n", b".", b"\r", b"\n"]:
        await client.send(piece)
        await asyncio.sleep(0.01)
    assert (await client.reply()).startswith("250 2.0.0 OK <")
    assert server.state.messages[-1].data == b"From: scanner@contoso.com\r\n\r\nbody\r\n"
    await client.close()


async def test_bdat_chunks(server: ExchangeSmtpServer, client_tls: ssl.SSLContext) -> None:
    client = await authed(server, client_tls)
    data = message(body="line\r\n.\r\nnot the end")  # BDAT is not dot-stuffed (RFC 3030)
    first, rest = data[:20], data[20:]
    await client.send(b"BDAT 5 LAST\r\nxxxxx")  # the chunk is consumed even when refused
    assert await client.reply() == "503 5.5.2 Need mail command"
    await client.cmd(f"MAIL FROM:<{SCANNER}>")
    await client.cmd("RCPT TO:<a@example.org>")
    await client.send(f"BDAT {len(first)}\r\n".encode() + first)
    assert (
        await client.reply() == f"250 2.0.0 BDAT command successful, {len(first)} octets received"
    )
    assert await client.cmd("DATA") == "503 5.5.1 Bad sequence of commands"
    await client.send(f"BDAT {len(rest)} LAST\r\n".encode() + rest)
    assert ACCEPTED.match(await client.reply())
    assert server.state.messages[-1].data == data
    await client.close()


async def test_internal_errors_are_not_shown(
    server: ExchangeSmtpServer,
    client_tls: ssl.SSLContext,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internal detail")

    monkeypatch.setattr(server.state, "store_message", explode)
    client = await authed(server, client_tls)
    with caplog.at_level(logging.ERROR, logger="mailgate.sim.smtp"):
        reply = await send(client, message(), ["a@example.org"])
    assert reply == "451 4.7.0 Temporary server error. Please try again later"
    assert "secret internal detail" in caplog.text
    assert await client.cmd("NOOP") == "250 2.0.0 OK"
    await client.close()


# -- limits ------------------------------------------------------------------------------
CONNECTION_LIMIT = (
    "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending "
    f"for more information. [Hostname={HOST}]"
)


@pytest.mark.parametrize("limits", [True, False])
async def test_three_concurrent_connections(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext, limits: bool
) -> None:
    server.state.set_scenario(limits=limits)
    clients = [await authed(server, client_tls) for _ in range(4)]
    for client in clients[:3]:
        assert ACCEPTED.match(await send(client, message(), ["a@example.org"]))
    fourth = await send(clients[3], message(), ["a@example.org"])
    if not limits:
        assert ACCEPTED.match(fourth)
        await clients[0].close()
    else:
        assert fourth == CONNECTION_LIMIT
        # another mailbox is not affected
        other = await authed(server, client_tls, "reception@contoso.com")
        reply = await send(
            other, message("reception@contoso.com"), ["a@example.org"], "reception@contoso.com"
        )
        assert ACCEPTED.match(reply)
        await other.close()
        # when one of the first three leaves, the fourth may send
        assert await clients[0].cmd("QUIT") == replies.CLOSING
        await clients[0].close()
        await asyncio.sleep(0.05)
        assert ACCEPTED.match(await send(clients[3], message(), ["a@example.org"]))
    for client in clients[1:]:
        await client.close()


@pytest.mark.parametrize("limits", [True, False])
async def test_500_recipients_per_message(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext, limits: bool
) -> None:
    server.state.set_scenario(limits=limits)
    client = await authed(server, client_tls)
    await client.cmd(f"MAIL FROM:<{SCANNER}>")
    # pipelined, as PIPELINING allows: 501 RCPTs in one write
    await client.send(b"".join(f"RCPT TO:<r{i}@example.org>\r\n".encode() for i in range(501)))
    answers = [await client.reply() for _ in range(501)]
    assert answers[:500] == ["250 2.1.5 Recipient OK"] * 500
    assert answers[500] == ("452 4.5.3 Too many recipients" if limits else "250 2.1.5 Recipient OK")
    await client.cmd("DATA")
    await client.send(message() + b".\r\n")
    assert ACCEPTED.match(await client.reply())
    assert len(server.state.messages[-1].rcpt_tos) == (500 if limits else 501)
    await client.close()


async def test_35_mb_message_size(server: ExchangeSmtpServer, client_tls: ssl.SSLContext) -> None:
    client = await authed(server, client_tls)
    too_big = "552 5.3.4 Message size exceeds fixed maximum message size"
    assert await client.cmd(f"MAIL FROM:<{SCANNER}> SIZE=36700161") == too_big
    assert await client.cmd(f"MAIL FROM:<{SCANNER}> SIZE=36700160 BODY=8BITMIME") == (
        "250 2.1.0 Sender OK"
    )
    await client.cmd("RCPT TO:<a@example.org>")
    await client.cmd("DATA")
    line = b"A" * 998 + b"\r\n"
    await client.send(message(body="big") + line * (36 * 1024 * 1024 // len(line)) + b".\r\n")
    assert await client.reply() == too_big
    assert server.state.messages == []
    # the connection stays usable after the refusal
    assert ACCEPTED.match(await send(client, message(), ["a@example.org"]))
    await client.close()


async def test_recipient_quota_per_24_hours(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext, clock: FakeClock
) -> None:
    server.limiter.recipients.add(SCANNER, clock.now - 3600, 9_999)
    client = await authed(server, client_tls)
    reply = await send(client, message(), ["a@example.org", "b@example.org"])
    assert reply == (
        "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
        "process message due to a permanent exception with message The message can't be "
        f"submitted because the sender's submission quota was exceeded. [Hostname={HOST}]"
    )
    assert ACCEPTED.match(await send(client, message(), ["a@example.org"]))
    assert server.limiter.recipients.total(SCANNER, clock.now) == 10_000
    clock.now += 23 * 3600  # the prefilled 9,999 leave the window
    assert ACCEPTED.match(await send(client, message(), ["a@example.org", "b@example.org"]))
    await client.close()


async def test_30_messages_per_minute_are_delayed_not_refused(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext, clock: FakeClock
) -> None:
    client = await authed(server, client_tls)
    for _ in range(31):
        assert ACCEPTED.match(await send(client, message(), ["a@example.org"]))
    assert [m.delayed for m in server.state.messages] == [False] * 30 + [True]
    clock.now += 60
    assert ACCEPTED.match(await send(client, message(), ["a@example.org"]))
    assert server.state.messages[-1].delayed is False
    await client.close()


# -- outage --------------------------------------------------------------------------------
async def test_set_down_and_up_on_the_same_port(
    server: ExchangeSmtpServer, client_tls: ssl.SSLContext
) -> None:
    port = server.port
    open_session = await authed(server, client_tls)
    await server.set_down(True)
    assert server.state.scenario.smtp_down
    with pytest.raises((ConnectionError, asyncio.IncompleteReadError, ssl.SSLError)):
        await open_session.cmd("NOOP")
    with pytest.raises(ConnectionRefusedError):
        await asyncio.open_connection("127.0.0.1", port)
    await server.set_down(False)
    assert server.port == port
    client = await authed(server, client_tls)
    assert ACCEPTED.match(await send(client, message(), ["a@example.org"]))
    await client.close()
