"""Pacing to Exchange Online's per-mailbox sending limits.

Exchange allows a mailbox 30 messages a minute (excess is delayed) and 10,000 recipients
in a rolling 24 hours (excess is refused with 554 5.2.0 SubmissionQuotaExceeded, and the
mailbox may be blocked from sending for a day). mailgate keeps under both so that
Exchange never has to delay or refuse: a message waits here, where it is safe and visible.

:class:`SendPacer` is a small state machine with the clock passed in to every call.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

MINUTE = 60.0
DAY = 24 * 3600.0


@dataclass(frozen=True)
class Limits:
    messages_per_minute: int = 30
    recipients_per_day: int = 10_000
    recipients_per_message: int = 500


class SendPacer:
    """Remembers recent submissions of one mailbox and says when the next one may go."""

    def __init__(self, limits: Limits = Limits()) -> None:
        self.limits = limits
        self._messages: deque[float] = deque()
        self._recipients: deque[tuple[float, int]] = deque()
        self._recipients_in_window = 0

    def _expire(self, now: float) -> None:
        while self._messages and self._messages[0] <= now - MINUTE:
            self._messages.popleft()
        while self._recipients and self._recipients[0][0] <= now - DAY:
            self._recipients_in_window -= self._recipients.popleft()[1]

    def earliest(self, now: float, recipients: int) -> float:
        """The earliest time (>= now) a message to *recipients* recipients may be submitted."""
        if recipients > self.limits.recipients_per_day:
            raise ValueError(
                "a single submission cannot exceed the daily recipient limit; split it"
            )
        self._expire(now)
        at = now
        if len(self._messages) >= self.limits.messages_per_minute:
            # The oldest submission in the window must leave it first.
            index = len(self._messages) - self.limits.messages_per_minute
            at = max(at, self._messages[index] + MINUTE)
        excess = self._recipients_in_window + recipients - self.limits.recipients_per_day
        if excess > 0:
            freed = 0
            for sent_at, count in self._recipients:
                freed += count
                if freed >= excess:
                    at = max(at, sent_at + DAY)
                    break
        return at

    def record(self, now: float, recipients: int) -> None:
        """Note a submission made at *now* (call after Exchange accepted it)."""
        self._expire(now)
        self._messages.append(now)
        self._recipients.append((now, recipients))
        self._recipients_in_window += recipients

    @property
    def recipients_last_day(self) -> int:
        return self._recipients_in_window


def split_recipients(recipients: list[str], per_message: int = 500) -> list[list[str]]:
    """Exchange takes at most 500 recipients a message (452 4.5.3): submit in parts."""
    if per_message < 1:
        raise ValueError("per_message must be at least 1")
    return [recipients[i : i + per_message] for i in range(0, len(recipients), per_message)]
