from __future__ import annotations

import pytest

from mailgate.submission.protocol import (
    AfterPipeline,
    Extensions,
    after_pipeline,
    check_address,
    encode_data,
    mail_parameters,
    missing_extension,
    needs_8bitmime,
    needs_smtputf8,
    parse_ehlo,
    parse_queue_id,
    sort_recipients,
)
from mailgate.submission.replies import Reply, parse_reply

EXCHANGE_EHLO_AFTER_TLS = (
    "250-BY1PR10CA0041.outlook.office365.com Hello [203.0.113.7]\r\n"
    "250-SIZE 157286400\r\n250-PIPELINING\r\n250-DSN\r\n250-ENHANCEDSTATUSCODES\r\n"
    "250-AUTH LOGIN XOAUTH2\r\n250-8BITMIME\r\n250-BINARYMIME\r\n250-CHUNKING\r\n250 SMTPUTF8"
)


def test_parse_exchange_ehlo() -> None:
    ext = parse_ehlo(parse_reply(EXCHANGE_EHLO_AFTER_TLS))
    assert ext.auth_mechanisms == {"LOGIN", "XOAUTH2"}
    assert ext.size_limit == 157_286_400
    assert ext.has("smtputf8")
    assert ext.has("8BITMIME")
    assert not ext.has("STARTTLS")


@pytest.mark.parametrize(("value", "limit"), [("", None), ("0", None), ("35882577", 35882577)])
def test_size_limit(value: str, limit: int | None) -> None:
    assert Extensions({"SIZE": value}).size_limit == limit


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"a\r\nb\r\n", b"a\r\nb\r\n.\r\n"),
        (b"a\nb", b"a\r\nb\r\n.\r\n"),  # bare LF, no final line end
        (b"a\rb\r", b"a\r\nb\r\n.\r\n"),  # bare CR
        (b".hidden\r\n", b"..hidden\r\n.\r\n"),  # first line
        (b"a\r\n.\r\nb", b"a\r\n..\r\nb\r\n.\r\n"),  # a lone dot inside the message
        (b"a\n.\nb", b"a\r\n..\r\nb\r\n.\r\n"),  # smuggling attempt with bare LFs
        (b"a\r\n..x\r\n", b"a\r\n...x\r\n.\r\n"),
        (b"", b".\r\n"),
        (b"x" * 5, b"xxxxx\r\n.\r\n"),
        # The fast paths: every CR and LF paired, or not; a dot only at the very end.
        (b"a\r\nb\n\rc", b"a\r\nb\r\n\r\nc\r\n.\r\n"),
        (b"x\r\n\r\n.", b"x\r\n\r\n..\r\n.\r\n"),
        (b"x.\r\ny.z\r\n", b"x.\r\ny.z\r\n.\r\n"),
    ],
)
def test_encode_data(data: bytes, wire: bytes) -> None:
    assert encode_data(data) == wire


def test_encoded_data_has_one_terminator_and_only_crlf() -> None:
    wire = encode_data(b"line\n.\r\n.\r.\n\r\n\r\r\n\n")
    body = wire[: -len(b".\r\n")]
    assert b"\r\n.\r\n" not in body
    assert not body.startswith(b".\r\n")
    assert wire.replace(b"\r\n", b"").count(b"\r") == 0
    assert wire.replace(b"\r\n", b"").count(b"\n") == 0


@pytest.mark.parametrize(
    ("mail_from", "rcpts", "data", "utf8"),
    [
        ("a@b.c", ["d@e.f"], b"Subject: hi\r\n\r\nbody \xc3\xa9", False),
        ("a@b.c", ["d@e.f"], b"Subject: h\xc3\xa9\r\n\r\nbody", True),
        ("a@b.c", ["d@e.f"], b"Subject: h\xc3\xa9\n\nbody", True),
        ("\u7528\u6237@b.c", ["d@e.f"], b"Subject: hi\r\n\r\n", True),
        ("a@b.c", ["x@\u4f8b\u5b50.cn"], b"Subject: hi\r\n\r\n", True),
    ],
)
def test_needs_smtputf8(mail_from: str, rcpts: list[str], data: bytes, utf8: bool) -> None:
    assert needs_smtputf8(mail_from, rcpts, data) is utf8


def test_needs_8bitmime() -> None:
    assert not needs_8bitmime(b"plain ascii")
    assert needs_8bitmime(b"caf\xc3\xa9")


EXCHANGE = Extensions({"SIZE": "157286400", "8BITMIME": "", "SMTPUTF8": ""})
BARE = Extensions({})


@pytest.mark.parametrize(
    ("ext", "eight", "utf8", "params", "missing"),
    [
        (EXCHANGE, False, False, ["SIZE=100"], None),
        (EXCHANGE, True, False, ["SIZE=100", "BODY=8BITMIME"], None),
        (EXCHANGE, True, True, ["SIZE=100", "BODY=8BITMIME", "SMTPUTF8"], None),
        (BARE, False, False, [], None),
        (BARE, True, False, [], "8BITMIME"),
        (BARE, True, True, [], "SMTPUTF8"),
    ],
)
def test_mail_parameters(
    ext: Extensions, eight: bool, utf8: bool, params: list[str], missing: str | None
) -> None:
    assert mail_parameters(ext, 100, eight, utf8) == params
    assert missing_extension(ext, eight, utf8) == missing


@pytest.mark.parametrize(
    ("text", "queue_id", "host"),
    [
        (
            "250 2.0.0 OK <b225fdda-3db5-4aeb-4d52-c74d71838980@sunshine.example> "
            "[Hostname=SYBP282MB2635.AUSP282.PROD.OUTLOOK.COM]",
            "b225fdda-3db5-4aeb-4d52-c74d71838980@sunshine.example",
            "SYBP282MB2635.AUSP282.PROD.OUTLOOK.COM",
        ),
        ("250 2.0.0 OK <ABC123.prod.outlook.com>", "ABC123.prod.outlook.com", None),
        ("250 2.0.0 Ok: queued as 4XyZ12abc", "4XyZ12abc", None),
        ("250 OK id=10HmaX-0005vi-00", "10HmaX-0005vi-00", None),
        ("250 2.0.0 OK", None, None),
    ],
)
def test_parse_queue_id(text: str, queue_id: str | None, host: str | None) -> None:
    assert parse_queue_id(parse_reply(text)) == (queue_id, host)


@pytest.mark.parametrize(
    "address", ["a@b>", "<a@b", "a@b\r\nRCPT TO:<x@y>", "a b@c", "a@b\x00", "a@b\n"]
)
def test_check_address_refuses_injection(address: str) -> None:
    with pytest.raises(ValueError, match="recipient"):
        check_address(address, "recipient")


def test_check_address_accepts_plain_and_null() -> None:
    assert check_address("scanner@contoso.com", "sender") == "scanner@contoso.com"
    assert check_address("", "sender") == ""  # null reverse-path "<>"


def test_reply_helpers() -> None:
    assert Reply(250, ("a", "b")).text == "a\nb"
    assert str(Reply(250, ("a", "b"))) == "250 a\n250 b"


def _r(code: int) -> Reply:
    return Reply(code, (f"{code} text",))


def _too_many(reply: Reply) -> bool:
    return reply.code == 452


@pytest.mark.parametrize(
    ("codes", "accepted", "refused", "deferred", "first"),
    [
        ([250, 251], ("a", "b"), [], (), None),
        ([550, 250], ("b",), ["a"], (), 550),
        ([250, 452, 452], ("a",), [], ("b", "c"), 452),
        ([452, 250, 550], ("b",), ["c"], ("a",), 452),  # each judged on its own reply
        ([550, 550], (), ["a", "b"], (), 550),
    ],
)
def test_sort_recipients(
    codes: list[int],
    accepted: tuple[str, ...],
    refused: list[str],
    deferred: tuple[str, ...],
    first: int | None,
) -> None:
    names = ["a", "b", "c"][: len(codes)]
    got = sort_recipients(names, [_r(c) for c in codes], _too_many)
    assert got.accepted == accepted
    assert list(got.refused) == refused
    assert got.deferred == deferred
    assert (got.first_refusal.code if got.first_refusal else None) == first


def test_sort_recipients_needs_one_reply_each() -> None:
    with pytest.raises(ValueError, match="one reply per recipient"):
        sort_recipients(["a", "b"], [_r(250)], _too_many)


@pytest.mark.parametrize(
    ("mail", "rcpts", "data", "step"),
    [
        (250, [250], 354, AfterPipeline.UPLOAD),
        (250, [550, 250], 354, AfterPipeline.UPLOAD),
        (250, [550], 554, AfterPipeline.ABANDON),
        (250, [550], 354, AfterPipeline.END_EMPTY_DATA),
        (530, [503], 503, AfterPipeline.ABANDON),
        (530, [250], 354, AfterPipeline.END_EMPTY_DATA),
        (250, [250], 451, AfterPipeline.DATA_REFUSED),
        (250, [452], 554, AfterPipeline.ABANDON),
    ],
)
def test_after_pipeline(mail: int, rcpts: list[int], data: int, step: AfterPipeline) -> None:
    names = [f"r{i}" for i in range(len(rcpts))]
    recipients = sort_recipients(names, [_r(c) for c in rcpts], _too_many)
    assert after_pipeline(_r(mail), recipients, _r(data)) is step
