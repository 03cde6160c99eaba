from __future__ import annotations

import pytest

from mailgate.submission.replies import (
    Action,
    Reply,
    ReplyContext,
    ReplyError,
    ReplyKind,
    ReplyReader,
    classify,
    enhanced_status,
    parse_reply,
    token_may_be_stale,
)

CTX = ReplyContext(
    upn="scanner@contoso.com",
    sender_address="ceo@contoso.com",
    primary_address="scanner@contoso.com",
)
SUFFIX = "[BY1PR10CA0041.namprd10.prod.outlook.com 2026-06-01T12:00:00.000Z 08DC2D372B4C3DED]"

# Exchange's replies as real clients see them, word for word, plus neighbours; (reply, kind,
# enhanced).
EXCHANGE_REPLIES: list[tuple[str, ReplyKind, str | None]] = [
    ("235 2.7.0 Authentication successful", ReplyKind.ACCEPTED, "2.7.0"),
    (
        "250 2.0.0 OK <a@b> [Hostname=SYBP282MB2635.AUSP282.PROD.OUTLOOK.COM]",
        ReplyKind.ACCEPTED,
        "2.0.0",
    ),
    ("354 Start mail input; end with <CRLF>.<CRLF>", ReplyKind.ACCEPTED, None),
    (f"535 5.7.3 Authentication unsuccessful {SUFFIX}", ReplyKind.AUTH, "5.7.3"),
    (
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
        f"Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. {SUFFIX}",
        ReplyKind.AUTH,
        "5.7.139",
    ),
    (
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
        f"Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information. {SUFFIX}",
        ReplyKind.AUTH,
        "5.7.139",
    ),
    (
        f"535 5.7.139 Authentication unsuccessful, basic authentication is disabled. {SUFFIX}",
        ReplyKind.AUTH,
        "5.7.139",
    ),
    (f"530 5.7.57 Client not authenticated to send mail. {SUFFIX}", ReplyKind.AUTH, "5.7.57"),
    (
        "550 5.7.30 Basic authentication is not supported for Client Submission.",
        ReplyKind.AUTH,
        "5.7.30",
    ),
    (
        "554 5.2.252 SendAsDenied; scanner@contoso.com not allowed to send as ceo@contoso.com; "
        "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied; Failed "
        "to process message due to a permanent exception with message [BeginDiagnosticData]"
        "Cannot submit message.[EndDiagnosticData] [Hostname=BY1PR10MB1234.namprd10.prod]",
        ReplyKind.SEND_AS_DENIED,
        "5.2.252",
    ),
    (
        "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=BY1PR10MB1234]",
        ReplyKind.THROTTLED,
        "4.3.2",
    ),
    (
        "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending "
        "for more information. [Hostname=BY1PR10MB1234]",
        ReplyKind.THROTTLED,
        "4.3.2",
    ),
    (
        "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed to "
        "process message due to a permanent exception with message The message can't be "
        "submitted because the sender's submission quota was exceeded. [Hostname=X]",
        ReplyKind.QUOTA,
        "5.2.0",
    ),
    ("452 4.5.3 Too many recipients", ReplyKind.TOO_MANY_RECIPIENTS, "4.5.3"),
    ("552 5.3.4 Message size exceeds fixed maximum message size", ReplyKind.TOO_LARGE, "5.3.4"),
    # Neighbours: other clouds, other servers, texts that drifted.
    ("535 5.7.3 Authentication unsuccessful", ReplyKind.AUTH, "5.7.3"),
    ("535 5.7.8 Username and Password not accepted.", ReplyKind.AUTH, "5.7.8"),
    ("535 Authentication failed", ReplyKind.AUTH, None),
    ("554 5.2.252 some future wording", ReplyKind.SEND_AS_DENIED, "5.2.252"),
    ("554 5.2.0 STOREDRV.Submission.Exception:OtherException", ReplyKind.PERMANENT, "5.2.0"),
    ("432 4.3.2 something new", ReplyKind.THROTTLED, "4.3.2"),
    ("452 Too many recipients", ReplyKind.TOO_MANY_RECIPIENTS, None),
    ("452 4.3.1 Insufficient system storage", ReplyKind.TEMPORARY, "4.3.1"),
    ("552 Message too big", ReplyKind.TOO_LARGE, None),
    ("552 5.2.2 Mailbox full", ReplyKind.PERMANENT, "5.2.2"),
    ("421 4.4.1 Connection timed out", ReplyKind.TEMPORARY, "4.4.1"),
    ("451 4.7.0 Temporary server error. Please try again later", ReplyKind.TEMPORARY, "4.7.0"),
    ("550 5.1.10 RESOLVER.ADR.RecipientNotFound", ReplyKind.PERMANENT, "5.1.10"),
    ("500 5.5.2 Line too long", ReplyKind.PERMANENT, "5.5.2"),
]


@pytest.mark.parametrize(("text", "kind", "enhanced"), EXCHANGE_REPLIES)
def test_classify_exchange_replies(text: str, kind: ReplyKind, enhanced: str | None) -> None:
    reply = parse_reply(text)
    assert reply.code == int(text[:3])
    assert reply.enhanced == enhanced
    assert str(reply) == text
    classification = classify(reply, CTX)
    assert classification.kind is kind


@pytest.mark.parametrize(
    ("kind", "action", "transient", "bounces"),
    [
        (ReplyKind.ACCEPTED, Action.NONE, False, False),
        (ReplyKind.TEMPORARY, Action.RETRY, True, False),
        (ReplyKind.AUTH, Action.HOLD_UNTIL_SIGN_IN, False, False),
        (ReplyKind.THROTTLED, Action.FEWER_CONNECTIONS, True, False),
        (ReplyKind.QUOTA, Action.DEFER_UNTIL_QUOTA_WINDOW, True, False),
        (ReplyKind.TOO_MANY_RECIPIENTS, Action.SPLIT_RECIPIENTS, True, False),
        (ReplyKind.SEND_AS_DENIED, Action.FAIL, False, True),
        (ReplyKind.TOO_LARGE, Action.FAIL, False, True),
        (ReplyKind.PERMANENT, Action.FAIL, False, True),
        (ReplyKind.NETWORK, Action.RETRY, True, False),
    ],
)
def test_every_kind_has_an_action(
    kind: ReplyKind, action: Action, transient: bool, bounces: bool
) -> None:
    from mailgate.submission.replies import Classification

    c = Classification(kind, "s", "a")
    assert (c.action, c.transient, c.bounces) == (action, transient, bounces)


@pytest.mark.parametrize(
    ("text", "must_contain"),
    [
        (
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
            "the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.",
            [
                "Set-CASMailbox -Identity scanner@contoso.com -SmtpClientAuthenticationDisabled $false"
            ],
        ),
        (
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
            "the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
            [
                "Set-TransportConfig -SmtpClientAuthenticationDisabled $false",
                "Set-CASMailbox -Identity scanner@contoso.com -SmtpClientAuthenticationDisabled $false",
            ],
        ),
        (
            "535 5.7.139 Authentication unsuccessful, basic authentication is disabled.",
            ["mailgate login", "config provider"],
        ),
        ("535 5.7.3 Authentication unsuccessful", ["mailgate login", "scanner@contoso.com"]),
        (
            "554 5.2.252 SendAsDenied; scanner@contoso.com not allowed to send as ceo@contoso.com",
            ["ceo@contoso.com", "scanner@contoso.com", "alias", "Send As", "sender address"],
        ),
        (
            "432 4.3.2 Concurrent connections limit exceeded.",
            ["3 concurrent connections", "fewer connections"],
        ),
        ("530 5.7.57 Client not authenticated to send mail.", ["mailgate login"]),
        ("552 5.3.4 Message size exceeds fixed maximum message size", ["35 MB", "MaxSendSize"]),
        ("554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException", ["24"]),
    ],
)
def test_explanations_name_the_fix(text: str, must_contain: list[str]) -> None:
    classification = classify(parse_reply(text), CTX)
    explained = str(classification)
    for words in must_contain:
        assert words in explained


def test_password_auth_failure_talks_about_passwords() -> None:
    ctx = ReplyContext(oauth=False, server="mail.example.net:587")
    c = classify(parse_reply("535 5.7.8 Authentication credentials invalid"), ctx)
    assert c.kind is ReplyKind.AUTH
    assert "mail.example.net:587" in c.summary
    assert "password" in str(c)
    assert "mailgate login" not in str(c)


def test_placeholders_without_context() -> None:
    c = classify(parse_reply("535 5.7.139 ... disabled for the Mailbox."))
    assert "Set-CASMailbox -Identity <upn>" in c.advice


# -- parsing ----------------------------------------------------------------------------------
def test_multiline_reply_fed_one_byte_at_a_time() -> None:
    wire = (
        b"250-host Hello [127.0.0.1]\r\n250-SIZE 157286400\r\n250 AUTH LOGIN XOAUTH2\r\n221 bye\r\n"
    )
    reader = ReplyReader()
    replies: list[Reply] = []
    for i in range(len(wire)):
        reader.feed(wire[i : i + 1])
        while (reply := reader.next_reply()) is not None:
            replies.append(reply)
    assert replies == [
        Reply(250, ("host Hello [127.0.0.1]", "SIZE 157286400", "AUTH LOGIN XOAUTH2")),
        Reply(221, ("bye",)),
    ]
    assert reader.buffered == 0


def test_bytes_after_a_reply_stay_buffered() -> None:
    reader = ReplyReader()
    reader.feed(b"220 2.0.0 SMTP server ready\r\n250 injected")
    assert reader.next_reply() == Reply(220, ("2.0.0 SMTP server ready",))
    assert reader.buffered == len(b"250 injected")


@pytest.mark.parametrize(
    ("text", "code", "lines"),
    [
        ("250", 250, ("",)),
        ("334 ", 334, ("",)),
        ("250 ok\n", 250, ("ok",)),
        ("250-a\r\n250 b", 250, ("a", "b")),
    ],
)
def test_parse_reply_forms(text: str, code: int, lines: tuple[str, ...]) -> None:
    assert parse_reply(text) == Reply(code, lines)


@pytest.mark.parametrize("bad", ["hello", "25 x", "2500 x", "abc ok", "250 a\r\n251 b"])
def test_parse_reply_refuses_garbage(bad: str) -> None:
    with pytest.raises(ReplyError):
        parse_reply(bad)


def test_overlong_reply_refused() -> None:
    reader = ReplyReader()
    reader.feed(b"250-" + b"x" * 20_000)
    with pytest.raises(ReplyError):
        reader.next_reply()
    reader = ReplyReader()
    reader.feed(b"250-xxxxxxxxxxxxxxxxxxxxxxxxxxxx\r\n" * 3000)
    with pytest.raises(ReplyError):
        reader.next_reply()


@pytest.mark.parametrize(
    ("first_line", "enhanced", "detail"),
    [
        ("5.7.139 Authentication unsuccessful", "5.7.139", "Authentication unsuccessful"),
        ("2.0.0", "2.0.0", ""),
        ("5.7.1390 x", None, "5.7.1390 x"),
        ("6.1.1 x", None, "6.1.1 x"),
        ("OK", None, "OK"),
    ],
)
def test_enhanced_status_code(first_line: str, enhanced: str | None, detail: str) -> None:
    reply = Reply(550, (first_line,))
    assert reply.enhanced == enhanced
    assert reply.detail == detail


@pytest.mark.parametrize(
    ("text", "refresh"),
    [
        ("535 5.7.3 Authentication unsuccessful [BY1 2026-06-01T12:00:00.000Z 08DC]", True),
        ("535 5.7.8 Authentication failed.", True),  # Dovecot
        ("535 Authentication failed", True),  # no enhanced code
        ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled", False),
        ("534 5.7.9 Please log in with your web browser", False),
        ("530 5.7.57 Client not authenticated to send mail.", False),
        ("454 4.7.0 Temporary authentication failure", False),
        ("235 2.7.0 Authentication successful", False),
    ],
)
def test_token_may_be_stale(text: str, refresh: bool) -> None:
    assert token_may_be_stale(parse_reply(text)) is refresh


def test_a_generic_535_does_not_blame_exchange() -> None:
    ctx = ReplyContext(upn="scanner@example.org", server="mail.example.org:587")
    explained = str(classify(parse_reply("535 5.7.8 Authentication failed."), ctx))
    assert "Exchange refused" not in explained
    assert "mail.example.org:587 refused the sign-in token for scanner@example.org" in explained
    assert "535 5.7.8" in explained
    assert "mailgate login" in explained


@pytest.mark.parametrize(
    ("stored", "enhanced"),
    [
        ("554 5.2.252 SendAsDenied; scanner@contoso.com not allowed to send as x", "5.2.252"),
        ("550 5.7.1 refused\n550 second line", "5.7.1"),  # str(Reply) of a multi-line reply
        ("451 4.4.0 try later", "4.4.0"),
        ("250 2.0.0 OK", "2.0.0"),
        ("550 refused without an enhanced code", None),
        ("550 5.7.1; glued to a semicolon", None),
        ("network error", None),  # what a network fault leaves
        ("AADSTS700082", None),  # a sign-in problem's code
        ("", None),
        (None, None),
    ],
)
def test_enhanced_status_of_a_stored_reply(stored: str | None, enhanced: str | None) -> None:
    assert enhanced_status(stored) == enhanced
