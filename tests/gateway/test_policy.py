"""Sender policy: tables of devices' senders and what goes upstream."""

from __future__ import annotations

from email import message_from_bytes
from email.policy import default

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailgate.config.model import SenderPolicy
from mailgate.gateway.policy import (
    header_addresses,
    prepare,
    safe_display_name,
)

SENDER = "scanner@contoso.com"
BODY = b"Line one\r\n.leading dot kept\r\n\r\nbinary-ish \xe4\xf6\r\n"


def msg(*headers: str, body: bytes = BODY) -> bytes:
    return "".join(h + "\r\n" for h in headers).encode() + b"\r\n" + body


def test_rewrite_sets_from_and_envelope_and_keeps_body() -> None:
    data = msg("From: Scan to Email <mfp@printer.local>", "To: a@contoso.com", "Subject: Scan")
    out = prepare(data, "mfp@printer.local", SenderPolicy.REWRITE, SENDER)
    assert out.envelope_from == SENDER
    parsed = message_from_bytes(out.data, policy=default)
    assert parsed["From"].addresses[0].addr_spec == SENDER
    assert parsed["From"].addresses[0].display_name == "Scan to Email"
    assert parsed["Reply-To"].addresses[0].addr_spec == "mfp@printer.local"
    assert out.data.endswith(b"\r\n\r\n" + BODY)
    assert any("Reply-To" in n for n in out.notes)


@pytest.mark.parametrize(
    ("from_header", "display"),
    [
        ("From: mfp@printer.local", "mfp at printer.local"),
        ('From: "user@contoso.com" <mfp@printer.local>', "user at contoso.com"),
        ("From: <mfp@printer.local>", "mfp at printer.local"),
        ("From: =?utf-8?b?5omr5o+P5Luq?= <mfp@printer.local>", "扫描仪"),
    ],
)
def test_rewrite_makes_display_names_safe(from_header: str, display: str) -> None:
    out = prepare(msg(from_header, "Subject: x"), "mfp@printer.local", SenderPolicy.REWRITE, SENDER)
    parsed = message_from_bytes(out.data, policy=default)
    assert parsed["From"].addresses[0].display_name == display
    assert parsed["From"].addresses[0].addr_spec == SENDER


def test_rewrite_keeps_existing_reply_to_and_drops_sender() -> None:
    data = msg("From: a@x.test", "Reply-To: boss@x.test", "Sender: other@x.test", "Subject: s")
    out = prepare(data, "a@x.test", SenderPolicy.REWRITE, SENDER)
    parsed = message_from_bytes(out.data, policy=default)
    assert parsed["Reply-To"] == "boss@x.test"
    assert parsed["Sender"] is None


def test_rewrite_without_from_header_and_null_sender() -> None:
    out = prepare(msg("Subject: no from"), "", SenderPolicy.REWRITE, SENDER)
    assert out.envelope_from == SENDER
    assert header_addresses(out.data) == [("", SENDER)]
    assert "Reply-To" not in out.data.decode("latin-1")


def test_folded_headers_survive() -> None:
    data = msg("From: Long\r\n Name <a@x.test>", "Subject: folded\r\n\tsubject", "To: t@x.test")
    out = prepare(data, "a@x.test", SenderPolicy.REWRITE, SENDER)
    assert b"Subject: folded\r\n\tsubject\r\n" in out.data
    assert header_addresses(out.data, "Reply-To") == [("Long Name", "a@x.test")]


@pytest.mark.parametrize(
    ("envelope", "from_header", "rewritten"),
    [
        ("scan@contoso.com", "From: scan@contoso.com", False),
        ("reception@contoso.com", "From: Reception <reception@contoso.com>", False),
        (SENDER, f"From: {SENDER}", False),
        ("mfp@printer.local", "From: mfp@printer.local", True),
        ("scan@contoso.com", "From: mfp@printer.local", True),
        ("SCAN@CONTOSO.COM", "From: Scan@Contoso.com", False),
    ],
)
def test_allow_list(envelope: str, from_header: str, rewritten: bool) -> None:
    data = msg(from_header, "Subject: a")
    allowed = ("scan@contoso.com", "reception@contoso.com")
    out = prepare(data, envelope, SenderPolicy.ALLOW_LIST, SENDER, allowed)
    assert (out.data != data) is rewritten
    assert (out.envelope_from == SENDER) is (rewritten or envelope == SENDER)


def test_pass_through_changes_nothing() -> None:
    data = msg("From: x@y.test", "Sender: z@y.test")
    out = prepare(data, "x@y.test", SenderPolicy.PASS_THROUGH, SENDER)
    assert out == type(out)("x@y.test", data, ())


def test_lf_only_message_keeps_its_line_endings() -> None:
    data = b"From: a@x.test\nSubject: lf\n\nbody\n"
    out = prepare(data, "a@x.test", SenderPolicy.REWRITE, SENDER)
    assert out.data.endswith(b"Subject: lf\n\nbody\n")


def test_safe_display_name_strips_controls() -> None:
    assert safe_display_name("a\r\nBcc: x@y", "q@r") == "aBcc: x at y"


header_text = st.text(
    alphabet=st.characters(blacklist_categories=["Cs"], blacklist_characters="\x00"), max_size=40
)


@given(
    display=header_text,
    local=st.from_regex(r"[a-z0-9.]{1,12}", fullmatch=True),
    body=st.binary(max_size=200),
)
def test_rewrite_property_body_untouched_and_from_is_sender(
    display: str, local: str, body: bytes
) -> None:
    body = body.replace(b"\r", b"").replace(b"\n", b"\r\n")
    data = f"From: {display} <{local}@dev.test>\r\nSubject: p\r\n\r\n".encode() + body
    out = prepare(data, f"{local}@dev.test", SenderPolicy.REWRITE, SENDER)
    assert out.data.endswith(b"\r\n\r\n" + body)
    assert [a for _, a in header_addresses(out.data)] == [SENDER]
    assert b"\r\nFrom:" not in out.data.split(b"\r\n\r\n", 1)[0][1:]


def test_rewrite_leaves_mail_already_from_the_sender_address() -> None:
    data = msg(f"From: Scanner <{SENDER.upper()}>", "Subject: already right")
    out = prepare(data, SENDER, SenderPolicy.REWRITE, SENDER)
    assert out == type(out)(SENDER, data, ())
