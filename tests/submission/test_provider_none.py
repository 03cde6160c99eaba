"""Provider `none` (the manual's "Not specified"): any RFC 4954 server, STARTTLS + AUTH PLAIN.

The server is aiosmtpd with a password and STARTTLS required before AUTH and MAIL; mailgate
is driven as a subprocess, as an administrator types it.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mailgate.sim.ca import CertificateFiles, create_certificates
from tests.gateway.e2e_helpers import Mailgate
from tests.submission.sink import Sink

USER, PASSWORD = "printer", "correct horse battery staple"
SENDER = "printer@example.org"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> CertificateFiles:
    return create_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def server(certs: CertificateFiles) -> Iterator[Sink]:
    sink = Sink(tls_context=certs.server_context(), credentials=(USER, PASSWORD))
    sink.start()
    yield sink
    sink.stop()


def configured(tmp_path: Path, certs: CertificateFiles, port: int, password: str) -> Mailgate:
    mailgate = Mailgate(tmp_path / "data")
    mailgate.ok("init")
    # Setting the server address is what the manual's control panel does: provider `none`.
    mailgate.ok("config", "set", "smtp.server", f"127.0.0.1:{port}")
    mailgate.ok("config", "set", "smtp.security", "starttls")
    mailgate.ok("config", "set", "smtp.username", USER)
    mailgate.ok("config", "set", "smtp.password", password)
    mailgate.ok("config", "set", "network.ca_bundle", str(certs.ca_cert))
    return mailgate


def test_starttls_and_auth_plain_deliver(
    server: Sink, certs: CertificateFiles, tmp_path: Path
) -> None:
    mailgate = configured(tmp_path, certs, server.port, PASSWORD)
    mailgate.ok("config", "set", "sender.address", SENDER)
    assert mailgate.json("config", "show")["provider"] == "none"
    title = f"none-{tmp_path.name}"
    result = mailgate.run("send", "--to", "someone@example.net", "--subject", title)
    assert result.returncode == 0, result.stdout + result.stderr
    assert title in server.subjects()
    received = next(m for m in server.messages if title.encode() in m.data)
    assert received.mail_from == SENDER
    assert received.rcpt_tos == ["someone@example.net"]
    assert "PLAIN:printer" in server.logins
    assert PASSWORD not in result.stdout + result.stderr


def test_wrong_password_is_explained_without_showing_it(
    server: Sink, certs: CertificateFiles, tmp_path: Path
) -> None:
    wrong = "not-the-password-" + tmp_path.name
    mailgate = configured(tmp_path, certs, server.port, wrong)
    mailgate.ok("config", "set", "sender.address", SENDER)
    result = mailgate.run("send", "--to", "someone@example.net")
    said = " ".join((result.stdout + result.stderr).split())
    assert result.returncode == 1, said
    assert "refused the user name or password" in said
    assert "Exchange" not in said
    assert wrong not in said


@pytest.mark.parametrize("from_", [None, "boss@example.org"])
def test_without_a_sender_address_send_says_to_set_it(
    server: Sink, certs: CertificateFiles, tmp_path: Path, from_: str | None
) -> None:
    mailgate = configured(tmp_path, certs, server.port, PASSWORD)  # user name: no address
    before = len(server.messages)
    args = ["send", "--to", "someone@example.net"] + (["--from", from_] if from_ else [])
    result = mailgate.run(*args)
    said = " ".join(result.stderr.split())
    assert result.returncode == 2, said
    assert "goes out as None" not in said
    assert "the provider is `none`, so there is no signed-in account to send as" in said
    assert "`mailgate config set sender.address you@example.com`" in said
    assert len(server.messages) == before
