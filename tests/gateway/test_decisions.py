"""What becomes of a message after each kind of upstream reply (Exchange's reply texts)."""

from __future__ import annotations

import pytest

from mailgate.gateway.decisions import QUOTA_RECHECK, THROTTLE_COOLDOWN, Fate, decide
from mailgate.submission.replies import (
    Classification,
    ReplyContext,
    ReplyKind,
    classify,
    parse_reply,
)

DAY5 = 5 * 86400.0
CTX = ReplyContext(upn="scanner@contoso.com")


@pytest.mark.parametrize(
    ("reply", "fate", "hold_all"),
    [
        (
            "535 5.7.3 Authentication unsuccessful [BY1PR10CA0041 2026-06-01T12:00:00.000Z 08DC2D372B4C3DED]",
            Fate.HOLD,
            True,
        ),
        (
            "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the Tenant. "
            "Visit https://aka.ms/smtp_auth_disabled for more information. [x]",
            Fate.HOLD,
            True,
        ),
        ("530 5.7.57 Client not authenticated to send mail. [x]", Fate.HOLD, True),
        (
            "554 5.2.252 SendAsDenied; scanner@contoso.com not allowed to send as a@b.test; "
            "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied",
            Fate.FAIL,
            False,
        ),
        ("552 5.3.4 Message size exceeds fixed maximum message size", Fate.FAIL, False),
        (
            "550 5.7.30 Basic authentication is not supported for Client Submission.",
            Fate.HOLD,
            True,
        ),
        ("451 4.7.0 Temporary server error. Please try again later.", Fate.DEFER, False),
        (
            "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending "
            "for more information. [Hostname=BY1PR10CA0041]",
            Fate.DEFER,
            False,
        ),
        ("452 4.5.3 Too many recipients", Fate.RETRY_NOW, False),
        (
            "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; Failed",
            Fate.DEFER,
            False,
        ),
    ],
)
def test_fate_by_reply(reply: str, fate: Fate, hold_all: bool) -> None:
    decision = decide(classify(parse_reply(reply), CTX), 0, 1000.0, 1000.0, DAY5)
    assert decision.fate is fate
    assert decision.hold_all is hold_all


def test_throttle_means_one_connection_for_a_while() -> None:
    reply = parse_reply(
        "432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded [Hostname=x]"
    )
    decision = decide(classify(reply, CTX), 0, 100.0, 100.0, DAY5)
    assert decision.single_connection_until == 100.0 + THROTTLE_COOLDOWN
    assert decision.drop_connection


def test_quota_rechecks_within_the_lifetime() -> None:
    reply = parse_reply(
        "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException; x"
    )
    decision = decide(classify(reply, CTX), 3, 100.0, 0.0, DAY5)
    assert decision.next_at == 100.0 + QUOTA_RECHECK
    late = decide(classify(reply, CTX), 3, DAY5, 0.0, DAY5)
    assert late.fate is Fate.FAIL


@pytest.mark.parametrize(("failures", "wait"), [(0, 60.0), (1, 120.0), (6, 3600.0)])
def test_temporary_follows_the_backoff(failures: int, wait: float) -> None:
    reply = parse_reply("421 4.3.2 Service not available, closing transmission channel")
    decision = decide(classify(reply, CTX), failures, 10_000.0, 9_000.0, DAY5, draw=0.5)
    assert decision.fate is Fate.DEFER
    assert decision.next_at == 10_000.0 + wait


def test_temporary_past_lifetime_fails() -> None:
    reply = parse_reply("451 4.4.0 try later")
    assert decide(classify(reply, CTX), 40, DAY5 + 1, 0.0, DAY5).fate is Fate.FAIL


#: Which replies leave the upstream connection unusable: network faults, and replies after
#: which Exchange closes or distrusts the session (4xx, authentication, throttling).
_DROPS = {ReplyKind.NETWORK, ReplyKind.AUTH, ReplyKind.THROTTLED, ReplyKind.TEMPORARY}


@pytest.mark.parametrize("kind", [k for k in ReplyKind if k is not ReplyKind.ACCEPTED])
@pytest.mark.parametrize(("now", "why"), [(100.0, "in time"), (DAY5 + 1, "out of time")])
def test_drop_connection_depends_on_the_reply_not_on_the_time_left(
    kind: ReplyKind, now: float, why: str
) -> None:
    # The delivery engine closes the connection exactly when the decision says so.
    decision = decide(Classification(kind, "s", "a"), 3, now, 0.0, DAY5)
    assert decision.drop_connection is (kind in _DROPS), why
