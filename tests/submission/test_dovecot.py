"""mailgate against Dovecot 2.3's submission service, a strict RFC 4954 server we did not write.

The chain: `mailgate send` / `mailgate serve` (subprocesses) -> a recording proxy (so the
test sees the lines after STARTTLS) -> Dovecot (``passdb oauth2``, tokens checked by RFC
7662 introspection at the simulator) -> a sink that keeps what Dovecot relays. Sign-in and
refresh go to the simulated identity platform as usual.
"""

from __future__ import annotations

import shutil
import smtplib
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailgate.sim.introspection import PATH as INTROSPECTION
from mailgate.sim.server import SimulatorThread
from tests.bounds import HANG, SOCKET
from tests.gateway.e2e_helpers import (
    CLIENT_ID,
    DEVICE,
    Mailgate,
    Serve,
    mail,
    stop_process,
    wait_until,
)
from tests.submission.dovecot import Dovecot, available, start_dovecot
from tests.submission.sink import Sink
from tests.submission.smtp_proxy import RecordingProxy, long_command_lines

#: UPN differs from the primary address (the sender), as in many tenants.
UPN = "jsmith@contoso.onmicrosoft.com"


@pytest.fixture(scope="module")
def cloud() -> Iterator[SimulatorThread]:
    with SimulatorThread(profile="global") as running:
        yield running


@pytest.fixture(scope="module")
def sink() -> Iterator[Sink]:
    receiver = Sink()
    receiver.start()
    yield receiver
    receiver.stop()


def _dovecot(cloud: SimulatorThread, sink: Sink, mechanisms: str) -> Dovecot:
    missing = available()
    if missing is not None:
        pytest.fail(f"{missing}; `python3 dev.py test` installs it")
    certs = cloud.running.certs
    return start_dovecot(
        relay_port=sink.port,
        introspection_url=cloud.idp_url + INTROSPECTION,
        ca_cert=certs.ca_cert,
        server_cert=certs.server_cert,
        server_key=certs.server_key,
        mechanisms=mechanisms,
    )


def _proxy(cloud: SimulatorThread, dovecot: Dovecot) -> Iterator[RecordingProxy]:
    certs = cloud.running.certs
    proxy = RecordingProxy(dovecot.port, certs.server_context(), certs.client_context())
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def dovecot(cloud: SimulatorThread, sink: Sink) -> Iterator[Dovecot]:
    server = _dovecot(cloud, sink, "xoauth2 oauthbearer")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def proxy(cloud: SimulatorThread, dovecot: Dovecot) -> Iterator[RecordingProxy]:
    yield from _proxy(cloud, dovecot)


@pytest.fixture
def sim(cloud: SimulatorThread) -> Iterator[SimulatorThread]:
    cloud.reset()
    cloud.set_scenario(poll_interval=1)
    yield cloud
    cloud.reset()


@pytest.fixture(scope="module")
def template(cloud: SimulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Path:
    mailgate = Mailgate(tmp_path_factory.mktemp("template") / "data")
    mailgate.ok("init")
    mailgate.ok("config", "set", "network.ca_bundle", str(cloud.ca_path))
    return mailgate.data_dir


def signed_in(template: Path, tmp_path: Path, sim: SimulatorThread, port: int) -> Mailgate:
    """A data directory whose OAuth provider's SMTP server is *port*, signed in as UPN."""
    mailgate = Mailgate(tmp_path / "data")
    shutil.copytree(template, mailgate.data_dir)
    mailgate.ok(
        "config",
        "provider",
        "exchange-online",
        "--client-id",
        CLIENT_ID,
        "--server",
        f"127.0.0.1:{port}",
        "--host",
        sim.idp_hostport,
    )
    mailgate.login(sim, UPN)
    return mailgate


@pytest.fixture
def mailgate(
    template: Path, tmp_path: Path, sim: SimulatorThread, proxy: RecordingProxy
) -> Mailgate:
    proxy.sent.clear()
    proxy.replies.clear()
    return signed_in(template, tmp_path, sim, proxy.port)


def subject(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex[:10]}"


def send(mailgate: Mailgate, title: str) -> tuple[int, str]:
    result = mailgate.run("send", "--to", "someone@fabrikam.com", "--subject", title)
    return result.returncode, result.stdout + result.stderr


def auth_lines(proxy: RecordingProxy) -> list[bytes]:
    return [line for line in proxy.lines() if line.upper().startswith(b"AUTH")]


def test_send_through_dovecot_never_sends_a_long_command_line(
    mailgate: Mailgate, sink: Sink, proxy: RecordingProxy
) -> None:
    title = subject("dovecot-send")
    code, said = send(mailgate, title)
    assert code == 0, said
    assert title in sink.subjects()
    received = next(m for m in sink.messages if title.encode() in m.data)
    assert received.mail_from == "john.smith@contoso.com"  # the primary address
    # RFC 4954 section 4: the ~2.5 KB response never rides on the AUTH line.
    assert auth_lines(proxy) == [b"AUTH XOAUTH2\r\n"]
    assert long_command_lines(proxy.lines()) == []
    assert max(len(line) for line in proxy.lines()) > 2000  # the token was realistic
    assert not any(b"Line too long" in line for line in proxy.reply_lines())


def test_expired_token_gets_535_5_7_8_one_refresh_and_goes_through(
    mailgate: Mailgate, sim: SimulatorThread, sink: Sink, proxy: RecordingProxy
) -> None:
    assert sim.state.expire_access_tokens() >= 1  # server-side: mailgate still trusts it
    refreshes = sim.state.counters.refresh_grants
    title = subject("dovecot-expired")
    code, said = send(mailgate, title)
    assert code == 0, said
    assert title in sink.subjects()
    assert sim.state.counters.refresh_grants == refreshes + 1
    replies = proxy.reply_lines()
    assert b"535 5.7.8 Authentication failed.\r\n" in replies
    # Dovecot's 334 JSON error challenge was answered with an empty line, then the 535.
    challenge = next(i for i, line in enumerate(replies) if line.startswith(b"334 ey"))
    assert replies[challenge + 1].startswith(b"535 5.7.8")
    sent = proxy.lines()
    first_auth = sent.index(b"AUTH XOAUTH2\r\n")
    assert len(sent[first_auth + 1]) > 2000  # the response to "334 "
    assert sent[first_auth + 2] == b"\r\n"  # the empty answer to the JSON challenge
    assert auth_lines(proxy) == [b"AUTH XOAUTH2\r\n"] * 2
    assert long_command_lines(sent) == []


def test_revoked_refresh_token_fails_the_send_with_sign_in_words(
    mailgate: Mailgate, sim: SimulatorThread, sink: Sink
) -> None:
    sim.state.revoke_all_tokens()
    title = subject("dovecot-revoked")
    code, said = send(mailgate, title)
    assert code == 1, said
    assert "mailgate login" in said
    assert "Exchange" not in said
    assert title not in sink.subjects()


def test_oauthbearer_when_dovecot_offers_only_that(
    template: Path, tmp_path: Path, sim: SimulatorThread, sink: Sink
) -> None:
    server = _dovecot(sim, sink, "oauthbearer")
    try:
        proxies = _proxy(sim, server)
        proxy = next(proxies)
        try:
            mailgate = signed_in(template, tmp_path, sim, proxy.port)
            title = subject("dovecot-oauthbearer")
            code, said = send(mailgate, title)
            assert code == 0, said
            assert title in sink.subjects()
            assert auth_lines(proxy) == [b"AUTH OAUTHBEARER\r\n"]
            assert long_command_lines(proxy.lines()) == []
            assert "method=OAUTHBEARER" in server.log()
        finally:
            next(proxies, None)
    finally:
        server.stop()


# -- serve ------------------------------------------------------------------------------------
def _relay(port: int, title: str) -> None:
    with smtplib.SMTP("127.0.0.1", port, timeout=SOCKET) as client:
        client.sendmail(DEVICE, ["someone@fabrikam.com"], mail(title))


def test_serve_delivers_through_dovecot_refreshes_once_then_holds_when_revoked(
    mailgate: Mailgate, sim: SimulatorThread, sink: Sink, proxy: RecordingProxy, tmp_path: Path
) -> None:
    serve = Serve.start(mailgate, tmp_path)
    try:
        first = subject("dovecot-serve")
        _relay(serve.port, first)
        wait_until(lambda: first in sink.subjects(), HANG, "the first message")

        # The access token ends on the server's side; the next message needs no new sign-in.
        sim.state.expire_access_tokens()
        refreshes = sim.state.counters.refresh_grants
        second = subject("dovecot-serve-expired")
        _relay(serve.port, second)
        wait_until(lambda: second in sink.subjects(), HANG, "the second message")
        assert sim.state.counters.refresh_grants == refreshes + 1

        # Sign-in revoked: the message is held with words that say what to do.
        with sim.state.lock:
            secrets = [*sim.state.access_tokens, *sim.state.refresh_tokens]
        sim.state.revoke_all_tokens()
        third = subject("dovecot-serve-revoked")
        _relay(serve.port, third)

        def held() -> bool:
            return mailgate.queue().get(third, {}).get("state") == "held"

        wait_until(held, HANG, "the third message to be held")
        info = mailgate.queue()[third]
        assert info["held_reason"] == "sign-in needed"
        history = " ".join(
            h["text"] for h in mailgate.json("queue", "show", str(info["id"]))["history"]
        )
        assert "Sign-in no longer valid" in history
        assert "mailgate login" in history
        assert "Exchange" not in history
        assert third not in sink.subjects()
        assert long_command_lines(proxy.lines()) == []
        assert set(auth_lines(proxy)) == {b"AUTH XOAUTH2\r\n"}
    finally:
        assert stop_process(serve.process, HANG) == 0, serve.log()
    log = serve.log()
    assert "refreshing it once" in log
    assert not [secret for secret in secrets if secret in log]
