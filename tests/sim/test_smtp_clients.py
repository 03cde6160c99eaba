"""Real SMTP clients against the simulated Exchange: Python's smtplib, msmtp and swaks.

msmtp (C, GnuTLS) speaks XOAUTH2; swaks (Perl) cannot, so it checks the banner, EHLO,
STARTTLS, 530 5.7.57 and the basic-auth refusal. The server runs on its own event loop in
a background thread because these clients block.
"""

from __future__ import annotations

import asyncio
import base64
import shutil
import smtplib
import subprocess
import threading
from collections.abc import Coroutine, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any, TypeVar

import pytest

from mailgate.sim.ca import CertificateFiles, create_certificates
from mailgate.sim.profiles import get_profile
from mailgate.sim.smtp import ExchangeSmtpServer
from mailgate.sim.state import SimState
from tests.bounds import HANG, SOCKET

CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SCANNER = "scanner@contoso.com"
HOST = "BY1PR10CA0041.outlook.office365.com"
T = TypeVar("T")


class Exchange:
    """ExchangeSmtpServer on a private event loop in a daemon thread."""

    def __init__(self, certs: CertificateFiles) -> None:
        self.certs = certs
        self.state = SimState.create(get_profile("global"))
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = ExchangeSmtpServer(self.state, certs.server_context())
        self.port = self.call(self.server.start(0))

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=HANG)

    def token(self, upn: str = SCANNER) -> str:
        return self.state.issue_access_token(
            upn, CLIENT_ID, [self.state.profile.smtp_scope], 3600
        ).token

    def close(self) -> None:
        self.call(self.server.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=HANG)
        self.loop.close()


@pytest.fixture
def certs(tmp_path: Path) -> CertificateFiles:
    return create_certificates(tmp_path / "ca")


@pytest.fixture
def exchange(certs: CertificateFiles) -> Iterator[Exchange]:
    sim = Exchange(certs)
    yield sim
    sim.close()


def tool(name: str, package: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"{name} is not installed; install the Debian/Ubuntu package: apt-get install {package}"
        )
    return path


def xoauth2_string(upn: str, token: str) -> str:
    return f"user={upn}\x01auth=Bearer {token}\x01\x01"


def a_message(sender: str = SCANNER, subject: str = "scan") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = "someone@example.org"
    msg["Subject"] = subject
    msg["Message-ID"] = "<scan-1@device.local>"
    msg.set_content("scanned page attached")
    return msg


def smtp_error(exc: smtplib.SMTPResponseException) -> bytes:
    """smtplib's reply text: bytes at run time, though typeshed says str."""
    value: object = exc.smtp_error
    assert isinstance(value, bytes)
    return value


def tls_smtp(exchange: Exchange) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", exchange.port, local_hostname="device.local", timeout=SOCKET)
    smtp.ehlo()
    smtp.starttls(context=exchange.certs.client_context())
    smtp.ehlo()
    return smtp


# -- smtplib -------------------------------------------------------------------------------
def test_smtplib_one_line_xoauth2_and_connection_reuse(exchange: Exchange) -> None:
    smtp = smtplib.SMTP("127.0.0.1", exchange.port, local_hostname="device.local", timeout=SOCKET)
    code, _ = smtp.ehlo()
    assert code == 250
    assert smtp.has_extn("starttls")
    assert smtp.has_extn("chunking")
    smtp.starttls(context=exchange.certs.client_context())
    smtp.ehlo()
    assert smtp.esmtp_features["auth"] == " LOGIN XOAUTH2"
    response = base64.b64encode(xoauth2_string(SCANNER, exchange.token()).encode()).decode()
    assert smtp.docmd("AUTH", "XOAUTH2 " + response) == (235, b"2.7.0 Authentication successful")
    for subject in ("first", "second"):
        assert smtp.send_message(a_message(subject=subject), to_addrs=["a@example.org"]) == {}
        assert smtp.rset() == (250, b"2.0.0 Resetting")
    assert smtp.quit() == (221, b"2.0.0 Service closing transmission channel")
    assert [m.summary()["subject"] for m in exchange.state.messages] == ["first", "second"]


def test_smtplib_two_step_xoauth2_and_strict_line_length(exchange: Exchange) -> None:
    exchange.state.set_scenario(max_command_line=1030)
    smtp = tls_smtp(exchange)
    response = base64.b64encode(xoauth2_string(SCANNER, exchange.token()).encode()).decode()
    assert smtp.docmd("AUTH", "XOAUTH2 " + response) == (500, b"5.5.2 Line too long")
    token = exchange.token()

    def authobject(challenge: bytes | None = None) -> str:
        return xoauth2_string(SCANNER, token)

    code, _ = smtp.auth("XOAUTH2", authobject, initial_response_ok=False)
    assert code == 235
    smtp.sendmail(SCANNER, ["a@example.org"], a_message().as_bytes())
    smtp.quit()
    assert len(exchange.state.messages) == 1


def test_smtplib_error_challenge_then_535(exchange: Exchange) -> None:
    exchange.state.set_scenario(xoauth2_error_challenge=True)
    smtp = tls_smtp(exchange)
    challenges: list[bytes | None] = []

    def authobject(challenge: bytes | None = None) -> str:
        challenges.append(challenge)
        # RFC 7628: answer the error challenge with an empty response
        return xoauth2_string(SCANNER, "not-a-token") if challenge is None else ""

    with pytest.raises(smtplib.SMTPAuthenticationError) as failure:
        smtp.auth("XOAUTH2", authobject)
    assert failure.value.smtp_code == 535
    assert smtp_error(failure.value).startswith(b"5.7.3 Authentication unsuccessful [")
    assert challenges[1] == (
        b'{"status":"401","schemes":"bearer","scope":"https://outlook.office.com/SMTP.Send"}'
    )
    smtp.close()


def test_smtplib_send_as_denied(exchange: Exchange) -> None:
    smtp = tls_smtp(exchange)
    smtp.auth("XOAUTH2", lambda challenge=None: xoauth2_string(SCANNER, exchange.token()))
    with pytest.raises(smtplib.SMTPDataError) as failure:
        smtp.sendmail("ceo@contoso.com", ["a@example.org"], a_message("ceo@contoso.com").as_bytes())
    assert failure.value.smtp_code == 554
    assert smtp_error(failure.value).startswith(
        b"5.2.252 SendAsDenied; scanner@contoso.com not allowed to send as ceo@contoso.com; "
    )
    smtp.quit()


def test_smtplib_outage(exchange: Exchange) -> None:
    port = exchange.port
    exchange.call(exchange.server.set_down(True))
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP("127.0.0.1", port, timeout=SOCKET)
    exchange.call(exchange.server.set_down(False))
    smtp = smtplib.SMTP("127.0.0.1", port, timeout=SOCKET)
    assert smtp.noop() == (250, b"2.0.0 OK")
    smtp.quit()


# -- msmtp ---------------------------------------------------------------------------------
def run_msmtp(
    exchange: Exchange, tmp_path: Path, upn: str, token: str, sender: str
) -> subprocess.CompletedProcess[str]:
    msmtp = tool("msmtp", "msmtp")
    token_file = tmp_path / "token"
    token_file.write_text(token)
    config = tmp_path / "msmtprc"
    config.write_text(
        "\n".join(
            [
                "account sim",
                "host 127.0.0.1",
                f"port {exchange.port}",
                "domain device.local",
                "tls on",
                "tls_starttls on",
                f"tls_trust_file {exchange.certs.ca_cert}",
                "auth xoauth2",
                f"user {upn}",
                f"passwordeval cat {token_file}",
                f"from {sender}",
                "",
            ]
        )
    )
    config.chmod(0o600)
    return subprocess.run(
        [msmtp, "-C", str(config), "-a", "sim", "--read-envelope-from", "a@example.org"],
        input=a_message(sender).as_string(),
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
    )


def test_msmtp_sends_with_xoauth2(exchange: Exchange, tmp_path: Path) -> None:
    result = run_msmtp(exchange, tmp_path, SCANNER, exchange.token(), SCANNER)
    assert result.returncode == 0, result.stderr
    [stored] = exchange.state.messages
    assert (stored.upn, stored.mail_from, stored.rcpt_tos) == (SCANNER, SCANNER, ["a@example.org"])
    assert exchange.state.counters.smtp_auth_success == 1


def test_msmtp_with_strict_server_line_length(exchange: Exchange, tmp_path: Path) -> None:
    # a 1030-octet command limit refuses the one-line form; msmtp sends the response after 334
    exchange.state.set_scenario(max_command_line=1030)
    result = run_msmtp(exchange, tmp_path, SCANNER, exchange.token(), SCANNER)
    assert result.returncode == 0, result.stderr
    assert len(exchange.state.messages) == 1


def test_msmtp_bad_token_through_error_challenge(exchange: Exchange, tmp_path: Path) -> None:
    exchange.state.set_scenario(xoauth2_error_challenge=True)
    result = run_msmtp(exchange, tmp_path, SCANNER, "EwBIBMl6BAAUnot-issued", SCANNER)
    assert result.returncode != 0
    assert "535 5.7.3 Authentication unsuccessful [" + HOST in result.stderr
    assert exchange.state.counters.smtp_auth_failure == 1


def test_msmtp_sees_tenant_smtp_auth_disabled(exchange: Exchange, tmp_path: Path) -> None:
    exchange.state.set_scenario(smtp_auth_disabled_tenant=True)
    result = run_msmtp(exchange, tmp_path, SCANNER, exchange.token(), SCANNER)
    assert result.returncode != 0
    assert (
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
        "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. [" + HOST
    ) in result.stderr
    assert exchange.state.messages == []


def test_msmtp_send_as_denied(exchange: Exchange, tmp_path: Path) -> None:
    result = run_msmtp(exchange, tmp_path, SCANNER, exchange.token(), "ceo@contoso.com")
    assert result.returncode != 0
    assert (
        "554 5.2.252 SendAsDenied; scanner@contoso.com not allowed to send as ceo@contoso.com;"
        in (result.stderr)
    )


# -- swaks ---------------------------------------------------------------------------------
def run_swaks(exchange: Exchange, *extra: str) -> subprocess.CompletedProcess[str]:
    swaks = tool("swaks", "swaks")
    return subprocess.run(
        [
            swaks,
            "--server",
            "127.0.0.1",
            "--port",
            str(exchange.port),
            "--ehlo",
            "device.local",
            "--from",
            SCANNER,
            "--to",
            "a@example.org",
            "--tls",
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
    )


def test_swaks_banner_ehlo_starttls_and_530(exchange: Exchange) -> None:
    result = run_swaks(exchange)
    out = result.stdout
    assert f"<-  220 {HOST} Microsoft ESMTP MAIL Service ready at " in out
    for line in [
        f"<-  250-{HOST} Hello [127.0.0.1]",
        "<-  250-SIZE 157286400",
        "<-  250-STARTTLS",
        "<-  250-CHUNKING",
        "<-  250 SMTPUTF8",
        "<-  220 2.0.0 SMTP server ready",
        "<~  250-AUTH LOGIN XOAUTH2",
        "<~* 530 5.7.57 Client not authenticated to send mail. [" + HOST,
    ]:
        assert line in out, out


def test_swaks_auth_login_gets_basic_auth_disabled(exchange: Exchange) -> None:
    result = run_swaks(
        exchange, "--auth", "LOGIN", "--auth-user", SCANNER, "--auth-password", "hunter2"
    )
    assert "<~  334 VXNlcm5hbWU6" in result.stdout
    assert (
        "<~* 535 5.7.139 Authentication unsuccessful, basic authentication is disabled. [" + HOST
    ) in result.stdout, result.stdout
    assert exchange.state.counters.smtp_auth_failure == 1
