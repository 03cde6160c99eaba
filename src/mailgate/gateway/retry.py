"""When to try a deferred message again, and when to give up.

Theory of operation: a message that met a temporary failure (4xx reply, network fault)
waits an increasing time before its next attempt, like MTAs do (RFC 5321 section 4.5.4.1
asks for at least 30 minutes between retries of one message; we start sooner because
Exchange's 4xx are mostly short-lived throttling, and grow to an hour). Jitter spreads
retries of many messages so they do not return as one burst. Past the maximum queue
lifetime a message fails for good and is bounced.

Pure functions: the clock and the random draw are passed in.
"""

from __future__ import annotations

#: Seconds to wait after the 1st, 2nd, ... failure; the last value repeats.
BACKOFF_SCHEDULE: tuple[int, ...] = (60, 120, 300, 600, 1200, 1800, 3600)
#: Default maximum time a message stays queued (5 days, as Postfix's maximal_queue_lifetime).
DEFAULT_MAX_LIFETIME = 5 * 24 * 3600
#: Jitter as a fraction of the delay, both ways.
JITTER = 0.1


def retry_delay(
    failures: int, draw: float = 0.5, schedule: tuple[int, ...] = BACKOFF_SCHEDULE
) -> float:
    """Seconds to wait after the *failures*-th failure (1-based). *draw* is uniform in [0, 1)."""
    if failures < 1:
        raise ValueError("failures counts from 1")
    if not 0 <= draw < 1:
        raise ValueError("draw must be in [0, 1)")
    base = schedule[min(failures, len(schedule)) - 1]
    return base * (1 + JITTER * (2 * draw - 1))


def next_attempt_at(
    failures: int,
    now: float,
    first_queued_at: float,
    max_lifetime: float = DEFAULT_MAX_LIFETIME,
    draw: float = 0.5,
) -> float | None:
    """When to try again, or None when the message has been queued too long to keep trying."""
    if now - first_queued_at >= max_lifetime:
        return None
    at = now + retry_delay(failures, draw)
    # The last try happens at the deadline rather than never.
    return min(at, first_queued_at + max_lifetime)
