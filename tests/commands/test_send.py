"""`mailgate send` end to end: exit codes, Exchange's refusals explained, one shared refresh.

Exit codes (commands/send.py): 0 sent, 75 temporary failure, 1 permanent failure, 2 usage.
Every test copies one data directory signed in as jsmith (UPN jsmith@contoso.onmicrosoft.com,
primary address john.smith@contoso.com), so tests do not share a store.
"""

from __future__ import annotations

import email
import email.policy
import json
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mailgate.cli import main
from mailgate.sim.server import SimulatorThread
from tests.bounds import HANG
from tests.commands.conftest import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TEMPORARY,
    EXIT_USAGE,
    JSMITH_ADDRESS,
    JSMITH_UPN,
    LEGACY,
    SCANNER,
    Cli,
    Transcript,
    prepare,
)


@pytest.fixture(scope="module")
def signed_in_template(configured_template: Cli, module_sim: SimulatorThread) -> Cli:
    prepare(module_sim)
    signed_in = configured_template.copy(configured_template.data_dir.parent / "signed-in")
    signed_in.login(module_sim, JSMITH_UPN)
    return signed_in


@pytest.fixture
def signed_in(signed_in_template: Cli, cloud: SimulatorThread, tmp_path: Path) -> Cli:
    """A data directory of its own, signed in as jsmith with a fresh access token."""
    return signed_in_template.copy(tmp_path / "data")


def _said(result: object) -> str:
    """stderr with its line breaks folded, so phrases can be found across wrapped lines."""
    return " ".join(str(getattr(result, "stderr", "")).split())


def _stored(sim: SimulatorThread, subject: str) -> email.message.EmailMessage:
    found = [m for m in sim.state.messages if subject.encode() in m.data]
    assert len(found) == 1, f"{len(found)} messages with subject {subject!r}"
    message = email.message_from_bytes(found[0].data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    return message


def test_sent_message_reports_the_queue_id(cloud: SimulatorThread, signed_in: Cli) -> None:
    subject = f"exit 0 {time.time_ns()}"
    result = signed_in.run(
        "send",
        "--to",
        "a@example.com",
        "--to",
        "Bee <b@example.com>",
        "--cc",
        "c@example.com",
        "--bcc",
        "hidden@example.com",
        "--subject",
        subject,
        "--body",
        "Grüße aus dem Drucker",
        "--json",
    )
    assert result.returncode == EXIT_OK, result.stderr
    report = json.loads(result.stdout)
    assert report["sent"] is True
    assert report["sender"] == JSMITH_ADDRESS
    assert report["accepted"] == [
        "a@example.com",
        "b@example.com",
        "c@example.com",
        "hidden@example.com",
    ]
    assert report["queue_id"]

    stored = next(m for m in cloud.state.messages if subject.encode() in m.data)
    assert stored.upn == JSMITH_UPN
    assert stored.rcpt_tos == report["accepted"]
    assert report["queue_id"] in str(report["reply"])
    message = _stored(cloud, subject)
    assert "Bcc" not in message
    assert message["Message-ID"].endswith("@contoso.com>")
    assert message["Date"]
    body = message.get_body()
    assert body is not None
    assert body.get_content().strip() == "Grüße aus dem Drucker"


def test_body_file_is_read_as_utf8(cloud: SimulatorThread, signed_in: Cli, tmp_path: Path) -> None:
    text = tmp_path / "body.txt"
    text.write_text("Zeile 1\n扫描完成\n", encoding="utf-8")
    subject = f"body file {time.time_ns()}"
    result = signed_in.run(
        "send", "--to", "a@example.com", "--subject", subject, "--body-file", str(text)
    )
    assert result.returncode == EXIT_OK, result.stderr
    body = _stored(cloud, subject).get_body()
    assert body is not None
    assert body.get_content() == "Zeile 1\n扫描完成\n"


# -- usage: exit 2, nothing sent --------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "phrase"),
    [
        pytest.param(["--subject", "nobody"], "at least one recipient", id="no-recipients"),
        pytest.param(
            ["--to", "a@example.com", "--subject", "hi\r\nBcc: victim@example.com"],
            "line breaks",
            id="subject-injection",
        ),
        pytest.param(
            ["--to", "a@example.com\r\nBcc: victim@example.com"],
            "line breaks",
            id="address-injection",
        ),
        pytest.param(["--to", "not an address"], "not an e-mail address", id="bad-address"),
        pytest.param(
            ["--to", "a@example.com", "--body", "x", "--body-file", "-"],
            "not both",
            id="body-twice",
        ),
        pytest.param(
            ["--to", "a@example.com", "--from", "someone.else@contoso.com"],
            "not allowed by the sender policy (rewrite)",
            id="from-refused-by-rewrite",
        ),
    ],
)
def test_usage_errors_exit_2_and_send_nothing(
    cloud: SimulatorThread, signed_in: Cli, args: list[str], phrase: str
) -> None:
    before = cloud.state.counters.smtp_connections
    result = signed_in.run("send", *args)
    assert result.returncode == EXIT_USAGE, (result.stdout, result.stderr)
    assert phrase in result.stderr
    assert cloud.state.counters.smtp_connections == before


def test_missing_attachment_is_a_usage_error(signed_in: Cli, transcript: Transcript) -> None:
    """In process (CliRunner): click checks the file before anything opens the store."""
    result = CliRunner().invoke(
        main,
        [
            "--data-dir",
            str(signed_in.data_dir),
            "send",
            "--to",
            "a@example.com",
            "--attach",
            "/nonexistent/report.pdf",
        ],
    )
    transcript.record(result.output)
    assert result.exit_code == EXIT_USAGE
    assert "does not exist" in result.output


# -- Exchange refuses: exit 1 with what to do -------------------------------------------------


def test_smtp_auth_disabled_for_the_mailbox(cloud: SimulatorThread, configured: Cli) -> None:
    configured.login(cloud, LEGACY)
    result = configured.send("--to", "a@example.com")

    assert result.returncode == EXIT_FAILED, result.stderr
    said = _said(result)
    assert "5.7.139" in said
    assert f"SMTP AUTH is turned off for the mailbox {LEGACY}" in said
    assert f"Set-CASMailbox -Identity {LEGACY} -SmtpClientAuthenticationDisabled $false" in said
    assert "This is temporary" not in said


def test_smtp_auth_disabled_for_the_tenant(cloud: SimulatorThread, signed_in: Cli) -> None:
    cloud.set_scenario(smtp_auth_disabled_tenant=True)
    result = signed_in.send("--to", "a@example.com")

    assert result.returncode == EXIT_FAILED, result.stderr
    said = _said(result)
    assert "whole Microsoft 365 tenant" in said
    assert f"Set-CASMailbox -Identity {JSMITH_UPN} -SmtpClientAuthenticationDisabled $false" in (
        said
    )
    assert "Set-TransportConfig -SmtpClientAuthenticationDisabled $false" in said


def test_send_as_denied_names_the_usable_address(cloud: SimulatorThread, signed_in: Cli) -> None:
    signed_in.ok("config", "set", "sender.policy", "pass-through")
    before = len(cloud.state.messages)
    result = signed_in.send("--to", "a@example.com", "--from", "reception@contoso.com")

    assert result.returncode == EXIT_FAILED, result.stderr
    said = _said(result)
    assert "5.2.252" in said
    assert f"Exchange refused to let {JSMITH_UPN} send as reception@contoso.com" in said
    assert f"may only send as {JSMITH_ADDRESS}" in said
    assert "Send As permission" in said
    assert len(cloud.state.messages) == before


def test_allow_list_sends_as_a_listed_alias(cloud: SimulatorThread, configured: Cli) -> None:
    configured.login(cloud, SCANNER)
    configured.ok("config", "set", "sender.policy", "allow-list")
    configured.ok("config", "set", "sender.allowed", "scan@contoso.com")
    subject = f"alias {time.time_ns()}"
    result = configured.run(
        "send", "--to", "a@example.com", "--from", "scan@contoso.com", "--subject", subject
    )

    assert result.returncode == EXIT_OK, result.stderr
    assert "Sent from scan@contoso.com" in result.stdout
    stored = next(m for m in cloud.state.messages if subject.encode() in m.data)
    assert stored.upn == SCANNER
    assert stored.mail_from == "scan@contoso.com"
    assert _stored(cloud, subject)["From"].addresses[0].addr_spec == "scan@contoso.com"

    # An address that is not on the list is still refused before anything is sent.
    refused = configured.send("--to", "a@example.com", "--from", "reception@contoso.com")
    assert refused.returncode == EXIT_USAGE
    assert "allow-list" in refused.stderr


def test_access_token_expired_server_side_refreshes_once_and_sends(
    cloud: SimulatorThread, signed_in: Cli
) -> None:
    # Exchange refuses the token mailgate still thinks good (535 5.7.3): one refresh, one
    # more AUTH, delivered - no new sign-in, mail not held.
    assert cloud.state.expire_access_tokens() >= 1
    refreshes = cloud.state.counters.refresh_grants
    failures = cloud.state.counters.smtp_auth_failure
    result = signed_in.send("--to", "a@example.com")
    assert result.returncode == EXIT_OK, result.stderr
    assert cloud.state.counters.refresh_grants == refreshes + 1
    assert cloud.state.counters.smtp_auth_failure == failures + 1


# -- temporary: exit 75 -----------------------------------------------------------------------


def test_smtp_server_down_is_temporary(cloud: SimulatorThread, signed_in: Cli) -> None:
    cloud.set_scenario(smtp_down=True)
    result = signed_in.send("--to", "a@example.com")

    assert result.returncode == EXIT_TEMPORARY, result.stderr
    said = _said(result)
    assert "Not sent:" in said
    assert "This is temporary: try again later." in said
    assert "mailgate doctor" in said


def test_token_endpoint_unavailable_is_temporary(cloud: SimulatorThread, configured: Cli) -> None:
    cloud.set_scenario(access_token_lifetime=1)  # expired by the send: it must refresh
    configured.login(cloud, JSMITH_UPN)
    time.sleep(1.1)
    cloud.set_scenario(token_endpoint="503")
    result = configured.send("--to", "a@example.com")

    assert result.returncode == EXIT_TEMPORARY, result.stderr
    said = _said(result)
    assert "unavailable" in said
    assert "temporary" in said


# -- one refresh for two processes ------------------------------------------------------------


def test_two_sends_share_one_refresh(cloud: SimulatorThread, configured: Cli) -> None:
    """issue 3 item 4: single flight across processes (the data directory's lock file)."""
    cloud.set_scenario(access_token_lifetime=1)
    configured.login(cloud, JSMITH_UPN)
    time.sleep(1.1)  # the one-second token has expired: both senders need a refresh
    # Refreshed tokens live an hour again; each refresh takes a second, so the two
    # processes overlap while the first one holds the lock.
    cloud.set_scenario(access_token_lifetime=None, token_endpoint="slow", token_delay=1.0)
    # Expired: every sender must refresh before using it.
    assert configured.quick_json("status")["access_token_expires_at"] < time.time()
    refreshes = cloud.state.counters.refresh_grants

    subjects = [f"concurrent {n} {time.time_ns()}" for n in range(2)]
    processes = [
        configured.start("send", "--to", "a@example.com", "--subject", subject)
        for subject in subjects
    ]
    for process in processes:
        out, err = process.communicate(timeout=HANG)
        configured.transcript.record(out, err)
        assert process.returncode == EXIT_OK, err

    assert cloud.state.counters.refresh_grants == refreshes + 1
    for subject in subjects:
        assert _stored(cloud, subject)["From"].addresses[0].addr_spec == JSMITH_ADDRESS
    assert configured.quick_json("status")["access_token_expires_at"] > time.time() + 3000


# -- secrets ----------------------------------------------------------------------------------


def test_no_token_in_any_output_or_file(
    cloud: SimulatorThread, configured: Cli, transcript: Transcript
) -> None:
    """Sign in, refresh, send, look at everything; no token may show (issue 3 item 2)."""
    cloud.set_scenario(access_token_lifetime=1)
    configured.login(cloud, JSMITH_UPN)
    time.sleep(1.1)  # expired: the send refreshes
    cloud.set_scenario(access_token_lifetime=None)
    # -vv: debug logging of the refresh (MSAL, requests) and the SMTP session.
    assert configured.run("-vv", "send", "--to", "a@example.com").returncode == EXIT_OK
    configured.ok("status")
    configured.ok("status", "--json")
    configured.ok("config", "show")
    configured.ok("config", "export")

    database = configured.data_dir / "mailgate.db"
    assert database.stat().st_size > 0
    assert len(transcript.secrets) >= 4
    assert transcript.leaks() == []
