"""Exchange reply texts that the simulator sends only under a scenario switch."""

from __future__ import annotations

import base64
import smtplib
import ssl
from collections.abc import Iterator
from contextlib import ExitStack

import pytest

from mailgate.sim.server import SimulatorThread
from tests.bounds import SOCKET

UPN = "scanner@contoso.com"
MESSAGE = b"From: scanner@contoso.com\r\nTo: a@fabrikam.test\r\nSubject: x\r\n\r\nbody\r\n"


def session(sim: SimulatorThread) -> smtplib.SMTP:
    smtp = smtplib.SMTP("127.0.0.1", sim.smtp_port, timeout=SOCKET)
    smtp.starttls(context=ssl.create_default_context(cafile=str(sim.ca_path)))
    smtp.ehlo()
    return smtp


def authenticated(sim: SimulatorThread) -> smtplib.SMTP:
    grant = sim.state.issue_access_token(UPN, "client", [sim.state.profile.smtp_scope], 3600)
    smtp = session(sim)
    xoauth2 = base64.b64encode(f"user={UPN}\x01auth=Bearer {grant.token}\x01\x01".encode())
    code, _ = smtp.docmd("AUTH", "XOAUTH2 " + xoauth2.decode())
    assert code == 235
    return smtp


def _text(error: bytes | str) -> str:
    return error.decode() if isinstance(error, bytes) else error


@pytest.fixture
def occupied(sim: SimulatorThread) -> Iterator[None]:
    """The mailbox's three concurrent connections, in use."""
    with ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(authenticated(sim))
        yield


@pytest.mark.parametrize(
    ("switch", "expected"),
    [
        (
            "5.7.139",
            "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
        ),
        ("5.7.30", "550 5.7.30 Basic authentication is not supported for Client Submission."),
    ],
)
def test_password_auth_replies(sim: SimulatorThread, switch: str, expected: str) -> None:
    sim.set_scenario(basic_auth_reply=switch)
    with session(sim) as smtp, pytest.raises(smtplib.SMTPAuthenticationError) as refused:
        smtp.login(UPN, "a password")
    code, text = expected.split(" ", 1)
    assert refused.value.smtp_code == int(code)
    assert _text(refused.value.smtp_error).startswith(text)


@pytest.mark.parametrize(
    ("switch", "expected"),
    [
        (
            "connections",
            "4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending "
            "for more information. [Hostname=BY1PR10CA0041.outlook.office365.com]",
        ),
        (
            "thread",
            "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded "
            "[Hostname=BY1PR10CA0041.outlook.office365.com]",
        ),
    ],
)
def test_fourth_connection_replies(
    sim: SimulatorThread, occupied: None, switch: str, expected: str
) -> None:
    sim.set_scenario(concurrency_reply=switch)
    with authenticated(sim) as smtp, pytest.raises(smtplib.SMTPDataError) as refused:
        smtp.sendmail(UPN, ["a@fabrikam.test"], MESSAGE)
    assert refused.value.smtp_code == 432
    assert _text(refused.value.smtp_error) == expected
