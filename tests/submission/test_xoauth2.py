from __future__ import annotations

import base64
import json

import pytest

from mailgate.submission.xoauth2 import (
    RFC5321_COMMAND_LINE,
    AuthForm,
    auth_line_length,
    choose_form,
    decode_error_challenge,
    error_acknowledgement,
    initial_response,
    is_line_too_long,
    oauthbearer_initial_response,
)


def test_initial_response_matches_microsoft_example() -> None:
    # learn.microsoft.com "Authenticate an IMAP, POP or SMTP connection using OAuth":
    # user=test@contoso.onmicrosoft.com^Aauth=Bearer EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA^A^A
    expected = (
        "dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVyIEV3QkFBbDNCQUFVRkZwVUFvN0oz"
        "VmUwYmpMQldaV0NjbFJDM0VvQUEBAQ=="
    )
    assert (
        initial_response("test@contoso.onmicrosoft.com", "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA")
        == expected
    )


def test_initial_response_round_trip() -> None:
    raw = base64.b64decode(initial_response("jsmith@contoso.onmicrosoft.com", "tok.en-_~+/="))
    assert raw == b"user=jsmith@contoso.onmicrosoft.com\x01auth=Bearer tok.en-_~+/=\x01\x01"


@pytest.mark.parametrize(
    ("upn", "token", "field"),
    [
        ("", "t", "UPN"),
        ("a b@c", "t", "UPN"),
        ("a\x01@c", "t", "UPN"),
        ("a@c\r\n", "t", "UPN"),
        ("a@c", "", "access token"),
        ("a@c", "SECRET\x01x", "access token"),
        ("a@c", "SECRET x", "access token"),
        ("a@c", "SECRET\r\nQUIT", "access token"),
    ],
)
def test_initial_response_refuses_framing_breakers(upn: str, token: str, field: str) -> None:
    with pytest.raises(ValueError, match=field) as info:
        initial_response(upn, token)
    assert "SECRET" not in str(info.value)


@pytest.mark.parametrize(
    ("token_length", "limit", "form"),
    [
        (10, RFC5321_COMMAND_LINE, AuthForm.ONE_LINE),
        (2000, RFC5321_COMMAND_LINE, AuthForm.TWO_STEP),
        (2000, 1030, AuthForm.TWO_STEP),  # Dovecot
        (600, 1030, AuthForm.ONE_LINE),
    ],
)
def test_choose_form(token_length: int, limit: int, form: AuthForm) -> None:
    response = initial_response("scanner@contoso.com", "x" * token_length)
    assert choose_form(response, limit) is form


def test_line_length_counts_crlf_at_the_boundary() -> None:
    response = "A" * (RFC5321_COMMAND_LINE - len("AUTH XOAUTH2 ") - 2)
    assert auth_line_length(response) == RFC5321_COMMAND_LINE
    assert choose_form(response) is AuthForm.ONE_LINE
    assert choose_form(response + "A") is AuthForm.TWO_STEP


def test_default_is_rfc_4954s_512_octets_for_any_server() -> None:
    # The AUTH line of a realistic 1.9 KB token is ~2.5 KB: two steps, Exchange included.
    response = initial_response("scanner@contoso.com", "x" * 1900)
    assert auth_line_length(response) > 2500
    assert choose_form(response) is AuthForm.TWO_STEP


def test_oauthbearer_response_rfc_7628_example_shape() -> None:
    # RFC 7628 section 4.1: n,a=user@example.com,^Ahost=server.example.com^Aport=143^A
    # auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==^A^A
    raw = base64.b64decode(
        oauthbearer_initial_response(
            "user@example.com",
            "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==",
            "server.example.com",
            143,
        )
    )
    assert raw == (
        b"n,a=user@example.com,\x01host=server.example.com\x01port=143\x01"
        b"auth=Bearer vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg==\x01\x01"
    )
    escaped = base64.b64decode(oauthbearer_initial_response("a=b,c@d", "t", "h", 1))
    assert escaped.startswith(b"n,a=a=3Db=2Cc@d,\x01")
    with pytest.raises(ValueError, match="access token"):
        oauthbearer_initial_response("a@b", "SECRET\x01", "h", 1)
    line = auth_line_length("A" * 100, "OAUTHBEARER")
    assert line == len("AUTH OAUTHBEARER ") + 100 + 2


@pytest.mark.parametrize(("mechanism", "answer"), [("XOAUTH2", ""), ("OAUTHBEARER", "AQ==")])
def test_error_acknowledgement(mechanism: str, answer: str) -> None:
    assert error_acknowledgement(mechanism) == answer


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (500, "5.5.2 Line too long", True),
        (500, "5.5.6 Line length exceeded", True),
        (501, "Command line too long", True),
        (500, "5.3.3 Unrecognized command 'AUTH'", False),
        (535, "5.7.3 too long ago", False),
    ],
)
def test_is_line_too_long(code: int, text: str, expected: bool) -> None:
    assert is_line_too_long(code, text) is expected


def test_decode_error_challenge() -> None:
    body = {"status": "401", "schemes": "bearer", "scope": "https://outlook.office.com/SMTP.Send"}
    encoded = base64.b64encode(json.dumps(body).encode()).decode()
    assert decode_error_challenge(encoded) == body
    assert decode_error_challenge(f"  {encoded} ") == body


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "not base64!",
        base64.b64encode(b"[1,2]").decode(),
        base64.b64encode(b"\xff").decode(),
    ],
)
def test_decode_error_challenge_tolerates_junk(text: str) -> None:
    assert decode_error_challenge(text) is None
