"""The device-facing SMTP listener, driven by real clients (smtplib, swaks)."""

from __future__ import annotations

import asyncio
import shutil
import smtplib
import ssl
import subprocess

import pytest

from mailgate.gateway.inbound import InboundPolicy
from tests.bounds import HANG, SOCKET
from tests.gateway.listener_helpers import Start, client_context

MESSAGE = (
    b"From: Scanner <mfp@printer.local>\r\nTo: a@contoso.com\r\n"
    b"Subject: Scan\r\n\r\n.dot\r\nbody\r\n"
)


def send(
    port: int,
    rcpts: list[str],
    data: bytes = MESSAGE,
    login: tuple[str, str] | None = None,
    context: ssl.SSLContext | None = None,
) -> dict[str, tuple[int, bytes]]:
    with smtplib.SMTP("127.0.0.1", port, timeout=SOCKET) as smtp:
        if context is not None:
            smtp.starttls(context=context)
        if login is not None:
            smtp.login(*login)
        return smtp.sendmail("mfp@printer.local", rcpts, data)


async def test_accepts_and_stores_exactly_what_was_sent(start_listener: Start) -> None:
    gw = await start_listener()
    refused = await asyncio.to_thread(send, gw.port, ["a@contoso.com", "b@contoso.com"])
    assert refused == {}
    [info] = gw.queue.messages()
    assert info.envelope_from == "mfp@printer.local"
    assert [r.address for r in info.recipients] == ["a@contoso.com", "b@contoso.com"]
    assert info.subject == "Scan"
    assert info.client == "127.0.0.1"
    assert gw.queue.body(info.id) == MESSAGE


async def test_reply_names_the_queue_id(start_listener: Start) -> None:
    gw = await start_listener()

    def session() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=SOCKET) as smtp:
            smtp.ehlo()
            smtp.mail("a@b.test")
            smtp.rcpt("c@d.test")
            return smtp.data(MESSAGE)

    code, text = await asyncio.to_thread(session)
    assert code == 250
    assert text.startswith(b"2.0.0 OK: queued as ")


async def test_refuses_networks_not_allowed(start_listener: Start) -> None:
    gw = await start_listener(InboundPolicy(allowed_networks=("10.0.0.0/8",)))

    def connect() -> None:
        smtplib.SMTP("127.0.0.1", gw.port, timeout=SOCKET)

    with pytest.raises(smtplib.SMTPConnectError) as refused:
        await asyncio.to_thread(connect)
    assert refused.value.smtp_code == 554
    assert b"5.7.1" in refused.value.smtp_error
    assert gw.handler.stats.refused_network == 1


async def test_connection_limit_gives_421(start_listener: Start) -> None:
    gw = await start_listener(InboundPolicy(max_connections=1))
    reader, writer = await asyncio.open_connection("127.0.0.1", gw.port)
    assert (await reader.readline()).startswith(b"220")
    second_reader, second_writer = await asyncio.open_connection("127.0.0.1", gw.port)
    assert (await second_reader.readline()).startswith(b"421 4.7.0")
    second_writer.close()
    writer.close()


async def test_too_many_recipients(start_listener: Start) -> None:
    gw = await start_listener(InboundPolicy(max_recipients=2))
    refused = await asyncio.to_thread(send, gw.port, ["a@x.test", "b@x.test", "c@x.test"])
    assert refused == {"c@x.test": (452, b"4.5.3 Too many recipients")}
    [info] = gw.queue.messages()
    assert [r.address for r in info.recipients] == ["a@x.test", "b@x.test"]


async def test_size_limit_declared_and_actual(start_listener: Start) -> None:
    gw = await start_listener(InboundPolicy(max_message_size=10_000))
    big = MESSAGE + (b"x" * 76 + b"\r\n") * 300
    # Declared with SIZE= (RFC 1870): refused at MAIL.
    with pytest.raises(smtplib.SMTPSenderRefused) as declared:
        await asyncio.to_thread(send, gw.port, ["a@x.test"], big)
    assert declared.value.smtp_code == 552

    # Not declared: refused at the end of DATA.
    def undeclared() -> tuple[int, bytes]:
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=SOCKET) as smtp:
            smtp.ehlo()
            smtp.mail("a@b.test")
            smtp.rcpt("c@d.test")
            return smtp.data(big)

    code, _ = await asyncio.to_thread(undeclared)
    assert code == 552
    assert gw.queue.messages() == []


async def test_store_failure_is_451_and_nothing_kept(start_listener: Start) -> None:
    gw = await start_listener(fail_store=True)
    with pytest.raises(smtplib.SMTPDataError) as failed:
        await asyncio.to_thread(send, gw.port, ["a@x.test"])
    assert failed.value.smtp_code == 451
    assert b"4.3.0" in failed.value.smtp_error
    assert b"space" not in failed.value.smtp_error  # internal detail stays in the log
    assert gw.queue.messages() == []


async def test_device_auth_after_starttls(start_listener: Start) -> None:
    gw = await start_listener(InboundPolicy(auth_required=True))
    gw.devices.add("printer-3f", "correct horse", 0.0)
    ctx = client_context(gw.cert)
    login = ("printer-3f", "correct horse")
    await asyncio.to_thread(send, gw.port, ["a@x.test"], MESSAGE, login, ctx)
    [info] = gw.queue.messages()
    assert info.recipients[0].address == "a@x.test"
    with pytest.raises(smtplib.SMTPAuthenticationError) as wrong:
        await asyncio.to_thread(send, gw.port, ["a@x.test"], MESSAGE, ("printer-3f", "wrong"), ctx)
    assert wrong.value.smtp_code == 535


async def test_auth_required_refuses_mail_without_it(start_listener: Start) -> None:
    gw = await start_listener(InboundPolicy(auth_required=True))
    with pytest.raises(smtplib.SMTPSenderRefused) as refused:
        await asyncio.to_thread(send, gw.port, ["a@x.test"])
    assert refused.value.smtp_code == 530


async def test_auth_not_offered_before_tls(start_listener: Start) -> None:
    gw = await start_listener()
    gw.devices.add("printer", "long enough", 0.0)

    def features() -> tuple[bool, bool]:
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=SOCKET) as smtp:
            smtp.ehlo()
            before = smtp.has_extn("auth")
            smtp.starttls(context=client_context(gw.cert))
            smtp.ehlo()
            return before, smtp.has_extn("auth")

    assert await asyncio.to_thread(features) == (False, True)


async def test_swaks_delivers(start_listener: Start) -> None:
    swaks = shutil.which("swaks")
    assert swaks, "swaks is not installed: apt-get install swaks (python3 dev.py test does it)"
    gw = await start_listener()
    result = await asyncio.to_thread(
        subprocess.run,
        [
            swaks,
            "--server",
            f"127.0.0.1:{gw.port}",
            "--from",
            "mfp@printer.local",
            "--to",
            "a@contoso.com",
            "--header",
            "Subject: from swaks",
            "--body",
            "scan attached",
        ],
        capture_output=True,
        text=True,
        timeout=HANG,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "250 2.0.0 OK: queued as" in result.stdout
    [info] = gw.queue.messages()
    assert info.subject == "from swaks"


async def test_auth_brute_force_is_locked_out(start_listener: Start) -> None:
    gw = await start_listener(InboundPolicy(auth_required=True))
    gw.devices.add("printer-3f", "correct horse", 0.0)
    gw.handler.throttle.max_failures = 3
    ctx = client_context(gw.cert)

    def attempt(password: str) -> int:
        with smtplib.SMTP("127.0.0.1", gw.port, timeout=SOCKET) as smtp:
            smtp.starttls(context=ctx)
            smtp.ehlo()
            # One mechanism per attempt (login() would try PLAIN, then LOGIN).
            smtp.user, smtp.password = "printer-3f", password
            try:
                smtp.auth("PLAIN", smtp.auth_plain)
            except smtplib.SMTPAuthenticationError as refused:
                return refused.smtp_code
            return 235

    codes = [await asyncio.to_thread(attempt, "wrong") for _ in range(3)]
    assert codes == [535, 535, 535]
    # Locked: even the right password is refused now, without being checked.
    assert await asyncio.to_thread(attempt, "correct horse") == 454
