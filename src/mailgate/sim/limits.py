"""Exchange Online's per-mailbox sending limits, as pure decisions.

Theory of operation: nothing here reads a clock or touches a socket. The SMTP server asks
:class:`MailboxLimiter` at three points - each RCPT, MAIL's SIZE= parameter, and the end of
the message - passing the time in; the limiter answers with a :class:`Verdict`, and only
:meth:`MailboxLimiter.record_submission` changes the rolling windows. Keys are lower-cased
UPNs (Exchange counts per mailbox, not per connection or client).

Limits (SPEC "How Microsoft behaves"; Exchange Online service description, "Sending limits"):
3 concurrent connections, 30 messages per minute (excess is accepted and delayed, not
refused), 10,000 recipients per rolling 24 hours, 500 recipients per message, and 35 MB per
message (the mailbox's MaxSendSize default, smaller than the 150 MB the EHLO SIZE advertises).
"""

from __future__ import annotations

import enum
from collections import deque
from dataclasses import dataclass, field


@dataclass(frozen=True)
class ExchangeLimits:
    max_connections: int = 3
    messages_per_minute: int = 30
    recipients_per_day: int = 10_000
    recipients_per_message: int = 500
    #: 35 MB = 35 * 1024 * 1024 octets: MaxSendSize's default for a mailbox.
    max_message_size: int = 36_700_160


class RateWindow:
    """Weighted events per key in a rolling window of *seconds*.

    An event at time t counts while ``now - t < seconds``; at exactly ``seconds`` old it has
    left the window. Times only move forward in practice, but nothing breaks if they do not.
    """

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._events: dict[str, deque[tuple[float, int]]] = {}

    def _prune(self, key: str, now: float) -> deque[tuple[float, int]]:
        events = self._events.setdefault(key, deque())
        while events and now - events[0][0] >= self.seconds:
            events.popleft()
        return events

    def total(self, key: str, now: float) -> int:
        return sum(weight for _, weight in self._prune(key, now))

    def add(self, key: str, now: float, weight: int = 1) -> None:
        self._prune(key, now).append((now, weight))


@dataclass
class ConcurrentSessions:
    """Authenticated sessions per key, in the order they authenticated.

    A session is *admitted* while it is among the first *limit* still open; when an earlier
    one closes, the next in line becomes admitted (what a retrying client observes).
    """

    _open: dict[str, list[str]] = field(default_factory=dict)

    def open(self, key: str, session_id: str) -> None:
        sessions = self._open.setdefault(key, [])
        if session_id not in sessions:
            sessions.append(session_id)

    def close(self, key: str, session_id: str) -> None:
        sessions = self._open.get(key, [])
        if session_id in sessions:
            sessions.remove(session_id)

    def count(self, key: str) -> int:
        return len(self._open.get(key, []))

    def admitted(self, key: str, session_id: str, limit: int) -> bool:
        sessions = self._open.get(key, [])
        return session_id in sessions[:limit]


class Verdict(enum.Enum):
    ACCEPT = "accept"
    #: Accepted, but over 30 messages per minute: Exchange delivers it late.
    DELAY = "delay"
    #: "432 4.3.2 Concurrent connections limit exceeded" at end of DATA.
    TOO_MANY_CONNECTIONS = "too-many-connections"
    #: "554 5.2.0 ... SubmissionQuotaExceededException".
    QUOTA_EXCEEDED = "quota-exceeded"
    #: "552 5.3.4 Message size exceeds fixed maximum message size".
    TOO_BIG = "too-big"


class MailboxLimiter:
    """All of a tenant's per-mailbox limits; the server holds one and passes times in."""

    def __init__(self, limits: ExchangeLimits | None = None) -> None:
        self.limits = limits or ExchangeLimits()
        self.sessions = ConcurrentSessions()
        self.messages = RateWindow(60.0)
        self.recipients = RateWindow(24 * 3600.0)

    def rcpt_allowed(self, recipients_so_far: int) -> bool:
        """May one more RCPT be accepted after *recipients_so_far*? (the 501st gets 452)."""
        return recipients_so_far < self.limits.recipients_per_message

    def size_allowed(self, size: int) -> bool:
        return size <= self.limits.max_message_size

    def judge_submission(
        self, key: str, session_id: str, recipients: int, size: int, now: float
    ) -> Verdict:
        """What Exchange does with a complete message, in the order its checks apply.

        Size first (the store refuses it outright), then the connection throttle (a 4xx the
        client retries), then the 24-hour recipient quota; the per-minute rate only delays.
        """
        if not self.size_allowed(size):
            return Verdict.TOO_BIG
        if not self.sessions.admitted(key, session_id, self.limits.max_connections):
            return Verdict.TOO_MANY_CONNECTIONS
        if self.recipients.total(key, now) + recipients > self.limits.recipients_per_day:
            return Verdict.QUOTA_EXCEEDED
        if self.messages.total(key, now) >= self.limits.messages_per_minute:
            return Verdict.DELAY
        return Verdict.ACCEPT

    def record_submission(self, key: str, recipients: int, now: float) -> None:
        """Count an accepted (or delayed) message against the rolling windows."""
        self.messages.add(key, now)
        self.recipients.add(key, now, recipients)
