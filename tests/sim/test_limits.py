"""Tables of cases for Exchange's per-mailbox limits (mailgate.sim.limits), times passed in."""

from __future__ import annotations

import pytest

from mailgate.sim.limits import (
    ConcurrentSessions,
    ExchangeLimits,
    MailboxLimiter,
    RateWindow,
    Verdict,
)

T0 = 1_780_000_000.0


@pytest.mark.parametrize(
    ("events", "now", "expected"),
    [
        ([], T0, 0),
        ([(T0, 1)], T0, 1),
        ([(T0, 1), (T0 + 1, 2)], T0 + 1, 3),
        # an event leaves the window exactly `seconds` after it happened
        ([(T0, 1)], T0 + 59.999, 1),
        ([(T0, 1)], T0 + 60, 0),
        ([(T0, 5), (T0 + 30, 7)], T0 + 61, 7),
        ([(T0, 5), (T0 + 30, 7)], T0 + 90, 0),
    ],
)
def test_rate_window_totals(events: list[tuple[float, int]], now: float, expected: int) -> None:
    window = RateWindow(60)
    for when, weight in events:
        window.add("scanner@contoso.com", when, weight)
    assert window.total("scanner@contoso.com", now) == expected


def test_rate_window_keys_are_separate() -> None:
    window = RateWindow(60)
    window.add("a", T0, 3)
    assert window.total("b", T0) == 0
    assert window.total("a", T0) == 3


def test_concurrent_sessions_admit_the_first_three_still_open() -> None:
    sessions = ConcurrentSessions()
    for sid in ("s1", "s2", "s3", "s4"):
        sessions.open("k", sid)
    assert [sessions.admitted("k", sid, 3) for sid in ("s1", "s2", "s3", "s4")] == [
        True,
        True,
        True,
        False,
    ]
    sessions.close("k", "s2")
    assert sessions.admitted("k", "s4", 3)
    assert sessions.count("k") == 3
    sessions.open("k", "s1")  # opening twice does not count twice
    assert sessions.count("k") == 3
    assert not sessions.admitted("other", "s1", 3)


@pytest.mark.parametrize(
    ("so_far", "allowed"), [(0, True), (499, True), (500, False), (501, False)]
)
def test_recipients_per_message(so_far: int, allowed: bool) -> None:
    assert MailboxLimiter().rcpt_allowed(so_far) is allowed


@pytest.mark.parametrize(
    ("size", "allowed"),
    [(0, True), (36_700_160, True), (36_700_161, False), (157_286_400, False)],
)
def test_message_size(size: int, allowed: bool) -> None:
    assert MailboxLimiter().size_allowed(size) is allowed


# (already sent in the last minute, recipients in the last 24 h, this message's recipients,
#  size, session admitted, verdict)
SUBMISSIONS = [
    (0, 0, 1, 100, True, Verdict.ACCEPT),
    (29, 0, 1, 100, True, Verdict.ACCEPT),
    (30, 0, 1, 100, True, Verdict.DELAY),
    (0, 9_999, 1, 100, True, Verdict.ACCEPT),
    (0, 9_999, 2, 100, True, Verdict.QUOTA_EXCEEDED),
    (0, 10_000, 1, 100, True, Verdict.QUOTA_EXCEEDED),
    (0, 0, 1, 36_700_161, True, Verdict.TOO_BIG),
    (0, 0, 1, 100, False, Verdict.TOO_MANY_CONNECTIONS),
    # order of checks: size, then connections, then quota, then rate
    (30, 10_000, 1, 36_700_161, False, Verdict.TOO_BIG),
    (30, 10_000, 1, 100, False, Verdict.TOO_MANY_CONNECTIONS),
    (30, 10_000, 1, 100, True, Verdict.QUOTA_EXCEEDED),
]


@pytest.mark.parametrize(
    ("per_minute", "per_day", "recipients", "size", "admitted", "verdict"), SUBMISSIONS
)
def test_judge_submission(
    per_minute: int, per_day: int, recipients: int, size: int, admitted: bool, verdict: Verdict
) -> None:
    limiter = MailboxLimiter()
    key = "scanner@contoso.com"
    for sid in ("a", "b", "c"):
        limiter.sessions.open(key, sid)
    me = "a" if admitted else "d"
    limiter.sessions.open(key, me)
    for _ in range(per_minute):
        limiter.messages.add(key, T0 - 1)
    if per_day:
        limiter.recipients.add(key, T0 - 3600, per_day)
    assert limiter.judge_submission(key, me, recipients, size, T0) is verdict


def test_moving_clock_releases_rate_and_quota() -> None:
    limiter = MailboxLimiter(ExchangeLimits(messages_per_minute=2, recipients_per_day=5))
    key, now = "k", T0
    limiter.sessions.open(key, "s")
    verdicts = []
    for _ in range(3):
        verdicts.append(limiter.judge_submission(key, "s", 1, 10, now))
        limiter.record_submission(key, 1, now)
        now += 1
    assert verdicts == [Verdict.ACCEPT, Verdict.ACCEPT, Verdict.DELAY]
    # a minute after the first message the rate is back under the limit
    assert limiter.judge_submission(key, "s", 1, 10, T0 + 61) is Verdict.ACCEPT
    # 3 recipients counted in the last 24 h; 3 more exceed 5 until the day has passed
    assert limiter.judge_submission(key, "s", 3, 10, T0 + 3600) is Verdict.QUOTA_EXCEEDED
    assert limiter.judge_submission(key, "s", 3, 10, T0 + 86_400 + 3) is Verdict.ACCEPT
