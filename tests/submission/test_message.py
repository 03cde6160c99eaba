from __future__ import annotations

import datetime as dt
import email
import email.policy
from email.message import EmailMessage
from pathlib import Path

import pytest

from mailgate.submission.message import build_message, needs_smtputf8, serialize

NOW = dt.datetime(2026, 6, 1, 12, 0, 0, tzinfo=dt.UTC)


def parsed(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_plain_message() -> None:
    message, rcpts = build_message(
        "scanner@contoso.com", ["a@example.com"], [], [], "Hello", "Body\n", now=NOW
    )
    data = serialize(message)
    assert rcpts == ["a@example.com"]
    assert b"\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")
    back = parsed(data)
    assert back["From"] == "scanner@contoso.com"
    assert back["Date"] == "Mon, 01 Jun 2026 12:00:00 +0000"
    assert back["Message-ID"].endswith("@contoso.com>")
    assert back.get_content_type() == "text/plain"
    assert data.isascii()


def test_utf8_subject_names_and_attachment_filenames(tmp_path: Path) -> None:
    pdf = tmp_path / "Bericht für März.pdf"
    pdf.write_bytes(b"%PDF-1.4\n" + bytes(range(256)))
    gz = tmp_path / "data.csv.gz"
    gz.write_bytes(b"\x1f\x8b")
    unknown = tmp_path / "blob.zzz-unknown"
    unknown.write_bytes(b"?")
    message, rcpts = build_message(
        "scanner@contoso.com",
        ["Jörg Müller <jm@example.com>", "b@example.com, c@example.com"],
        ["d@example.com"],
        ["hidden@example.com", "B@EXAMPLE.com"],
        "扫描件 — Scan über",
        "Grüße\n",
        [pdf, gz, unknown],
        now=NOW,
    )
    data = serialize(message)
    assert data.isascii()  # 7-bit clean: needs neither 8BITMIME nor SMTPUTF8
    assert b"filename*=utf-8''Bericht%20f%C3%BCr%20M%C3%A4rz.pdf" in data
    assert rcpts == [
        "jm@example.com",
        "b@example.com",
        "c@example.com",
        "d@example.com",
        "hidden@example.com",
    ]
    back = parsed(data)
    assert back["Subject"] == "扫描件 — Scan über"
    assert back["To"].addresses[0].display_name == "Jörg Müller"
    assert "Bcc" not in back
    assert b"hidden@example.com" not in data
    assert back.get_body(("plain",)).get_content() == "Grüße\n"  # type: ignore[union-attr]
    parts = list(back.iter_attachments())
    assert [p.get_filename() for p in parts] == [pdf.name, gz.name, unknown.name]
    assert [p.get_content_type() for p in parts] == [
        "application/pdf",
        "application/octet-stream",
        "application/octet-stream",
    ]
    assert parts[0].get_content() == pdf.read_bytes()


def test_from_header_with_display_name() -> None:
    message, _ = build_message(
        "scanner@contoso.com",
        ["a@example.com"],
        [],
        [],
        "s",
        "b",
        from_header="Office Scanner <scan@contoso.com>",
    )
    assert str(message["From"]) == "Office Scanner <scan@contoso.com>"


def test_international_address_needs_smtputf8() -> None:
    message, rcpts = build_message("scanner@contoso.com", ["用户@例子.广告"], [], [], "s", "b")
    assert rcpts == ["用户@例子.广告"]
    assert needs_smtputf8(message)
    assert "用户@例子.广告".encode() in serialize(message)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"subject": "Hi\r\nBcc: victim@example.com"}, "Subject"),
        ({"subject": "Hi\nX: y"}, "Subject"),
        ({"to": ["a@example.com\r\nBcc: v@example.com"]}, "To"),
        ({"cc": ["Name\n <a@example.com>"]}, "Cc"),
        ({"bcc": ["a@example.com\r"]}, "Bcc"),
        ({"sender": "scanner@contoso.com\r\nX: y"}, "sender"),
        ({"from_header": "Evil\r\nBcc: v@example.com <a@example.com>"}, "From"),
        ({"to": ["not an address"]}, "To"),
        ({"to": ["a@"]}, "To"),
        ({"from_header": "a@example.com, b@example.com"}, "From"),
        ({"to": [], "cc": [], "bcc": []}, "recipient"),
    ],
)
def test_refuses_injection_and_bad_addresses(kwargs: dict[str, object], field: str) -> None:
    args: dict[str, object] = {
        "sender": "scanner@contoso.com",
        "to": ["a@example.com"],
        "cc": [],
        "bcc": [],
        "subject": "s",
        "body": "b",
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=field):
        build_message(**args)  # type: ignore[arg-type]


def test_missing_attachment_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"attachment .*missing\.pdf"):
        build_message(
            "scanner@contoso.com", ["a@example.com"], [], [], "s", "b", [tmp_path / "missing.pdf"]
        )


def test_body_with_leading_dots_and_long_lines_survives() -> None:
    body = ".\n..hidden\n" + "x" * 2000 + "\n"
    message, _ = build_message("scanner@contoso.com", ["a@example.com"], [], [], "s", body)
    data = serialize(message)
    assert max(len(line) for line in data.split(b"\r\n")) <= 998  # RFC 5322 section 2.1.1
    assert parsed(data).get_content().replace("\r\n", "\n") == body
