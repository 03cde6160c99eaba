"""SubmissionClient against a scripted server: the edge cases stricter or other servers show."""

from __future__ import annotations

import base64
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from mailgate.config.model import Endpoint, OAuthConfig, OutboundConfig, TrustConfig
from mailgate.config.presets import Security
from mailgate.sim.ca import CertificateFiles, create_certificates
from mailgate.submission import (
    PasswordCredentials,
    ReplyKind,
    SubmissionClient,
    SubmissionError,
    SubmissionNetworkError,
    Timeouts,
    XOAuth2Credentials,
)
from mailgate.submission.protocol import encode_data
from mailgate.submission.wire import SmtpWire
from tests.submission.fake_smtp import FakeSmtp

UPN = "scanner@contoso.com"
TOKEN = "EwBIBMl6BAAU" + "t" * 2000  # real tokens are 1.5-2.5 KB
MESSAGE = b"From: scanner@contoso.com\r\nSubject: hi\r\n\r\n.leading dot\r\nbody\r\n"


@pytest.fixture
def certs(tmp_path: Path) -> CertificateFiles:
    return create_certificates(tmp_path)


@pytest.fixture
def trust(certs: CertificateFiles) -> TrustConfig:
    return TrustConfig(ca_bundle=certs.ca_cert)


@pytest.fixture
async def fake(certs: CertificateFiles) -> AsyncIterator[FakeSmtp]:
    server = FakeSmtp(
        ehlo_keywords=["SIZE 157286400", "8BITMIME", "SMTPUTF8"],
        ehlo_keywords_tls=["SIZE 157286400", "AUTH LOGIN XOAUTH2", "8BITMIME", "SMTPUTF8"],
        starttls_context=certs.server_context(),
        tokens={TOKEN: UPN},
    )
    await server.start()
    yield server
    await server.stop()


def outbound(
    port: int, security: Security = Security.STARTTLS, oauth: bool = True
) -> OutboundConfig:
    oauth_config = OAuthConfig(
        login_host="login.microsoftonline.com",
        tenant="common",
        client_id="9e5f94bc-e8a4-4e73-b8be-63364c29d753",
        scope="https://outlook.office.com/SMTP.Send offline_access openid email",
    )
    return OutboundConfig(
        provider="exchange-online" if oauth else "none",
        server=Endpoint("127.0.0.1", port),
        security=security,
        oauth=oauth_config if oauth else None,
    )


async def test_starttls_xoauth2_send_with_progress(fake: FakeSmtp, trust: TrustConfig) -> None:
    seen: list[tuple[int, int]] = []
    async with SubmissionClient(chunk_size=16) as client:
        await client.connect(outbound(fake.port), trust)
        assert client.encrypted
        await client.authenticate(XOAuth2Credentials(UPN, TOKEN))
        result = await client.send(
            UPN, ["a@example.com"], MESSAGE, lambda s, t: seen.append((s, t))
        )
    assert result.queue_id == "abc@fake.example"
    assert result.hostname == "FAKE01.PROD"
    assert result.accepted == ("a@example.com",)
    wire = encode_data(MESSAGE)
    assert result.size == len(wire)
    assert fake.messages[0].raw + b".\r\n" == wire  # dot-stuffed on the wire
    assert seen[0] == (0, len(wire))
    assert seen[-1] == (len(wire), len(wire))
    assert [s for s, _ in seen] == sorted(s for s, _ in seen)
    assert len(seen) > 3
    # RFC 4954 section 4: a 2 KB token never goes on the AUTH line, even to Exchange.
    assert [line for line in fake.lines if line.startswith("AUTH")] == ["AUTH XOAUTH2"]
    assert max(len(line) + 2 for line in fake.lines if not line.startswith("Subject")) > 2000
    assert fake.lines[-1] == "QUIT"
    assert any(line.startswith("MAIL FROM:<scanner@contoso.com> SIZE=") for line in fake.lines)


async def test_a_strict_server_never_sees_a_long_command_line(
    fake: FakeSmtp, trust: TrustConfig
) -> None:
    fake.max_line = 1030  # Dovecot
    async with SubmissionClient() as client:
        for _ in range(2):  # every new connection, not only after a refusal
            await client.connect(outbound(fake.port), trust)
            reply = await client.authenticate(XOAuth2Credentials(UPN, TOKEN))
            assert reply.code == 235
            await client.send(UPN, ["a@example.com"], MESSAGE)
    assert [line for line in fake.lines if line.startswith("AUTH")] == ["AUTH XOAUTH2"] * 2
    commands = [line for line in fake.lines if len(line) > 200]
    # Only the SASL responses after "334" are long (not command lines, RFC 4954 section 4).
    assert len(commands) == 2
    assert all(not line.startswith("AUTH") for line in commands)
    assert len(fake.messages) == 2


async def test_short_token_stays_on_one_line(fake: FakeSmtp, trust: TrustConfig) -> None:
    fake.tokens = {"short": UPN}
    async with SubmissionClient() as client:
        await client.connect(outbound(fake.port), trust)
        await client.authenticate(XOAuth2Credentials(UPN, "short"))
    auth = [line for line in fake.lines if line.startswith("AUTH")]
    assert len(auth) == 1
    assert auth[0].startswith("AUTH XOAUTH2 ")


async def test_oauthbearer_when_xoauth2_is_not_offered(fake: FakeSmtp, trust: TrustConfig) -> None:
    fake.ehlo_keywords_tls = ["AUTH PLAIN OAUTHBEARER", "8BITMIME"]
    async with SubmissionClient() as client:
        await client.connect(outbound(fake.port), trust)
        assert (await client.authenticate(XOAuth2Credentials(UPN, TOKEN))).code == 235
        assert client.auth_mechanism == "OAUTHBEARER"  # what doctor reports
    assert [line for line in fake.lines if line.startswith("AUTH")] == ["AUTH OAUTHBEARER"]
    response = fake.lines[fake.lines.index("AUTH OAUTHBEARER") + 1]
    decoded = base64.b64decode(response).decode()
    assert decoded == (
        f"n,a={UPN},\x01host=127.0.0.1\x01port={fake.port}\x01auth=Bearer {TOKEN}\x01\x01"
    )


async def test_oauthbearer_error_challenge_is_acknowledged_with_ctrl_a(
    fake: FakeSmtp, trust: TrustConfig
) -> None:
    fake.ehlo_keywords_tls = ["AUTH OAUTHBEARER"]
    fake.error_challenge = base64.b64encode(b'{"status":"invalid_token"}').decode()
    async with SubmissionClient() as client:
        await client.connect(outbound(fake.port), trust)
        with pytest.raises(SubmissionError) as info:
            await client.authenticate(XOAuth2Credentials(UPN, "bad"))
    assert info.value.challenge == {"status": "invalid_token"}
    # RFC 7628 section 3.2.3: the client's answer to the error challenge is a single %x01.
    auth = next(i for i, line in enumerate(fake.lines) if line.startswith("AUTH OAUTHBEARER "))
    assert fake.lines[auth + 1] == "AQ=="


async def test_error_challenge_then_535_without_leaking_the_token(
    fake: FakeSmtp, trust: TrustConfig
) -> None:
    body = {"status": "401", "schemes": "bearer", "scope": "https://outlook.office.com/SMTP.Send"}
    fake.error_challenge = base64.b64encode(json.dumps(body).encode()).decode()
    bad = "SECRET" + "z" * 1500
    async with SubmissionClient() as client:
        await client.connect(outbound(fake.port), trust)
        with pytest.raises(SubmissionError) as info:
            await client.authenticate(XOAuth2Credentials(UPN, bad))
        assert client.connected  # the session survives a failed AUTH
    err = info.value
    assert err.kind is ReplyKind.AUTH
    assert err.stage == "AUTH"
    assert err.reply is not None
    assert err.reply.enhanced == "5.7.3"
    assert err.challenge == body
    assert "mailgate login" in str(err)
    assert "SECRET" not in str(err)
    assert "SECRET" not in repr(err.args)
    assert "SECRET" not in repr(XOAuth2Credentials(UPN, bad))
    i = fake.lines.index(next(x for x in fake.lines if x.startswith("AUTH")))
    assert fake.lines[i + 2] == ""  # after the response, the empty answer to the 334 challenge


async def test_implicit_tls_with_plain(certs: CertificateFiles, trust: TrustConfig) -> None:
    fake = await FakeSmtp(implicit_tls=certs.server_context(), passwords={"dev": "pw"}).start()
    try:
        async with SubmissionClient() as client:
            await client.connect(outbound(fake.port, Security.TLS, oauth=False), trust)
            assert client.encrypted
            await client.authenticate(PasswordCredentials("dev", "pw"))
            await client.send("dev@example.net", ["a@example.com"], b"Subject: x\r\n\r\ny\r\n")
    finally:
        await fake.stop()
    assert "AUTH PLAIN AGRldgBwdw==" in fake.lines
    assert len(fake.messages) == 1


async def test_plaintext_login_for_provider_none() -> None:
    fake = await FakeSmtp(ehlo_keywords=["AUTH LOGIN"], passwords={"dev": "pw"}).start()
    try:
        async with SubmissionClient() as client:
            await client.connect(outbound(fake.port, Security.NONE, oauth=False))
            assert not client.encrypted
            await client.authenticate(PasswordCredentials("dev", "pw"))
            with pytest.raises(SubmissionError) as info:
                await client.authenticate(PasswordCredentials("dev", "wrong"))
    finally:
        await fake.stop()
    assert fake.lines[1:4] == ["AUTH LOGIN", "ZGV2", "cHc="]
    assert info.value.kind is ReplyKind.AUTH
    assert "password" in str(info.value)
    assert "mailgate login" not in str(info.value)


async def test_no_token_over_plaintext() -> None:
    fake = await FakeSmtp(ehlo_keywords=["AUTH XOAUTH2"]).start()
    try:
        async with SubmissionClient() as client:
            await client.connect(outbound(fake.port, Security.NONE))
            with pytest.raises(SubmissionError, match="unencrypted"):
                await client.authenticate(XOAuth2Credentials(UPN, TOKEN))
    finally:
        await fake.stop()
    assert not any(line.startswith("AUTH") for line in fake.lines)


async def test_untrusted_certificate(fake: FakeSmtp) -> None:
    client = SubmissionClient()
    with pytest.raises(SubmissionNetworkError) as info:
        await client.connect(outbound(fake.port), TrustConfig())
    assert info.value.kind is ReplyKind.NETWORK
    assert "certificate" in str(info.value)
    assert "CA bundle" in str(info.value)
    assert not client.connected


async def test_starttls_injection_is_refused(fake: FakeSmtp, trust: TrustConfig) -> None:
    fake.after_starttls = b"250 injected\r\n"
    with pytest.raises(SubmissionNetworkError, match="tampering"):
        await SubmissionClient().connect(outbound(fake.port), trust)


async def test_connection_refused() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with pytest.raises(SubmissionNetworkError) as info:
        await SubmissionClient().connect(outbound(port, Security.NONE, oauth=False))
    assert info.value.classification.transient
    assert info.value.stage == "connect"


async def test_greeting_timeout() -> None:
    fake = await FakeSmtp(silent=True).start()
    try:
        client = SubmissionClient(timeouts=Timeouts(greeting=0.2))
        with pytest.raises(SubmissionNetworkError, match="did not answer in time during connect"):
            await client.connect(outbound(fake.port, Security.NONE, oauth=False))
    finally:
        await fake.stop()


async def test_too_many_recipients_defers_the_rest(fake: FakeSmtp, trust: TrustConfig) -> None:
    fake.script["RCPT"] = [
        "250 2.1.5 Recipient OK",
        "550 5.1.1 No such user",
        "452 4.5.3 Too many recipients",
    ]
    async with SubmissionClient() as client:
        await client.connect(outbound(fake.port), trust)
        await client.authenticate(XOAuth2Credentials(UPN, TOKEN))
        rcpts = ["a@x.com", "b@x.com", "c@x.com", "d@x.com"]
        result = await client.send(UPN, rcpts, MESSAGE)
    assert result.accepted == ("a@x.com",)
    assert list(result.refused) == ["b@x.com"]
    assert result.deferred == ("c@x.com", "d@x.com")
    assert sum(line.startswith("RCPT") for line in fake.lines) == 3


async def test_all_recipients_refused_resets(fake: FakeSmtp, trust: TrustConfig) -> None:
    fake.script["RCPT"] = ["550 5.1.1 No such user"]
    async with SubmissionClient() as client:
        await client.connect(outbound(fake.port), trust)
        await client.authenticate(XOAuth2Credentials(UPN, TOKEN))
        with pytest.raises(SubmissionError) as info:
            await client.send(UPN, ["a@x.com"], MESSAGE)
        assert fake.lines[-1] == "RSET"
        # The connection carries the next message.
        await client.send(UPN, ["b@x.com"], MESSAGE)
    assert info.value.kind is ReplyKind.PERMANENT
    assert list(info.value.refused) == ["a@x.com"]
    assert len(fake.messages) == 1


@pytest.mark.parametrize(
    ("end", "kind"),
    [
        (
            "432 4.3.2 Concurrent connections limit exceeded. Visit "
            "https://aka.ms/concurrent_sending for more information. [Hostname=X]",
            ReplyKind.THROTTLED,
        ),
        (
            "554 5.2.252 SendAsDenied; scanner@contoso.com not allowed to send as x",
            ReplyKind.SEND_AS_DENIED,
        ),
        ("552 5.3.4 Message size exceeds fixed maximum message size", ReplyKind.TOO_LARGE),
    ],
)
async def test_end_of_data_refusals(
    fake: FakeSmtp, trust: TrustConfig, end: str, kind: ReplyKind
) -> None:
    fake.script["END"] = [end]
    async with SubmissionClient() as client:
        await client.connect(outbound(fake.port), trust)
        await client.authenticate(XOAuth2Credentials(UPN, TOKEN))
        with pytest.raises(SubmissionError) as info:
            await client.send(UPN, ["a@x.com"], MESSAGE)
        assert client.connected
        await client.reset()
        second = await client.send(UPN, ["a@x.com"], MESSAGE)
    assert info.value.kind is kind
    assert info.value.stage == "end of DATA"
    assert second.reply.code == 250


async def test_421_closes_the_connection(fake: FakeSmtp, trust: TrustConfig) -> None:
    fake.script["MAIL"] = ["421 4.3.2 Service not available, closing transmission channel"]
    async with SubmissionClient() as client:
        await client.connect(outbound(fake.port), trust)
        await client.authenticate(XOAuth2Credentials(UPN, TOKEN))
        with pytest.raises(SubmissionError) as info:
            await client.send(UPN, ["a@x.com"], MESSAGE)
        assert not client.connected
    assert info.value.classification.transient


async def test_8bit_and_smtputf8_parameters(fake: FakeSmtp, trust: TrustConfig) -> None:
    async with SubmissionClient() as client:
        await client.connect(outbound(fake.port), trust)
        await client.authenticate(XOAuth2Credentials(UPN, TOKEN))
        await client.send(UPN, ["用户@例子.广告"], "Subject: é\r\n\r\né\r\n".encode())
    mail = next(line for line in fake.lines if line.startswith("MAIL"))
    assert mail.endswith("BODY=8BITMIME SMTPUTF8")
    assert "RCPT TO:<用户@例子.广告>" in fake.lines


async def test_missing_smtputf8_is_refused_before_mail(trust: TrustConfig) -> None:
    fake = await FakeSmtp(ehlo_keywords=["8BITMIME"]).start()
    try:
        async with SubmissionClient() as client:
            await client.connect(outbound(fake.port, Security.NONE, oauth=False))
            with pytest.raises(SubmissionError, match="SMTPUTF8"):
                await client.send("a@b.c", ["用户@例子.广告"], b"x")
    finally:
        await fake.stop()
    assert not any(line.startswith("MAIL") for line in fake.lines)


async def test_noop_and_reset_and_double_close(fake: FakeSmtp, trust: TrustConfig) -> None:
    client = SubmissionClient()
    await client.connect(outbound(fake.port), trust)
    assert (await client.noop()).code == 250
    assert (await client.reset()).code == 250
    await client.close()
    await client.close()
    assert not client.connected
    with pytest.raises(SubmissionError, match="closed"):
        await client.noop()


async def test_helo_fallback_when_ehlo_unknown() -> None:
    fake = await FakeSmtp(esmtp=False).start()
    try:
        async with SubmissionClient() as client:
            await client.connect(outbound(fake.port, Security.NONE, oauth=False))
            assert client.extensions.keywords == {}
            await client.send("a@b.c", ["d@e.f"], b"Subject: x\r\n\r\ny\r\n")
    finally:
        await fake.stop()
    assert fake.lines[0] == "EHLO [127.0.0.1]"
    assert fake.lines[1] == "HELO [127.0.0.1]"
    assert "MAIL FROM:<a@b.c>" in fake.lines  # no SIZE= without EHLO


async def test_refused_session_never_bounces() -> None:
    fake = await FakeSmtp(banner="554 5.7.1 No SMTP service here").start()
    try:
        with pytest.raises(SubmissionError) as info:
            await SubmissionClient().connect(outbound(fake.port, Security.NONE, oauth=False))
    finally:
        await fake.stop()
    assert info.value.kind is ReplyKind.NETWORK
    assert not info.value.classification.bounces
    assert info.value.reply is not None
    assert info.value.reply.code == 554


async def test_bad_ca_bundle_is_a_submission_error(tmp_path: Path) -> None:
    trust = TrustConfig(ca_bundle=tmp_path / "missing.pem")
    with pytest.raises(SubmissionNetworkError, match="does not exist"):
        await SubmissionClient().connect(outbound(1), trust)


def record_writes(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every write the client's SmtpWire makes, as bytes."""
    writes: list[bytes] = []
    original = SmtpWire.write

    async def spy(self: SmtpWire, data: bytes | memoryview, within: float) -> None:
        writes.append(bytes(data))
        await original(self, data, within)

    monkeypatch.setattr(SmtpWire, "write", spy)
    return writes


async def test_pipelining_sends_the_envelope_in_one_write_and_judges_each_recipient(
    fake: FakeSmtp, trust: TrustConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake.ehlo_keywords_tls = [*(fake.ehlo_keywords_tls or []), "PIPELINING"]
    fake.script["RCPT"] = [
        "550 5.1.1 No such user",
        "250 2.1.5 Recipient OK",
        "452 4.5.3 Too many recipients",
        "452 4.5.3 Too many recipients",
    ]
    writes = record_writes(monkeypatch)
    async with SubmissionClient() as client:
        await client.connect(outbound(fake.port), trust)
        await client.authenticate(XOAuth2Credentials(UPN, TOKEN))
        before = len(writes)
        result = await client.send(UPN, ["a@x.com", "b@x.com", "c@x.com", "d@x.com"], MESSAGE)
    group = writes[before].decode()
    assert group.startswith("MAIL FROM:<scanner@contoso.com> SIZE=")
    assert group.endswith("RCPT TO:<d@x.com>\r\nDATA\r\n")
    assert group.count("\r\n") == 6  # MAIL, four RCPT, DATA: one write, one round trip
    assert list(result.refused) == ["a@x.com"]
    assert result.accepted == ("b@x.com",)
    assert result.deferred == ("c@x.com", "d@x.com")
    assert fake.messages[0].raw + b".\r\n" == encode_data(MESSAGE)


async def test_pipelining_when_no_recipient_is_accepted_but_data_says_354(
    fake: FakeSmtp, trust: TrustConfig
) -> None:
    # RFC 2920 section 3.1: end the data at once with a lone "."; then RSET and report.
    fake.ehlo_keywords_tls = [*(fake.ehlo_keywords_tls or []), "PIPELINING"]
    fake.script["RCPT"] = ["550 5.1.1 No such user"]
    fake.script["END"] = ["554 5.5.1 Error: no valid recipients"]
    async with SubmissionClient() as client:
        await client.connect(outbound(fake.port), trust)
        await client.authenticate(XOAuth2Credentials(UPN, TOKEN))
        with pytest.raises(SubmissionError) as info:
            await client.send(UPN, ["a@x.com"], MESSAGE)
        assert fake.lines[-1] == "RSET"
        second = await client.send(UPN, ["b@x.com"], MESSAGE)
    assert info.value.stage == "RCPT TO"
    assert info.value.kind is ReplyKind.PERMANENT
    assert list(info.value.refused) == ["a@x.com"]
    assert fake.messages[0].raw == b""
    assert second.accepted == ("b@x.com",)


async def test_pipelining_mail_refused(fake: FakeSmtp, trust: TrustConfig) -> None:
    fake.ehlo_keywords_tls = [*(fake.ehlo_keywords_tls or []), "PIPELINING"]
    fake.script["MAIL"] = ["530 5.7.57 Client not authenticated to send mail."]
    fake.script["RCPT"] = ["503 5.5.1 Need MAIL command"]
    fake.script["DATA"] = ["503 5.5.1 Need RCPT command"]
    async with SubmissionClient() as client:
        await client.connect(outbound(fake.port), trust)
        await client.authenticate(XOAuth2Credentials(UPN, TOKEN))
        with pytest.raises(SubmissionError) as info:
            await client.send(UPN, ["a@x.com"], MESSAGE)
        assert fake.lines[-1] == "RSET"
    assert info.value.stage == "MAIL FROM"
    assert info.value.reply is not None
    assert info.value.reply.code == 530
    assert not fake.messages


async def test_without_pipelining_one_command_per_write(
    fake: FakeSmtp, trust: TrustConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    writes = record_writes(monkeypatch)
    async with SubmissionClient() as client:
        await client.connect(outbound(fake.port), trust)
        await client.authenticate(XOAuth2Credentials(UPN, TOKEN))
        before = len(writes)
        await client.send(UPN, ["a@x.com", "b@x.com"], MESSAGE)
    assert [w.split(b":")[0] for w in writes[before : before + 4]] == [
        b"MAIL FROM",
        b"RCPT TO",
        b"RCPT TO",
        b"DATA\r\n",
    ]


async def test_a_failed_rset_after_a_refusal_drops_the_connection(
    fake: FakeSmtp, trust: TrustConfig
) -> None:
    # After RSET fails the session's state is unknown; the connection must not be reused.
    fake.script["RCPT"] = ["550 5.1.1 No such user"]
    fake.script["RSET"] = ["451 4.3.0 Try again"]
    async with SubmissionClient() as client:
        await client.connect(outbound(fake.port), trust)
        await client.authenticate(XOAuth2Credentials(UPN, TOKEN))
        with pytest.raises(SubmissionError):
            await client.send(UPN, ["a@x.com"], MESSAGE)
        assert not client.connected
