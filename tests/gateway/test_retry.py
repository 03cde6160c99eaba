"""Retry schedule: a table of failures and the waits that follow."""

from __future__ import annotations

import pytest

from mailgate.gateway.retry import DEFAULT_MAX_LIFETIME, next_attempt_at, retry_delay


@pytest.mark.parametrize(
    ("failures", "expected"),
    [(1, 60), (2, 120), (3, 300), (4, 600), (5, 1200), (6, 1800), (7, 3600), (8, 3600), (50, 3600)],
)
def test_schedule_grows_to_an_hour(failures: int, expected: int) -> None:
    assert retry_delay(failures) == expected


@pytest.mark.parametrize(("draw", "factor"), [(0.0, 0.9), (0.5, 1.0), (0.999999, 1.1)])
def test_jitter_is_ten_percent_both_ways(draw: float, factor: float) -> None:
    assert retry_delay(3, draw) == pytest.approx(300 * factor, rel=1e-5)


@pytest.mark.parametrize(("failures", "draw"), [(0, 0.5), (1, 1.0), (1, -0.1)])
def test_bad_arguments_are_refused(failures: int, draw: float) -> None:
    with pytest.raises(ValueError, match=r"from 1|draw"):
        retry_delay(failures, draw)


@pytest.mark.parametrize(
    ("failures", "now", "first", "expected"),
    [
        (1, 1000.0, 1000.0, 1060.0),
        (7, 10_000.0, 0.0, 13_600.0),
        # Near the deadline, the last attempt is at the deadline itself.
        (7, DEFAULT_MAX_LIFETIME - 100.0, 0.0, float(DEFAULT_MAX_LIFETIME)),
        # Past the deadline: give up (bounce).
        (9, float(DEFAULT_MAX_LIFETIME), 0.0, None),
    ],
)
def test_next_attempt(failures: int, now: float, first: float, expected: float | None) -> None:
    assert next_attempt_at(failures, now, first) == expected


def test_never_a_tight_loop() -> None:
    now = 0.0
    for failures in range(1, 200):
        at = next_attempt_at(failures, now, 0.0, max_lifetime=10**9, draw=0.0)
        assert at is not None
        assert at - now >= 54
        now = at
