"""The token decisions: pure functions of the clock."""

from __future__ import annotations

import pytest

from mailgate.config.model import AccountState
from mailgate.identity.tokens import (
    DAY,
    AccessToken,
    keepalive_due,
    margin_for,
    refresh_due,
    resign_in_deadline,
    still_usable,
    token_health,
)

T0 = 1_780_000_000.0


@pytest.mark.parametrize(
    ("expires_at", "now", "margin", "due"),
    [
        (None, T0, 300, True),  # unknown expiry: refresh
        (T0 + 3600, T0, 300, False),
        (T0 + 301, T0, 300, False),
        (T0 + 300, T0, 300, True),  # exactly at the margin
        (T0 + 10, T0, 300, True),
        (T0 - 10, T0, 300, True),  # already expired
        (T0 + 60, T0, 0, False),
    ],
)
def test_refresh_due(expires_at: float | None, now: float, margin: float, due: bool) -> None:
    assert refresh_due(expires_at, now, margin) is due


@pytest.mark.parametrize(
    ("idle_days", "due"), [(0, False), (6.9, False), (7, True), (30, True), (89, True)]
)
def test_keepalive_due(idle_days: float, due: bool) -> None:
    assert keepalive_due(T0, T0 + idle_days * DAY) is due


def test_resign_in_deadline_is_90_days() -> None:
    assert resign_in_deadline(T0) == T0 + 90 * DAY


@pytest.mark.parametrize(
    ("expires_at", "usable"), [(None, False), (T0 + 31, True), (T0 + 30, False), (T0 - 1, False)]
)
def test_still_usable(expires_at: float | None, usable: bool) -> None:
    assert still_usable(expires_at, T0) is usable


def account(last_refresh_days_ago: float, last_error: str | None = None) -> AccountState:
    last = T0 - last_refresh_days_ago * DAY
    return AccountState("u@contoso.com", "u@contoso.com", last, last, last + 3600, last_error)


@pytest.mark.parametrize(
    ("days", "error", "keepalive", "warning", "needs"),
    [
        (0, None, False, False, False),
        (8, None, True, False, False),
        (77, None, True, True, False),  # 13 days left: warn
        (90, None, True, True, True),  # past the deadline
        (1, "AADSTS700082", False, True, True),
        (1, "AADSTS50173", False, True, True),
        (1, "service_unavailable", False, False, False),
    ],
)
def test_token_health(
    days: float, error: str | None, keepalive: bool, warning: bool, needs: bool
) -> None:
    health = token_health(account(days, error), T0)
    assert health.keepalive_due is keepalive
    assert health.resign_in_warning is warning
    assert health.needs_sign_in is needs
    assert health.resign_in_deadline == T0 - days * DAY + 90 * DAY


@pytest.mark.parametrize(
    ("margin", "issued", "expires", "expected"),
    [
        (300.0, 0.0, 3600.0, 300.0),  # Microsoft's hour: the usual five minutes
        (300.0, 0.0, 60.0, 30.0),  # a one-minute token: half its life, not "due at once"
        (300.0, None, 60.0, 300.0),  # issue time unknown: the plain margin
        (300.0, 100.0, 100.0, 300.0),  # nonsense lifetime: the plain margin
    ],
)
def test_margin_is_at_most_half_the_lifetime(
    margin: float, issued: float | None, expires: float, expected: float
) -> None:
    assert margin_for(margin, issued, expires) == expected


def test_a_short_token_is_not_due_when_it_arrives() -> None:
    token = AccessToken("t", "u@x.test", expires_at=1060.0, issued_at=1000.0)
    assert not token.due(1000.0, 300.0)
    assert not token.due(1029.0, 300.0)
    assert token.due(1030.0, 300.0)
