"""Pacing to Exchange's 30 messages/minute and 10,000 recipients/24 h, with a fake clock."""

from __future__ import annotations

import pytest

from mailgate.gateway.pacing import DAY, Limits, SendPacer, split_recipients


def test_thirty_a_minute_then_wait_for_the_oldest_to_leave() -> None:
    pacer = SendPacer()
    for i in range(30):
        now = i * 1.0
        assert pacer.earliest(now, 1) == now
        pacer.record(now, 1)
    # The 31st waits until the first one (t=0) is a minute old.
    assert pacer.earliest(30.0, 1) == 60.0
    pacer.record(60.0, 1)
    assert pacer.earliest(60.5, 1) == 61.0


def test_rate_over_a_long_run_never_exceeds_the_limit() -> None:
    pacer = SendPacer()
    now = 0.0
    sent: list[float] = []
    for _ in range(300):
        now = pacer.earliest(now, 1)
        pacer.record(now, 1)
        sent.append(now)
    for start in sent:
        assert sum(1 for t in sent if start <= t < start + 60) <= 30
    # Bursts of 30 a minute: the 300th message goes in the tenth minute.
    assert sent[-1] == 9 * 60


@pytest.mark.parametrize(
    ("already", "asked", "expected_wait"),
    [(0, 500, 0.0), (9_500, 500, 0.0), (9_501, 500, DAY), (10_000, 1, DAY)],
)
def test_daily_recipients(already: int, asked: int, expected_wait: float) -> None:
    pacer = SendPacer(Limits(messages_per_minute=10**6))
    if already:
        pacer.record(0.0, already)
    now = 10.0
    earliest = pacer.earliest(now, asked)
    assert earliest == max(now, 0.0 + expected_wait)


def test_daily_window_frees_the_oldest_first() -> None:
    pacer = SendPacer(Limits(messages_per_minute=10**6))
    pacer.record(0.0, 4_000)
    pacer.record(100.0, 4_000)
    pacer.record(200.0, 2_000)
    assert pacer.recipients_last_day == 10_000
    # 3,000 more need the first 4,000 to leave the window: at 0 + 24 h.
    assert pacer.earliest(300.0, 3_000) == DAY
    # 5,000 more need the first two submissions gone.
    assert pacer.earliest(300.0, 5_000) == 100.0 + DAY
    assert pacer.earliest(DAY + 150.0, 5_000) == DAY + 150.0
    assert pacer.recipients_last_day == 2_000


def test_single_submission_over_daily_limit_is_an_error() -> None:
    with pytest.raises(ValueError, match="split"):
        SendPacer().earliest(0.0, 10_001)


@pytest.mark.parametrize(
    ("count", "per", "sizes"),
    [
        (0, 500, []),
        (1, 500, [1]),
        (500, 500, [500]),
        (501, 500, [500, 1]),
        (1201, 500, [500, 500, 201]),
    ],
)
def test_split_recipients(count: int, per: int, sizes: list[int]) -> None:
    rcpts = [f"r{i}@x.test" for i in range(count)]
    parts = split_recipients(rcpts, per)
    assert [len(p) for p in parts] == sizes
    assert [r for p in parts for r in p] == rcpts
