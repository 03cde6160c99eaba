"""The identity-platform error catalog, checked with replies as Microsoft words them."""

from __future__ import annotations

from typing import Any

import pytest

from mailgate.config.model import OAuthConfig
from mailgate.identity.errors import (
    classify,
    code_needs_sign_in,
    first_line,
    holds_mail,
    network_problem,
    service_unavailable,
)

OAUTH = OAuthConfig(
    login_host="login.partner.microsoftonline.cn",
    tenant="common",
    client_id="9e5f94bc-e8a4-4e73-b8be-63364c29d753",
    scope="https://partner.outlook.cn/SMTP.Send offline_access openid email",
)
TAIL = (
    "\r\nTrace ID: 0f7a3a2e-5d0b-4c1e-9a8b-7c6d5e4f3a00\r\n"
    "Correlation ID: 3c1b2a4d-6e5f-4a3b-8c9d-0e1f2a3b4c5d\r\nTimestamp: 2026-06-01 12:00:00Z"
)


def reply(error: str, code: int | None, text: str, **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "error": error,
        "error_description": (f"AADSTS{code}: {text}" if code else text) + TAIL,
        "trace_id": "0f7a3a2e-5d0b-4c1e-9a8b-7c6d5e4f3a00",
        "correlation_id": "3c1b2a4d-6e5f-4a3b-8c9d-0e1f2a3b4c5d",
        **extra,
    }
    if code is not None:
        body["error_codes"] = [code]
    return body


# (reply, code, retryable, needs_sign_in, words that must appear in explanation + what_to_do)
CASES: list[tuple[dict[str, Any], str, bool, bool, str]] = [
    (
        reply(
            "authorization_pending",
            70016,
            "OAuth 2.0 device flow error. Authorization is pending. Continue polling.",
        ),
        "AADSTS70016",
        True,
        False,
        "code",
    ),
    (
        reply("authorization_declined", None, "The user declined the authorization request."),
        "authorization_declined",
        False,
        True,
        "declined",
    ),
    (
        reply(
            "bad_verification_code",
            70018,
            "Invalid verification code due to User typing in wrong user code for device code flow.",
        ),
        "AADSTS70018",
        False,
        True,
        "again",
    ),
    (
        reply(
            "expired_token", 70019, "Verification code expired. Have the user retry the sign-in."
        ),
        "AADSTS70019",
        False,
        True,
        "expired",
    ),
    (
        reply(
            "expired_token",
            70020,
            "The provided value for the input parameter 'device_code' "
            "is not valid. This device code has expired.",
        ),
        "AADSTS70020",
        False,
        True,
        "expired",
    ),
    (
        reply(
            "invalid_grant",
            700082,
            "The refresh token has expired due to inactivity. The token "
            "was issued on 2026-01-01T00:00:00.0000000Z and was inactive for 90.00:00:00.",
            suberror="bad_token",
        ),
        "AADSTS700082",
        False,
        True,
        "90 days",
    ),
    (
        reply(
            "invalid_grant",
            50173,
            "The provided grant has expired due to it being revoked, a fresh auth token is needed.",
        ),
        "AADSTS50173",
        False,
        True,
        "revoked",
    ),
    (
        reply(
            "invalid_grant",
            70008,
            "The provided authorization code or refresh token has expired due to inactivity.",
        ),
        "AADSTS70008",
        False,
        True,
        "Run the sign-in",
    ),
    (
        reply(
            "invalid_grant",
            70000,
            "The provided value for the input parameter 'refresh_token' "
            "or 'assertion' is not valid.",
        ),
        "AADSTS70000",
        False,
        True,
        "sign-in",
    ),
    (
        reply(
            "invalid_request",
            900144,
            "The request body must contain the following parameter: 'scope'.",
        ),
        "AADSTS900144",
        False,
        False,
        "scope",
    ),
    (
        reply(
            "invalid_grant",
            65001,
            "The user or administrator has not consented to use the "
            "application with ID '9e5f94bc-e8a4-4e73-b8be-63364c29d753'.",
            suberror="consent_required",
        ),
        "AADSTS65001",
        False,
        True,
        "https://login.partner.microsoftonline.cn/common/adminconsent?client_id="
        "9e5f94bc-e8a4-4e73-b8be-63364c29d753",
    ),
    (
        reply("invalid_grant", 90094, "The grant requires admin permission."),
        "AADSTS90094",
        False,
        False,
        "/common/adminconsent?client_id=9e5f94bc",
    ),
    (
        reply(
            "invalid_grant",
            90095,
            "Admin consent is required for the permissions requested by this application.",
        ),
        "AADSTS90095",
        False,
        False,
        "adminconsent",
    ),
    (
        reply("access_denied", 65004, "User declined to consent to access the app."),
        "AADSTS65004",
        False,
        True,
        "consent",
    ),
    (
        reply(
            "invalid_grant",
            53003,
            "Access has been blocked by Conditional Access policies. "
            "The access policy does not allow token issuance.",
            suberror="message_only",
        ),
        "AADSTS53003",
        False,
        False,
        "Device code flow",
    ),
    (
        reply(
            "invalid_grant",
            530032,
            "The tenant admin has configured a security policy that blocks this request.",
        ),
        "AADSTS530032",
        False,
        False,
        "Conditional Access",
    ),
    (
        reply("invalid_grant", 530035, "Access has been blocked by security defaults."),
        "AADSTS530035",
        False,
        False,
        "security defaults",
    ),
    (
        reply(
            "unauthorized_client",
            700016,
            "Application with identifier "
            "'9e5f94bc-e8a4-4e73-b8be-63364c29d753' was not found in the directory 'Contoso'.",
        ),
        "AADSTS700016",
        False,
        False,
        "client ID",
    ),
    (
        reply(
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: "
            "'client_assertion' or 'client_secret'.",
        ),
        "AADSTS7000218",
        False,
        False,
        "Allow public client flows",
    ),
    (
        reply(
            "invalid_request",
            50194,
            "Application '9e5f94bc-e8a4-4e73-b8be-63364c29d753' is not "
            "configured as a multi-tenant application.",
        ),
        "AADSTS50194",
        False,
        False,
        "tenant ID or domain",
    ),
    (
        reply(
            "invalid_scope",
            70011,
            "The provided value for the input parameter 'scope' isn't valid.",
        ),
        "AADSTS70011",
        False,
        False,
        "SMTP.Send",
    ),
    (
        reply(
            "invalid_grant",
            50076,
            "Due to a configuration change made by your administrator, "
            "or because you moved to a new location, you must use multi-factor authentication "
            "to access '00000002-0000-0ff1-ce00-000000000000'.",
            suberror="basic_action",
        ),
        "AADSTS50076",
        False,
        True,
        "second factor",
    ),
    (
        reply("invalid_grant", 50079, "you must enroll in multi-factor authentication"),
        "AADSTS50079",
        False,
        True,
        "aka.ms/mfasetup",
    ),
    (
        reply("invalid_grant", 50057, "The user account is disabled."),
        "AADSTS50057",
        False,
        True,
        "disabled",
    ),
    (
        reply(
            "invalid_grant",
            50053,
            "The account is locked, you've tried to sign in too many "
            "times with an incorrect user ID or password.",
        ),
        "AADSTS50053",
        False,
        True,
        "locked",
    ),
    (
        reply(
            "invalid_request",
            90002,
            "Tenant 'contoso.example' not found. Check to make sure "
            "you have the correct tenant ID and are signing into the correct cloud.",
        ),
        "AADSTS90002",
        False,
        False,
        "tenant",
    ),
    (
        reply(
            "temporarily_unavailable", 90033, "A transient error has occurred. Please try again."
        ),
        "AADSTS90033",
        True,
        False,
        "later",
    ),
]


@pytest.mark.parametrize(
    ("body", "code", "retryable", "needs_sign_in", "words"), CASES, ids=[c[1] for c in CASES]
)
def test_catalog(
    body: dict[str, Any], code: str, retryable: bool, needs_sign_in: bool, words: str
) -> None:
    problem = classify(body, OAUTH)
    assert problem.code == code
    assert problem.retryable is retryable
    assert problem.needs_sign_in is needs_sign_in
    assert words.lower() in (problem.explanation + " " + problem.what_to_do).lower()
    assert "Trace ID" not in problem.explanation
    assert problem.title


def test_error_codes_win_over_a_drifted_text() -> None:
    body = reply("invalid_grant", 50173, "Some new wording Microsoft adopted in 2027.")
    body["error_description"] = "AADSTS70000: misleading" + TAIL
    assert classify(body, OAUTH).code == "AADSTS50173"


def test_code_in_description_when_error_codes_missing() -> None:
    body = {"error": "invalid_grant", "error_description": "AADSTS700082: expired." + TAIL}
    assert classify(body).code == "AADSTS700082"


def test_error_string_when_no_code() -> None:
    problem = classify({"error": "expired_token", "error_description": "gone"})
    assert problem.needs_sign_in
    assert problem.code == "AADSTS70019"
    assert classify({"error": "invalid_grant"}).needs_sign_in


def test_suberror_consent_required() -> None:
    problem = classify({"error": "invalid_grant", "suberror": "consent_required"}, OAUTH)
    assert OAUTH.admin_consent_url in problem.what_to_do


def test_unknown_code_shows_first_line_only() -> None:
    problem = classify(reply("invalid_request", 12345, "Something unusual happened."), OAUTH)
    assert problem.code == "AADSTS12345"
    assert "Something unusual happened." in problem.explanation
    assert "Trace ID" not in problem.explanation
    assert problem.trace_id == "0f7a3a2e-5d0b-4c1e-9a8b-7c6d5e4f3a00"
    assert not problem.retryable


def test_never_echoes_a_token() -> None:
    token = "EwBIBMl6BAAU" + "x" * 200
    problem = classify({"error": "weird", "error_description": f"bad token {token}" + TAIL})
    assert token not in str(problem)
    assert token[:40] not in problem.explanation


def test_consumers_consent_url_uses_common() -> None:
    oauth = OAuthConfig("login.microsoftonline.com", "consumers", OAUTH.client_id, OAUTH.scope)
    problem = classify(reply("invalid_grant", 65001, "not consented"), oauth)
    assert "https://login.microsoftonline.com/common/adminconsent?client_id=" in problem.what_to_do


def test_first_line() -> None:
    assert first_line("AADSTS1: x" + TAIL) == "AADSTS1: x"
    assert first_line("") == ""


def test_transport_problems_are_retryable() -> None:
    assert network_problem(ConnectionError("refused"), "h").retryable
    assert "CA bundle" in network_problem(OSError("certificate verify failed"), "h").what_to_do
    assert service_unavailable("HTTP 503", "h").retryable


# -- issue 14: react to `error` first; configuration faults hold; catalog gaps -----------------
@pytest.mark.parametrize("number", [70000, 65004, None])
def test_a_declined_sign_in_is_declined_whatever_the_number(number: int | None) -> None:
    # Microsoft: clients react to `error`; the AADSTS number seen with it varies.
    body = reply(
        "authorization_declined",
        number,
        "The request was denied because one or more scopes requested are unauthorized or "
        "expired. The user must first sign in and grant the client application access to "
        "the requested scope.",
    )
    problem = classify(body, OAUTH)
    assert problem.title == "Sign-in declined"
    assert "declined" in problem.explanation
    assert "no longer valid" not in problem.title
    assert problem.error == "authorization_declined"


def test_invalid_grant_70000_is_still_a_dead_refresh_token() -> None:
    problem = classify(reply("invalid_grant", 70000, "The provided grant is invalid."), OAUTH)
    assert problem.title == "Sign-in no longer valid"
    assert problem.needs_sign_in


@pytest.mark.parametrize(
    ("body", "hold"),
    [
        (reply("invalid_grant", 53003, "Access has been blocked by Conditional Access."), True),
        (reply("invalid_client", 7000218, "The request body must contain ..."), True),
        (reply("unauthorized_client", 700016, "Application ... was not found."), True),
        (reply("invalid_grant", 50173, "The provided grant has expired."), True),
        (reply("invalid_request", 12345, "Something new."), True),
        (reply("temporarily_unavailable", None, "Try later."), False),
        (reply("server_error", None, "Oops."), False),
    ],
)
def test_holds_mail(body: dict[str, Any], hold: bool) -> None:
    assert holds_mail(classify(body, OAUTH)) is hold


def test_network_and_5xx_are_retried_not_held() -> None:
    assert not holds_mail(network_problem(ConnectionError("refused"), "h"))
    assert not holds_mail(service_unavailable("HTTP 503", "h"))


def test_scope_of_another_cloud_names_both_clouds_and_the_right_scope() -> None:
    worldwide = OAuthConfig(
        "login.microsoftonline.com",
        "common",
        OAUTH.client_id,
        "https://outlook.office365.us/SMTP.Send offline_access openid email",
    )
    body = reply(
        "invalid_resource",
        500011,
        "The resource principal named https://outlook.office365.us was not found in the tenant "
        "named Contoso. This can happen if the application has not been installed by the "
        "administrator of the tenant or consented to by any user in the tenant. You might "
        "have sent your authentication request to the wrong tenant.",
    )
    problem = classify(body, worldwide)
    assert problem.code == "AADSTS500011"
    assert problem.title == "Scope from another cloud"
    assert "https://outlook.office365.us (the GCC High cloud's)" in problem.explanation
    assert "login.microsoftonline.com (the worldwide cloud)" in problem.explanation
    assert "https://outlook.office.com/SMTP.Send" in problem.what_to_do


@pytest.mark.parametrize("parameter", ["scope", "client_id", "grant_type"])
def test_missing_parameter_is_named(parameter: str) -> None:
    body = reply(
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{parameter}'.",
    )
    problem = classify(body, OAUTH)
    assert f"'{parameter}'" in problem.explanation
    others = {"scope", "client_id", "grant_type"} - {parameter}
    assert not any(f"'{other}'" in problem.explanation for other in others)


@pytest.mark.parametrize(
    ("code", "dead"),
    [
        # The refresh token is gone: expired by inactivity, revoked, or not ours any more.
        ("AADSTS700082", True),
        ("AADSTS50173", True),
        ("AADSTS70008", True),
        ("AADSTS70000", True),
        # Sign-in needs the person again (MFA, a disabled account, consent withdrawn).
        ("AADSTS50076", True),
        ("AADSTS50057", True),
        ("AADSTS65001", True),
        ("not_signed_in", True),
        ("expired_token", True),
        # Worth retrying as it is: nothing for a person to do.
        ("AADSTS70016", False),
        ("network", False),
        ("service_unavailable", False),
        ("AADSTS99999", False),  # unknown numbers are not guessed at
        (None, False),
    ],
)
def test_code_needs_sign_in_follows_the_catalog(code: str | None, dead: bool) -> None:
    assert code_needs_sign_in(code) is dead
