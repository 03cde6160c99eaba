"""Security checks against a real `mailgate serve`: no open relay, no AUTH in the clear,
no secret in logs or in the clear on disk, the key file private, a wrong key refused,
and dependency floors above known security fixes.

The console's own checks (no session → refused, CSRF on every change, single-use setup
token) are in tests/console/test_security.py and not repeated here.
"""

from __future__ import annotations

import hashlib
import os
import re
import smtplib
import ssl
import stat
import subprocess
from importlib.metadata import version
from pathlib import Path

from mailgate.config.paths import db_path, key_path
from mailgate.config.secrets import new_key_text
from mailgate.sim.server import SimulatorThread
from tests.bounds import HANG, SOCKET
from tests.gateway.e2e_helpers import (
    DEVICE,
    Mailgate,
    Serve,
    environment,
    mail,
    send_all,
    start,
    tokens,
    wait_delivered,
)

ROOT = Path(__file__).resolve().parents[2]


def _client_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # the listener's self-signed certificate
    return context


def test_not_an_open_relay_outside_the_allowed_networks(
    mailgate: Mailgate, tmp_path: Path, servers: list[Serve]
) -> None:
    mailgate.ok("config", "set", "listener.networks", "10.0.0.0/8, 192.168.0.0/16")
    serve = start(mailgate, tmp_path, servers)
    client = smtplib.SMTP(timeout=SOCKET)
    code, text = client.connect("127.0.0.1", serve.port)
    client.close()
    assert code == 554, text
    assert text.startswith(b"5.7.1"), text
    assert serve.stop() == 0, serve.log()


def _auth_offered(port: int, tls: bool) -> bool:
    with smtplib.SMTP("127.0.0.1", port, timeout=SOCKET) as client:
        client.ehlo("printer.local")
        if tls:
            client.starttls(context=_client_context())
            client.ehlo("printer.local")
        return client.has_extn("auth")


def test_auth_is_offered_only_after_starttls_unless_configured(
    mailgate: Mailgate, tmp_path: Path, servers: list[Serve]
) -> None:
    serve = start(mailgate, tmp_path, servers)
    assert not _auth_offered(serve.port, tls=False)
    assert _auth_offered(serve.port, tls=True)
    assert serve.stop() == 0, serve.log()

    mailgate.ok("config", "set", "listener.auth_plaintext", "yes")
    serve = start(mailgate, tmp_path, servers)
    assert _auth_offered(serve.port, tls=False)
    assert serve.stop() == 0, serve.log()


def test_tokens_never_reach_the_log_or_the_disk_in_the_clear(
    mailgate: Mailgate, sim: SimulatorThread, tmp_path: Path, servers: list[Serve]
) -> None:
    mailgate.serve_options = ["-vv"]  # debug logging: the most a log can say
    serve = start(mailgate, tmp_path, servers)
    with sim.state.lock:  # force a refresh too, so a rotated refresh token is in play
        sim.state.access_tokens.clear()
    subjects = tokens("secret", 2)
    send_all(serve.port, subjects)
    wait_delivered(sim, set(subjects), 30)
    assert serve.stop() == 0, serve.log()

    with sim.state.lock:
        secrets = [*sim.state.access_tokens, *sim.state.refresh_tokens]
    assert len(secrets) >= 3
    log_lines = serve.log().splitlines()
    assert len(log_lines) > 20  # -vv did log
    # A token is 400-1800 characters; a 40-character piece is enough to recognise it.
    pieces = [token[12:52] for token in secrets]
    for line in log_lines:
        assert not any(piece in line for piece in pieces), line
    files = [p for p in mailgate.data_dir.rglob("*") if p.is_file()]
    assert db_path(mailgate.data_dir) in files
    for path in files:
        content = path.read_bytes()
        for piece in pieces:
            assert piece.encode() not in content, path


def test_key_file_is_private(mailgate: Mailgate) -> None:
    mode = stat.S_IMODE(os.stat(key_path(mailgate.data_dir)).st_mode)
    assert mode == 0o600, oct(mode)


def test_serve_refuses_to_start_with_a_wrong_key(mailgate: Mailgate, tmp_path: Path) -> None:
    database = db_path(mailgate.data_dir)
    before = hashlib.sha256(database.read_bytes()).hexdigest()
    env = environment() | {"MAILGATE_SECRET_KEY": new_key_text()}
    result = subprocess.run(
        mailgate.argv("serve", "--listen", "127.0.0.1:0", "--no-console"),
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG,
        check=False,
    )
    assert result.returncode != 0
    assert "does not match this data directory" in result.stderr, result.stderr
    assert "Nothing was changed" in result.stderr
    assert "Traceback" not in result.stderr
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def test_aiosmtpd_is_past_the_smtp_smuggling_fix() -> None:
    # CVE-2024-27305: aiosmtpd before 1.4.5 took <LF>.<LF> as the end of DATA.
    assert _version(version("aiosmtpd")) >= (1, 4, 5), version("aiosmtpd")
    pyproject = (ROOT / "pyproject.toml").read_text()
    floor = re.search(r'"aiosmtpd>=([\d.]+)"', pyproject)
    assert floor is not None
    assert _version(floor.group(1)) >= (1, 4, 5), floor.group(0)


def test_device_mail_reaches_the_sender_only_through_the_signed_in_mailbox(
    mailgate: Mailgate, sim: SimulatorThread, tmp_path: Path, servers: list[Serve]
) -> None:
    """A device cannot choose whom mailgate sends as: the envelope sender is rewritten."""
    serve = start(mailgate, tmp_path, servers)
    (subject,) = tokens("spoof", 1)
    with smtplib.SMTP("127.0.0.1", serve.port, timeout=SOCKET) as client:
        client.sendmail("ceo@contoso.com", ["someone@fabrikam.com"], mail(subject, DEVICE))
    wait_delivered(sim, {subject}, 30)
    with sim.state.lock:
        (stored,) = [m for m in sim.state.messages if subject.encode() in m.data]
    assert stored.mail_from == "scanner@contoso.com"
    assert serve.stop() == 0, serve.log()
