"""SubmissionClient against the simulated Exchange Online (sim/smtp.py), as `mailgate send` uses it.

The simulator runs its own event loop in a thread; the client runs in the test's loop.
"""

from __future__ import annotations

import email
import email.policy
from pathlib import Path

import pytest

from mailgate.config.model import Endpoint, OAuthConfig, OutboundConfig, TrustConfig
from mailgate.config.presets import Security
from mailgate.sim.server import SimulatorThread
from mailgate.submission import (
    PasswordCredentials,
    ReplyKind,
    SubmissionClient,
    SubmissionError,
    XOAuth2Credentials,
)
from mailgate.submission.message import build_message, serialize
from mailgate.submission.wire import SmtpWire

CLIENT_ID = "9e5f94bc-e8a4-4e73-b8be-63364c29d753"
UPN = "scanner@contoso.com"


def outbound(sim: SimulatorThread) -> OutboundConfig:
    profile = sim.state.profile
    return OutboundConfig(
        provider="exchange-online",
        server=Endpoint("127.0.0.1", sim.smtp_port),
        security=Security.STARTTLS,
        oauth=OAuthConfig(
            login_host=sim.idp_hostport,
            tenant=profile.default_tenant,
            client_id=CLIENT_ID,
            scope=f"{profile.smtp_scope} offline_access openid email",
        ),
    )


def token(sim: SimulatorThread, upn: str = UPN) -> str:
    grant = sim.state.issue_access_token(upn, CLIENT_ID, [sim.state.profile.smtp_scope], 3600)
    return grant.token


async def connected(sim: SimulatorThread, **kwargs: object) -> SubmissionClient:
    client = SubmissionClient(**kwargs)  # type: ignore[arg-type]
    await client.connect(outbound(sim), TrustConfig(ca_bundle=sim.ca_path))
    return client


async def test_send_with_attachment_lands_in_the_mailbox(
    sim: SimulatorThread, tmp_path: Path
) -> None:
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4\n" + b"\x00\xff" * 200_000)
    message, rcpts = build_message(
        UPN,
        ["someone@contoso.com"],
        [],
        ["audit@contoso.com"],
        "Scan für dich",
        "Attached.\n",
        [report],
    )
    data = serialize(message)
    seen: list[tuple[int, int]] = []
    client = await connected(sim)
    try:
        assert client.greeting is not None
        assert "Microsoft ESMTP MAIL Service ready" in client.greeting.text
        assert client.extensions.auth_mechanisms == {"LOGIN", "XOAUTH2"}
        assert (await client.authenticate(XOAuth2Credentials(UPN, token(sim)))).code == 235
        result = await client.send(UPN, rcpts, data, lambda s, t: seen.append((s, t)))
    finally:
        await client.close()
    assert result.queue_id == str(message["Message-ID"]).strip("<>")  # Exchange echoes it
    assert result.hostname == sim.state.profile.banner_host
    assert seen[-1] == (result.size, result.size)
    assert len(seen) > 4
    [stored] = sim.state.messages
    assert stored.upn == UPN
    assert stored.rcpt_tos == rcpts
    back = email.message_from_bytes(stored.data, policy=email.policy.default)
    assert back["Subject"] == "Scan für dich"
    assert "Bcc" not in back
    attachment = next(back.iter_attachments())
    assert attachment.get_content() == report.read_bytes()


async def test_connection_reused_with_rset(sim: SimulatorThread) -> None:
    client = await connected(sim)
    try:
        await client.authenticate(XOAuth2Credentials(UPN, token(sim)))
        for n in range(3):
            await client.send(UPN, ["someone@contoso.com"], f"Subject: {n}\r\n\r\nx\r\n".encode())
            await client.reset()
    finally:
        await client.close()
    assert [m.summary()["subject"] for m in sim.state.messages] == ["0", "1", "2"]
    assert sim.state.counters.smtp_connections == 1


async def test_bad_token_error_challenge_and_535(sim: SimulatorThread) -> None:
    client = await connected(sim)
    try:
        with pytest.raises(SubmissionError) as info:
            await client.authenticate(XOAuth2Credentials(UPN, "EwBIBMl6BAAU" + "x" * 1800))
    finally:
        await client.close()
    err = info.value
    assert err.kind is ReplyKind.AUTH
    assert err.reply is not None
    assert err.reply.enhanced == "5.7.3"
    assert err.challenge is not None
    assert err.challenge["status"] == "401"
    assert "mailgate login" in str(err)
    assert UPN in str(err)
    assert "x" * 50 not in str(err)


@pytest.mark.parametrize(
    ("upn", "scenario", "fix"),
    [
        (
            "legacy@contoso.com",
            {},
            "Set-CASMailbox -Identity legacy@contoso.com -SmtpClientAuthenticationDisabled $false",
        ),
        (
            UPN,
            {"smtp_auth_disabled_tenant": True},
            "Set-TransportConfig -SmtpClientAuthenticationDisabled $false",
        ),
    ],
)
async def test_smtp_auth_disabled(
    sim: SimulatorThread, upn: str, scenario: dict[str, object], fix: str
) -> None:
    if scenario:
        sim.set_scenario(**scenario)
    client = await connected(sim)
    try:
        with pytest.raises(SubmissionError) as info:
            await client.authenticate(XOAuth2Credentials(upn, token(sim, upn)))
    finally:
        await client.close()
    assert info.value.reply is not None
    assert info.value.reply.enhanced == "5.7.139"
    assert info.value.kind is ReplyKind.AUTH
    assert fix in str(info.value)


async def test_basic_auth_is_disabled(sim: SimulatorThread) -> None:
    client = await connected(sim)
    try:
        with pytest.raises(SubmissionError) as info:
            await client.authenticate(PasswordCredentials(UPN, "hunter2"))
    finally:
        await client.close()
    assert info.value.kind is ReplyKind.AUTH
    assert "hunter2" not in str(info.value)
    assert "mailgate login" in str(info.value)


async def test_dovecot_like_line_limit_falls_back(sim: SimulatorThread) -> None:
    sim.set_scenario(max_command_line=1030)
    client = await connected(sim)
    try:
        assert (await client.authenticate(XOAuth2Credentials(UPN, token(sim)))).code == 235
        await client.send(UPN, ["someone@contoso.com"], b"Subject: hi\r\n\r\nx\r\n")
    finally:
        await client.close()
    assert len(sim.state.messages) == 1


async def test_mail_without_auth_is_530(sim: SimulatorThread) -> None:
    client = await connected(sim)
    try:
        with pytest.raises(SubmissionError) as info:
            await client.send(UPN, ["someone@contoso.com"], b"Subject: hi\r\n\r\nx\r\n")
    finally:
        await client.close()
    assert info.value.reply is not None
    assert info.value.reply.enhanced == "5.7.57"
    assert info.value.stage == "MAIL FROM"


@pytest.mark.parametrize(
    ("sender", "ok"),
    [
        ("scanner@contoso.com", True),
        ("scan@contoso.com", True),  # alias
        ("reception@contoso.com", True),  # send-as grant
        ("ceo@contoso.com", False),
    ],
)
async def test_send_as(sim: SimulatorThread, sender: str, ok: bool) -> None:
    client = SubmissionClient(primary_address=UPN)
    await client.connect(outbound(sim), TrustConfig(ca_bundle=sim.ca_path))
    message, rcpts = build_message(sender, ["someone@contoso.com"], [], [], "s", "b")
    try:
        await client.authenticate(XOAuth2Credentials(UPN, token(sim)))
        if ok:
            await client.send(sender, rcpts, serialize(message))
            return
        with pytest.raises(SubmissionError) as info:
            await client.send(sender, rcpts, serialize(message))
    finally:
        await client.close()
    assert info.value.kind is ReplyKind.SEND_AS_DENIED
    text = str(info.value)
    assert "ceo@contoso.com" in text
    assert "scanner@contoso.com" in text
    assert "alias" in text


async def test_fourth_connection_is_throttled(sim: SimulatorThread) -> None:
    clients = [await connected(sim) for _ in range(4)]
    try:
        for client in clients:
            await client.authenticate(XOAuth2Credentials(UPN, token(sim)))
        with pytest.raises(SubmissionError) as info:
            await clients[3].send(UPN, ["someone@contoso.com"], b"Subject: hi\r\n\r\nx\r\n")
        await clients[0].send(UPN, ["someone@contoso.com"], b"Subject: hi\r\n\r\nx\r\n")
    finally:
        for client in clients:
            await client.close()
    assert info.value.kind is ReplyKind.THROTTLED
    assert "3 concurrent connections" in str(info.value)


async def test_too_many_recipients_are_deferred(sim: SimulatorThread) -> None:
    rcpts = [f"r{n}@contoso.com" for n in range(502)]
    client = await connected(sim)
    try:
        await client.authenticate(XOAuth2Credentials(UPN, token(sim)))
        result = await client.send(UPN, rcpts, b"Subject: many\r\n\r\nx\r\n")
    finally:
        await client.close()
    assert len(result.accepted) == 500
    assert result.deferred == ("r500@contoso.com", "r501@contoso.com")


async def test_too_large_refused_at_mail_from(sim: SimulatorThread) -> None:
    client = await connected(sim)
    data = b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * 37_000  # > 35 MB
    try:
        await client.authenticate(XOAuth2Credentials(UPN, token(sim)))
        with pytest.raises(SubmissionError) as info:
            await client.send(UPN, ["someone@contoso.com"], data)
    finally:
        await client.close()
    assert info.value.kind is ReplyKind.TOO_LARGE
    assert info.value.stage == "MAIL FROM"


async def test_server_down_is_a_network_fault(sim: SimulatorThread) -> None:
    sim.set_scenario(smtp_down=True)
    with pytest.raises(SubmissionError) as info:
        await connected(sim)
    assert info.value.kind is ReplyKind.NETWORK
    assert info.value.classification.transient


async def test_pipelined_envelope_in_one_write_and_501st_recipient_deferred(
    sim: SimulatorThread, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Exchange offers PIPELINING (RFC 2920): MAIL, all RCPTs and DATA go in one write, and
    # the 501st recipient's own 452 4.5.3 defers it alone (500 per message).
    writes: list[bytes] = []
    original = SmtpWire.write

    async def spy(self: SmtpWire, data: bytes | memoryview, within: float) -> None:
        writes.append(bytes(data))
        await original(self, data, within)

    monkeypatch.setattr(SmtpWire, "write", spy)
    rcpts = [f"r{n}@contoso.com" for n in range(501)]
    client = await connected(sim)
    try:
        assert client.extensions.has("PIPELINING")
        await client.authenticate(XOAuth2Credentials(UPN, token(sim)))
        before = len(writes)
        result = await client.send(UPN, rcpts, b"Subject: many\r\n\r\nx\r\n")
    finally:
        await client.close()
    group = writes[before]
    assert group.startswith(b"MAIL FROM:<scanner@contoso.com>")
    assert group.endswith(b"RCPT TO:<r500@contoso.com>\r\nDATA\r\n")
    assert group.count(b"\r\nRCPT TO:") == 501
    assert result.accepted == tuple(rcpts[:500])
    assert result.deferred == (rcpts[500],)
    [stored] = sim.state.messages
    assert stored.rcpt_tos == rcpts[:500]
