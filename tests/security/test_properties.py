"""Property-based tests (Hypothesis) for the code that judges replies and rewrites messages:
total functions that never crash, never call a refusal a success, and never change what
the device sent beyond the headers the sender policy names."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mailgate.config.model import SenderPolicy
from mailgate.gateway.policy import prepare
from mailgate.submission.replies import (
    Reply,
    ReplyError,
    ReplyKind,
    classify,
    parse_reply,
)

SENDER = "scanner@contoso.com"
_LINE = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], exclude_characters="\r\n"),
    max_size=120,
)


@given(st.integers(min_value=200, max_value=599), st.lists(_LINE, min_size=1, max_size=4))
def test_classify_is_total_and_never_inverts_success(code: int, lines: list[str]) -> None:
    cls = classify(Reply(code, tuple(lines)))
    assert isinstance(cls.kind, ReplyKind)
    assert cls.summary
    if code >= 500:
        assert cls.kind is not ReplyKind.ACCEPTED
    if 200 <= code < 300:
        assert cls.kind is ReplyKind.ACCEPTED


@given(st.text(max_size=300))
def test_parse_reply_parses_or_refuses_cleanly(text: str) -> None:
    try:
        reply = parse_reply(text)
    except ReplyError:
        return
    assert 100 <= reply.code <= 599
    classify(reply)  # whatever parses can be judged


@given(st.sampled_from(["250", "451", "550", "554", "535", "432"]), _LINE)
def test_parsed_then_classified_keeps_the_class_of_the_code(code: str, line: str) -> None:
    try:
        reply = parse_reply(f"{code} {line}")
    except ReplyError:
        return
    kind = classify(reply).kind
    assert (kind is ReplyKind.ACCEPTED) == code.startswith("2")


_HEADER_NAME = st.from_regex(rb"\A[!-9;-~]{1,20}\Z")
_HEADER_VALUE = st.binary(max_size=200).map(lambda b: b.replace(b"\r", b"").replace(b"\n", b""))
_BODY = st.binary(max_size=500)


@st.composite
def messages(draw: st.DrawFn) -> tuple[bytes, bytes]:
    headers = draw(st.lists(st.tuples(_HEADER_NAME, _HEADER_VALUE), max_size=8))
    if draw(st.booleans()):
        headers.append((b"From", draw(_HEADER_VALUE)))
    head = b"".join(name + b": " + value + b"\r\n" for name, value in headers)
    body = draw(_BODY)
    return head + b"\r\n" + body, body


def _from_count(data: bytes) -> int:
    head = data.split(b"\r\n\r\n", 1)[0]
    return len(re.findall(rb"(?im)^from[ \t]*:", head))


@settings(suppress_health_check=[HealthCheck.too_slow], max_examples=300)
@given(messages(), st.sampled_from(list(SenderPolicy)), st.sampled_from(["", "mfp@printer.local"]))
def test_prepare_never_crashes_keeps_the_body_and_one_from(
    message: tuple[bytes, bytes], policy: SenderPolicy, envelope_from: str
) -> None:
    data, body = message
    prepared = prepare(data, envelope_from, policy, SENDER)
    assert prepared.data.endswith(b"\r\n\r\n" + body) or prepared.data == data
    if prepared.data != data:  # rewritten: exactly one From, ours
        assert _from_count(prepared.data) == 1, prepared.data
        assert prepared.envelope_from == SENDER
