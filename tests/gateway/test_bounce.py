"""Bounce reports: RFC 3464 structure, no report to the null sender."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default

import pytest

from mailgate.gateway.bounce import FailedRecipient, build_bounce, should_bounce
from mailgate.gateway.headers import split_fields

ORIGINAL = b"From: mfp@printer.local\r\nSubject: =?utf-8?q?Scan_=C3=A4?=\r\n\r\n" + b"x" * 10_000


@pytest.mark.parametrize(
    ("sender", "expected"), [("", False), ("<>", False), (" ", False), ("a@b.test", True)]
)
def test_should_bounce(sender: str, expected: bool) -> None:
    assert should_bounce(sender) is expected


def test_report_structure() -> None:
    failed = [
        FailedRecipient(
            "x@fabrikam.test",
            "554 5.2.252 SendAsDenied; scanner@contoso.com not allowed to send as a@b",
            "5.2.252",
            "Set the sender address to one the mailbox may use.",
        )
    ]
    report = build_bounce(
        ORIGINAL,
        "mfp@printer.local",
        failed,
        reporting_host="gw.example",
        remote_host="smtp.office365.com",
        report_from="scanner@contoso.com",
        arrival=1_700_000_000.0,
        now=1_700_000_100.0,
    )
    parsed = message_from_bytes(report.as_bytes(), policy=default)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    assert parsed["Auto-Submitted"] == "auto-replied"
    assert parsed["To"] == "mfp@printer.local"
    parts = list(parsed.iter_parts())
    assert [p.get_content_type() for p in parts] == [
        "text/plain",
        "message/delivery-status",
        "text/rfc822-headers",
    ]
    human = parts[0].get_content()
    assert "x@fabrikam.test" in human
    assert "Scan ä" in human
    status = parts[1].as_string()
    assert "Status: 5.2.252" in status
    assert "Action: failed" in status
    assert "Final-Recipient: rfc822; x@fabrikam.test" in status
    # Only the headers travel back, not the body.
    assert len(report.as_bytes()) < 3_000


def test_split_fields_round_trips() -> None:
    for data in [ORIGINAL, b"A: 1\nB: 2\n\nbody", b"\r\nno headers", b"Only: header", b""]:
        fields, rest = split_fields(data)
        joined = b"".join(fields) + rest
        assert joined == data or (not data.endswith(b"\n") and joined == data + b"\r\n")
