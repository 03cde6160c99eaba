"""`mailgate login`, `logout` and `status` end to end: a terminal, the simulator, nothing else.

Each sign-in failure an administrator can meet must end with a sentence that says what to
do (issue 3, item 3); the key phrases of that sentence are checked here.
"""

from __future__ import annotations

import email
import email.policy
import time
from pathlib import Path
from typing import Any

import pytest

from mailgate.sim.server import SimulatorThread
from tests.commands.conftest import (
    CLIENT_ID,
    EXIT_FAILED,
    EXIT_OK,
    EXIT_TEMPORARY,
    EXIT_USAGE,
    JSMITH_ADDRESS,
    JSMITH_UPN,
    SCANNER,
    Cli,
    Transcript,
    configure,
    prepare,
)


def test_login_json_prints_code_then_signed_in(cloud: SimulatorThread, configured: Cli) -> None:
    login = configured.start_login()
    code = login.code()
    assert code["verification_uri"] == "https://microsoft.com/devicelogin"
    assert code["interval"] == 1
    assert code["expires_at"] > time.time() + 800
    assert cloud.sign_in(code["user_code"], SCANNER, True).ok
    result = login.finish()

    assert result.returncode == EXIT_OK, result.stderr
    events = login.events(result)
    assert [e["event"] for e in events if e["event"] != "pending"] == ["code", "signed_in"]
    signed_in = events[-1]
    assert signed_in["upn"] == SCANNER
    assert signed_in["primary_address"] == SCANNER
    assert signed_in["access_token_expires_at"] > time.time() + 3000
    assert not any(key.endswith("token") for key in signed_in)


def test_login_in_a_terminal_names_upn_and_sender_address(
    cloud: SimulatorThread, configured: Cli
) -> None:
    login = configured.start_login(as_json=False)
    code = login.code()
    assert code["verification_uri"] == "https://microsoft.com/devicelogin"
    assert cloud.sign_in(code["user_code"], JSMITH_UPN, True).ok
    result = login.finish()

    assert result.returncode == EXIT_OK, result.stderr
    assert "The code expires in" in result.stdout
    assert f"Signed in as {JSMITH_UPN}." in result.stdout
    assert f"XOAUTH2 user (UPN):  {JSMITH_UPN}" in result.stdout
    assert f"Sender address:      {JSMITH_ADDRESS} (the account's primary address)" in (
        result.stdout
    )


def test_upn_and_primary_address_stay_apart(cloud: SimulatorThread, configured: Cli) -> None:
    """XOAUTH2 user= is the UPN, the From is the primary address."""
    configured.login(cloud, JSMITH_UPN)

    shown = configured.ok("status").stdout
    assert f"Signed in as:      {JSMITH_UPN}" in shown
    assert f"Sender address:    {JSMITH_ADDRESS}" in shown

    subject = f"upn apart {time.time_ns()}"
    sent = configured.run("send", "--to", "someone@example.com", "--subject", subject)
    assert sent.returncode == EXIT_OK, sent.stderr
    assert f"Sent from {JSMITH_ADDRESS} to 1 recipient(s)" in sent.stdout
    stored = next(m for m in cloud.state.messages if subject in m.data.decode())
    assert stored.upn == JSMITH_UPN
    assert stored.mail_from == JSMITH_ADDRESS
    message = email.message_from_bytes(stored.data, policy=email.policy.default)
    assert message["From"].addresses[0].addr_spec == JSMITH_ADDRESS


def test_status_json_has_account_tokens_and_queue(cloud: SimulatorThread, configured: Cli) -> None:
    before = time.time()
    configured.login(cloud, JSMITH_UPN)
    status = configured.json("status")

    assert status["provider"] == "exchange-online"
    assert status["signed_in"] is True
    assert status["upn"] == JSMITH_UPN
    assert status["primary_address"] == JSMITH_ADDRESS
    assert status["sender_address"] == JSMITH_ADDRESS
    assert status["client_id"] == CLIENT_ID
    assert status["admin_consent_url"] == (
        f"https://{cloud.idp_hostport}/common/adminconsent?client_id={CLIENT_ID}"
    )
    # Microsoft issues 60-90 minutes; the simulator too.
    assert before + 3500 < status["access_token_expires_at"] < time.time() + 5400
    # 90 days of inactivity kill the refresh token (AADSTS700082).
    assert status["re_sign_in_needed_by"] == pytest.approx(
        status["refresh_token_last_used_at"] + 90 * 86400
    )
    assert status["needs_sign_in"] is False
    assert status["last_error"] is None
    assert set(status["queue"]) >= {"queued", "deferred", "held", "sending", "sent", "failed"}
    assert not any(status["queue"].values())


def test_logout_forgets_the_account(cloud: SimulatorThread, configured: Cli) -> None:
    configured.login(cloud, JSMITH_UPN)

    out = configured.ok("logout").stdout
    assert f"Signed out {JSMITH_UPN}" in out

    status = configured.json("status")
    assert status["signed_in"] is False
    assert "upn" not in status
    assert "Signed in:         no. Run `mailgate login`." in configured.ok("status").stdout

    sent = configured.run("send", "--to", "someone@example.com", "--body", "x")
    assert sent.returncode == EXIT_USAGE
    assert "nobody is signed in" in sent.stderr
    assert "mailgate login" in sent.stderr
    assert "Nobody is signed in." in configured.ok("logout").stdout


# -- sign-in failures -------------------------------------------------------------------------


def _failed_login(cli: Cli, sim: SimulatorThread, approve_as: str | None) -> str:
    """Run a login in terminal mode that must fail; approve it as *approve_as* if given."""
    login = cli.start_login(as_json=False)
    if approve_as is not None:
        code = login.code()
        sim.sign_in(code["user_code"], approve_as, True)
    result = login.finish()
    assert result.returncode == EXIT_FAILED, (result.stdout, result.stderr)
    assert "Signed in as" not in result.stdout
    assert "What to do:" in result.stderr
    return " ".join(result.stderr.split())


@pytest.mark.parametrize(
    ("scenario", "approve", "phrases"),
    [
        pytest.param(
            {"user_declines": True},
            True,
            ["AADSTS70000", "Sign-in declined", "Run the sign-in again"],
            id="user-declines",
        ),
        pytest.param(
            {"device_code_lifetime": 2},
            False,
            ["AADSTS70020", "The code expired", "mailgate login", "Enter the new code promptly"],
            id="code-expires",
        ),
        pytest.param(
            {"conditional_access_block": True},
            True,
            [
                "AADSTS53003",
                "Blocked by Conditional Access",
                "Conditional Access",
                "exclude the signing-in account or this application",
                "Device code flow",
            ],
            id="conditional-access",
        ),
        pytest.param(
            {"app_not_found": True},
            False,
            ["AADSTS700016", "Application not found", CLIENT_ID, "App registrations"],
            id="app-not-found",
        ),
        pytest.param(
            {"public_client_disabled": True},
            True,
            ["AADSTS7000218", '"Allow public client flows"', "Authentication"],
            id="public-client-disabled",
        ),
    ],
)
def test_sign_in_failure_says_what_to_do(
    cloud: SimulatorThread,
    configured: Cli,
    scenario: dict[str, Any],
    approve: bool,
    phrases: list[str],
) -> None:
    cloud.set_scenario(**scenario)
    said = _failed_login(configured, cloud, JSMITH_UPN if approve else None)
    for phrase in phrases:
        assert phrase in said
    assert configured.quick_json("status")["signed_in"] is False


def test_admin_consent_required_points_to_the_consent_url(
    cloud: SimulatorThread, configured: Cli
) -> None:
    """The admin-consent link is built from the configured sign-in host and client ID."""
    cloud.set_scenario(consent_required="admin")
    said = _failed_login(configured, cloud, JSMITH_UPN)
    assert "AADSTS90094" in said
    assert "administrator" in said
    assert f"https://{cloud.idp_hostport}/common/adminconsent?client_id={CLIENT_ID}" in said

    # Once the admin has consented, the same sign-in works.
    cloud.approve_admin_consent(CLIENT_ID)
    assert configured.login(cloud, JSMITH_UPN)["upn"] == JSMITH_UPN


def test_sign_in_failure_as_json_is_one_error_event(
    cloud: SimulatorThread, configured: Cli
) -> None:
    cloud.set_scenario(public_client_disabled=True)
    login = configured.start_login()
    code = login.code()
    cloud.sign_in(code["user_code"], JSMITH_UPN, True)
    result = login.finish()

    assert result.returncode == EXIT_FAILED
    errors = [e for e in login.events(result) if e["event"] == "error"]
    assert len(errors) == 1
    assert errors[0]["code"] == "AADSTS7000218"
    assert "Allow public client flows" in errors[0]["what_to_do"]


def test_token_endpoint_unavailable_is_temporary(cloud: SimulatorThread, configured: Cli) -> None:
    # A passing outage does not end the sign-in: login polls on while the code lives, and
    # only when the code has expired does it report the outage (not "nobody approved").
    cloud.set_scenario(token_endpoint="503", device_code_lifetime=3)
    login = configured.start_login(as_json=False)
    login.code()
    result = login.finish()

    assert result.returncode == EXIT_TEMPORARY, (result.stdout, result.stderr)
    said = " ".join(result.stderr.split())
    assert "unavailable" in said
    assert "temporary" in said
    assert "mailgate login" in said


def test_sign_in_survives_a_passing_outage(cloud: SimulatorThread, configured: Cli) -> None:
    # With Retry-After, MSAL holds its next poll that long; without it, 60 s (MSAL's
    # throttling cache), which would only make this test slow.
    cloud.set_scenario(token_endpoint="503", token_retry_after=1)
    login = configured.start_login(as_json=True)
    code = login.code()["user_code"]
    time.sleep(1.5)  # at least one poll meets the outage
    cloud.set_scenario(token_endpoint="ok")
    cloud.sign_in(code, JSMITH_UPN, True)
    result = login.finish()
    assert result.returncode == 0, (result.stdout, result.stderr)
    assert '"event": "signed_in"' in result.stdout


@pytest.mark.parametrize(
    ("switch", "code"),
    [("refresh_revoked", "AADSTS50173"), ("refresh_expired", "AADSTS700082")],
)
def test_dead_refresh_token_asks_for_a_new_sign_in(
    cloud: SimulatorThread, configured: Cli, switch: str, code: str
) -> None:
    # A one-second access token, expired by the time `send` runs: it must use the refresh token.
    cloud.set_scenario(access_token_lifetime=1)
    configured.login(cloud, JSMITH_UPN)
    time.sleep(1.1)
    cloud.set_scenario(**{switch: True})

    sent = configured.run("send", "--to", "someone@example.com", "--body", "x")
    assert sent.returncode == EXIT_FAILED, sent.stderr
    said = " ".join(sent.stderr.split())
    assert code in said
    assert "sign-in again" in said
    assert "mailgate login" in said

    status = configured.quick_json("status")
    assert status["needs_sign_in"] is True
    assert status["last_error"] == code
    assert "Sign-in needed: run `mailgate login`." in configured.ok("status").stdout


def test_revoked_sessions_ask_for_a_new_sign_in(
    cloud: SimulatorThread, configured: Cli, transcript: Transcript
) -> None:
    """Exchange refuses the revoked access token (535 5.7.3); the one refresh fails too."""
    configured.login(cloud, JSMITH_UPN)
    transcript.harvest()  # remember the tokens before the simulator forgets them
    cloud.state.revoke_all_tokens(JSMITH_UPN)

    sent = configured.run("send", "--to", "someone@example.com", "--body", "x")
    assert sent.returncode == EXIT_FAILED, sent.stderr
    assert "mailgate login" in sent.stderr


# -- the Done-when of issue 3 -----------------------------------------------------------------


def test_21vianet_end_to_end_with_a_large_attachment(
    sim_21vianet: SimulatorThread, transcript: Transcript, tmp_path: Path
) -> None:
    """`mailgate init`, provider exchange-online-21vianet, login, approve, send report.pdf."""
    sim = prepare(sim_21vianet, expires_in_as_string=True)
    cli = configure(Cli(tmp_path / "data", transcript), sim, provider="exchange-online-21vianet")
    shown = cli.quick_json("config", "show")
    assert shown["oauth.scope"] == (
        "https://partner.outlook.cn/SMTP.Send offline_access openid email"
    )

    login = cli.start_login()
    code = login.code()
    assert code["verification_uri"] == "https://microsoft.com/deviceloginchina"
    upn = "jsmith@contoso.partner.onmschina.cn"
    assert sim.sign_in(code["user_code"], upn, True).ok
    result = login.finish()
    assert result.returncode == EXIT_OK, result.stderr
    assert login.events(result)[-1]["primary_address"] == "john.smith@contoso.cn"

    report = tmp_path / "report.pdf"
    pdf = b"%PDF-1.7\n" + bytes(range(256)) * (3 * 1024 * 1024 // 256) + b"\n%%EOF\n"
    report.write_bytes(pdf)
    sent = cli.run(
        "send",
        "--to",
        "someone@contoso.cn",
        "--subject",
        "扫描件 report",
        "--body",
        "Scanned document attached.",
        "--attach",
        str(report),
    )
    assert sent.returncode == EXIT_OK, sent.stderr
    assert "server queue id" in sent.stdout

    stored = sim.state.messages[-1]
    assert stored.upn == upn
    assert stored.mail_from == "john.smith@contoso.cn"
    assert stored.rcpt_tos == ["someone@contoso.cn"]
    message = email.message_from_bytes(stored.data, policy=email.policy.default)
    assert isinstance(message, email.message.EmailMessage)
    assert message["From"].addresses[0].addr_spec == "john.smith@contoso.cn"
    assert message["Subject"] == "扫描件 report"
    (attachment,) = message.iter_attachments()
    assert attachment.get_filename() == "report.pdf"
    assert attachment.get_content_type() == "application/pdf"
    assert attachment.get_content() == pdf
