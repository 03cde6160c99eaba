"""The delivery engine: queued messages go upstream through the signed-in mailbox.

Theory of operation. Up to ``connections`` workers (Exchange allows 3 per mailbox)
each keep one upstream connection and reuse it (RSET between messages). A worker claims
one due message at a time (a lease in the queue), derives what to send from the stored
bytes (sender policy), splits more than 500 recipients into several transactions, waits
for the pacer (30 messages/minute, 10,000 recipients/24 h), submits, and records the
outcome. What a failure means is decided by :func:`mailgate.gateway.decisions.decide`:
retry later, hold everything until the next sign-in, use fewer connections, or fail and
bounce. All time comes from ``clock``/``sleep``, so tests can drive it without waiting.

The engine never sends to more than the queue holds, never retries a message before its
``next_attempt_at``, and parks idle workers on an event, so nothing spins.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

from mailgate.config.model import SenderPolicy
from mailgate.db.writer import Writer
from mailgate.gateway import bounce
from mailgate.gateway.decisions import Decision, Fate, decide
from mailgate.gateway.pacing import Limits, SendPacer, split_recipients
from mailgate.gateway.policy import Prepared, prepare
from mailgate.gateway.queue import Claimed, Incoming, QueueStore, State
from mailgate.gateway.retry import DEFAULT_MAX_LIFETIME
from mailgate.identity.errors import IdentityError, holds_mail
from mailgate.submission.client import SendResult
from mailgate.submission.errors import SubmissionError
from mailgate.submission.replies import Classification, Reply, ReplyKind, enhanced_status

log = logging.getLogger(__name__)
T = TypeVar("T")

#: held_reason of messages waiting for a sign-in; released by the engine, not by hand.
SIGN_IN_HOLD = "sign-in needed"
#: Tries to record a finished delivery before giving up (see DeliveryEngine._complete).
COMPLETE_TRIES = 5
#: A pacing wait longer than this puts the message back rather than keeping a worker.
MAX_PACING_NAP = 30.0
#: What an unexpected error while delivering counts as: temporary, retried with backoff.
INTERNAL = Classification(
    ReplyKind.TEMPORARY,
    "mailgate met an internal error while delivering this message.",
    "The gateway's log has the details; please report them.",
)


class UpstreamConnection(Protocol):
    """One authenticated upstream SMTP session (mailgate.submission.SubmissionClient)."""

    @property
    def connected(self) -> bool: ...

    async def send(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> SendResult: ...

    async def reset(self) -> Reply: ...

    async def close(self) -> None: ...


@dataclass(frozen=True)
class SenderIdentity:
    """Who sends: the signed-in account (or the configured account for provider none)."""

    sender_address: str
    #: Other addresses the mailbox may send as (allow-list policy).
    allowed: tuple[str, ...] = ()
    #: Changes whenever someone signs in again; the engine resumes held mail on a change.
    generation: float = 0.0


@dataclass(frozen=True)
class DeliverySettings:
    connections: int = 3
    limits: Limits = field(default_factory=Limits)
    max_lifetime: float = DEFAULT_MAX_LIFETIME
    lease: float = 15 * 60.0
    #: Close an upstream connection idle this long (Exchange drops idle ones anyway).
    idle_close: float = 30.0
    policy: SenderPolicy = SenderPolicy.REWRITE
    reporting_host: str = field(default_factory=socket.getfqdn)
    remote_host: str = "smtp.office365.com"
    #: How often to look for expired leases and for a new sign-in while holding.
    housekeeping_interval: float = 5.0


@dataclass
class Unwritten:
    """What one delivery learnt and has not written yet: written with the final state
    change in one commit (the usual case), or before any other change."""

    outcomes: list[tuple[str, str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def take(self) -> tuple[list[tuple[str, str, str]], list[str]]:
        taken = (self.outcomes, self.notes)
        self.outcomes, self.notes = [], []
        return taken


@dataclass(frozen=True)
class Failure:
    decision: Decision
    classification: Classification
    reply: str
    #: The server refused the session itself (greeting, EHLO, STARTTLS), not one message.
    session: bool = False


def _on_loop(loop: asyncio.AbstractEventLoop) -> bool:
    try:
        return asyncio.get_running_loop() is loop
    except RuntimeError:  # no loop runs in this thread
        return False


class DeliveryEngine:
    def __init__(
        self,
        queue: QueueStore,
        db: Writer,
        open_upstream: Callable[[], Awaitable[UpstreamConnection]],
        identity: Callable[[], Awaitable[SenderIdentity | None]],
        settings: DeliverySettings | None = None,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        draw: Callable[[], float] = random.random,
        owner: str | None = None,
    ) -> None:
        self.queue = queue
        self.db = db
        self.open_upstream = open_upstream
        self.identity = identity
        self.settings = settings or DeliverySettings()
        self.clock = clock
        self.sleep = sleep
        self.draw = draw
        self.owner = owner or f"{socket.gethostname()}:{id(self):x}"
        self.pacer = SendPacer(self.settings.limits)
        self._pacing = asyncio.Lock()
        self.signin_needed = False
        self._generation: float | None = None
        self._single_until = 0.0
        self._upstream_down = False
        self._stopping = False
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.delivered = 0

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        now = self.clock()
        await self.db(self.queue.release_owner, self.owner, now)
        await self.db(self.queue.recover, now)
        for at, count in await self.db(self.queue.recipients_sent_since, now - 24 * 3600):
            self.pacer.record(at, count)
        self._tasks = [
            asyncio.create_task(self._worker(i), name=f"delivery-{i}")
            for i in range(self.settings.connections)
        ]
        self._tasks.append(asyncio.create_task(self._housekeeping(), name="delivery-housekeeping"))

    async def stop(self, grace: float = 30.0) -> None:
        """Stop claiming; let messages in flight finish for up to *grace* seconds, then requeue."""
        self._stopping = True
        self.wake()
        workers = self._tasks
        _, pending = await asyncio.wait(workers, timeout=grace) if workers else (set(), set())
        for task in pending:
            task.cancel()
        for task in pending:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        # Whatever a cancelled worker held goes straight back to the queue.
        await self.db(self.queue.release_owner, self.owner, self.clock())
        self._tasks = []

    def apply(self, settings: DeliverySettings) -> None:
        """New settings from a reload; the number of workers stays until a restart."""
        self.settings = dataclasses.replace(settings, connections=self.settings.connections)
        self.pacer.limits = settings.limits

    def wake(self) -> None:
        """New mail, a new sign-in, or shutdown: workers look at the queue again.

        Safe from any thread: asyncio.Event is not, so a call from another thread (the
        writer, a console handler's worker) is handed to the engine's loop."""
        loop = self._loop
        if loop is None or _on_loop(loop):
            self._wake.set()
        elif not loop.is_closed():
            loop.call_soon_threadsafe(self._wake.set)

    async def _nap(self, seconds: float) -> None:
        """Sleep up to *seconds*, or less when woken."""
        if self._wake.is_set():
            self._wake.clear()
            return
        waker = asyncio.ensure_future(self._wake.wait())
        sleeper = asyncio.ensure_future(self.sleep(max(seconds, 0.0)))
        await asyncio.wait([waker, sleeper], return_when=asyncio.FIRST_COMPLETED)
        for task in (waker, sleeper):
            task.cancel()
        self._wake.clear()

    # -- workers --------------------------------------------------------------------------
    def _connections_allowed(self) -> int:
        if self.clock() < self._single_until:
            return 1
        return self.settings.connections

    async def _worker(self, index: int) -> None:
        upstream: UpstreamConnection | None = None
        idle_since = self.clock()
        try:
            while not self._stopping:
                if self.signin_needed or index >= self._connections_allowed():
                    upstream = await _close(upstream)
                    await self._nap(self.settings.housekeeping_interval)
                    continue
                claimed = await self.db(
                    self.queue.claim, self.clock(), self.owner, self.settings.lease, 1
                )
                if not claimed:
                    if (
                        upstream is not None
                        and self.clock() - idle_since >= self.settings.idle_close
                    ):
                        upstream = await _close(upstream)
                    await self._nap(await self._until_due())
                    continue
                try:
                    upstream = await self._deliver(claimed[0], upstream)
                except Exception:
                    # A bug must not kill the worker and leave the message leased for
                    # good: log it, and retry the message later like a 4xx.
                    log.exception("message %s: unexpected error while delivering", claimed[0].id)
                    upstream = await _close(upstream)
                    failure = await self._failed(claimed[0], INTERNAL, "internal error")
                    await self._apply(claimed[0], failure)
                idle_since = self.clock()
        finally:
            await _close(upstream)

    async def _until_due(self) -> float:
        # Other processes change the queue without waking us (`mailgate queue retry`,
        # `release`): look again at least every housekeeping interval, so their changes
        # take effect within seconds rather than after the next due time.
        next_due = await self.db(self.queue.next_due)
        wait = self.settings.housekeeping_interval if next_due is None else next_due - self.clock()
        return min(max(wait, 0.05), self.settings.idle_close, self.settings.housekeeping_interval)

    async def _housekeeping(self) -> None:
        while not self._stopping:
            await self._nap(self.settings.housekeeping_interval)
            with contextlib.suppress(Exception):
                recovered = await self.db(self.queue.recover, self.clock())
                if recovered:
                    self.wake()
                await self._check_sign_in()

    async def _check_sign_in(self) -> None:
        if not self.signin_needed:
            return
        identity = await self.identity()
        if identity is None or identity.generation == self._generation:
            return
        self.signin_needed = False
        now = self.clock()
        released = await self.db(self.queue.release, None, now, "signed in; released", SIGN_IN_HOLD)
        await self._event(
            "info", "resumed", f"Signed in: delivery resumed, {released} message(s) released."
        )
        self.wake()

    # -- one message ----------------------------------------------------------------------
    async def _deliver(
        self, claimed: Claimed, upstream: UpstreamConnection | None
    ) -> UpstreamConnection | None:
        identity = await self.identity()
        if identity is None:
            await self._hold_for_sign_in(
                claimed, "there is no account to send as yet (configure the provider)"
            )
            return await _close(upstream)
        prepared = prepare(
            claimed.data,
            claimed.envelope_from,
            self.settings.policy,
            identity.sender_address,
            identity.allowed,
        )
        unwritten = Unwritten()
        if prepared.notes and claimed.attempts == 0:
            unwritten.notes.append("; ".join(prepared.notes))
        for part in split_recipients(
            list(claimed.pending), self.settings.limits.recipients_per_message
        ):
            if not await self._pace(claimed, len(part), unwritten):
                return upstream
            upstream, failure = await self._submit(claimed, prepared, part, upstream, unwritten)
            if failure is not None and failure.decision.fate is not Fate.RETRY_NOW:
                await self._write(claimed, unwritten)
                await self._apply(claimed, failure)
                return upstream
        await self._finish(claimed, "sent", unwritten)
        return upstream

    async def _write(self, claimed: Claimed, unwritten: Unwritten) -> None:
        outcomes, notes = unwritten.take()
        if outcomes or notes:
            await self.db(self.queue.record, claimed.id, outcomes, notes, self.clock())

    async def _pace(self, claimed: Claimed, recipients: int, unwritten: Unwritten) -> bool:
        # One worker at a time from "when may I send" to "recorded": otherwise two workers
        # sleep until the same free slot and both take it (31 a minute, which Exchange delays).
        async with self._pacing:
            while True:
                now = self.clock()
                at = self.pacer.earliest(now, recipients)
                if at - now > MAX_PACING_NAP:
                    until = time.strftime("%H:%M:%S", time.localtime(at))
                    note = f"waiting for Exchange's sending limits until {until}"
                    await self._write(claimed, unwritten)
                    await self.db(self.queue.defer, claimed.id, now, at, None, note, False)
                    return False
                if at <= now:
                    self.pacer.record(now, recipients)
                    return True
                await self.sleep(at - now)

    async def _submit(
        self,
        claimed: Claimed,
        prepared: Prepared,
        part: list[str],
        upstream: UpstreamConnection | None,
        unwritten: Unwritten,
    ) -> tuple[UpstreamConnection | None, Failure | None]:
        """Send one transaction. Returns the connection to keep and, on failure, what to do."""
        try:
            # No RSET before a message on a reused connection: the reply to the end of
            # DATA ends the transaction (RFC 5321 section 4.1.1.4), and the client resets
            # after any failure before DATA (dropping the connection if that RSET fails),
            # so a connected upstream is always between transactions. Saves a round trip.
            if upstream is None or not upstream.connected:
                upstream = await self.open_upstream()
            result = await upstream.send(prepared.envelope_from, part, prepared.data)
        except SubmissionError as error:
            failure = await self._failed(claimed, error.classification, str(error.reply or ""))
            session = error.stage in _SESSION_STAGES
            failure = dataclasses.replace(failure, session=session)
        except IdentityError as error:
            problem = error.problem
            kind = ReplyKind.AUTH if holds_mail(problem) else ReplyKind.NETWORK
            cls = Classification(
                kind, f"{problem.title}. {problem.explanation}", problem.what_to_do
            )
            failure = await self._failed(claimed, cls, problem.code)
        except OSError as error:
            cls = Classification(
                ReplyKind.NETWORK,
                f"Network error talking to the server: {error.strerror or error}.",
                "",
            )
            failure = await self._failed(claimed, cls, "network error")
        else:
            await self._record(result, unwritten)
            return upstream, None
        if failure.decision.drop_connection:
            upstream = await _close(upstream)
        return upstream, failure

    async def _record(self, result: SendResult, unwritten: Unwritten) -> None:
        unwritten.outcomes += [(a, "sent", str(result.reply)) for a in result.accepted]
        for address, reply in result.refused.items():
            if reply.code >= 500:
                unwritten.outcomes.append((address, "failed", str(reply)))
        self.delivered += 1 if result.accepted else 0
        if self._upstream_down:
            self._upstream_down = False
            await self._event("info", "upstream_up", "The upstream server accepts mail again.")

    async def _failed(self, claimed: Claimed, cls: Classification, reply: str) -> Failure:
        decision = decide(
            cls,
            claimed.attempts,
            self.clock(),
            claimed.received_at,
            self.settings.max_lifetime,
            self.draw(),
        )
        log.warning("message %s: %s (%s)", claimed.id, cls.summary, reply)
        return Failure(decision, cls, reply)

    async def _apply(self, claimed: Claimed, failure: Failure) -> None:
        decision, cls, reply = failure.decision, failure.classification, failure.reply
        now = self.clock()
        text = f"{reply} — {cls.summary} {cls.advice}".strip()
        if decision.single_connection_until is not None:
            self._single_until = decision.single_connection_until
            await self._event(
                "warning",
                "throttled",
                f"Exchange refused a connection: {cls.summary} Using one connection for a while.",
            )
        if decision.fate is Fate.HOLD:
            await self._hold_for_sign_in(claimed, text, decision.hold_all)
        elif decision.fate is Fate.FAIL:
            await self._fail_all(claimed, reply, f"failed: {cls.summary} {cls.advice}")
        else:
            assert decision.next_at is not None
            await self.db(
                self.queue.defer,
                claimed.id,
                now,
                decision.next_at,
                reply,
                f"deferred: {text}",
                decision.counts_as_attempt,
            )
            if (cls.kind is ReplyKind.NETWORK or failure.session) and not self._upstream_down:
                self._upstream_down = True
                await self._event(
                    "warning",
                    "upstream_down",
                    f"Cannot reach the upstream server: {cls.summary} "
                    "Mail waits in the queue and is retried.",
                )

    async def _hold_for_sign_in(self, claimed: Claimed, why: str, hold_all: bool = True) -> None:
        now = self.clock()
        identity = await self.identity()
        self._generation = identity.generation if identity else None
        first = not self.signin_needed
        self.signin_needed = True
        await self.db(self.queue.put_back, claimed.id, now, f"held: {why}", SIGN_IN_HOLD)
        if hold_all:  # a sign-in is not per message: every waiting message needs it too
            await self.db(self.queue.hold, None, now, SIGN_IN_HOLD)
        if first:
            await self._event(
                "error",
                "sign_in_needed",
                f"All mail is held: {why}. Sign in (mailgate login, or the console's "
                "sign-in page); delivery resumes by itself.",
            )

    async def _fail_all(self, claimed: Claimed, reply: str, note: str) -> None:
        # Only recipients still pending are touched: those sent in earlier parts stay sent.
        outcomes = [(address, "failed", reply) for address in claimed.pending]
        await self._finish(claimed, note, Unwritten(outcomes))

    async def _finish(self, claimed: Claimed, note: str, unwritten: Unwritten) -> None:
        now = self.clock()
        outcomes, notes = unwritten.take()
        state = await self._complete(claimed, outcomes, notes, now, note)
        if state in (State.SENT, State.FAILED):
            await self._bounce_failed(claimed)
        if state is State.QUEUED:
            self.wake()

    async def _complete(
        self,
        claimed: Claimed,
        outcomes: list[tuple[str, str, str]],
        notes: list[str],
        now: float,
        note: str,
    ) -> State:
        """Write a delivery's result. Exchange may already have taken the message, so a
        failure to record it must not lead to sending it again: try the write a few times
        before giving up (the lease then returns it, and at-least-once allows a duplicate)."""
        for attempt in range(1, COMPLETE_TRIES):
            try:
                state: State = await self.db(
                    self.queue.complete, claimed.id, outcomes, notes, now, None, note
                )
                return state
            except Exception:
                log.exception("could not record the result of message %s; retrying", claimed.id)
                await self.sleep(attempt)
        last: State = await self.db(
            self.queue.complete, claimed.id, outcomes, notes, now, None, note
        )
        return last

    async def _bounce_failed(self, claimed: Claimed) -> None:
        info = await self.db(self.queue.get, claimed.id)
        if info is None:
            return
        failed = [r for r in info.recipients if r.state == "failed"]
        if not failed:
            return
        await self._event(
            "error",
            "message_failed",
            f"Message {claimed.id} from {claimed.envelope_from or '<>'} could not be delivered to "
            f"{', '.join(r.address for r in failed)}: {failed[0].reply}",
            claimed.id,
        )
        if not bounce.should_bounce(claimed.envelope_from):
            return
        identity = await self.identity()
        report_from = identity.sender_address if identity else claimed.envelope_from
        report = bounce.build_bounce(
            claimed.data,
            claimed.envelope_from,
            [
                bounce.FailedRecipient(
                    r.address, r.reply or "", enhanced_status(r.reply) or "5.0.0", ""
                )
                for r in failed
            ],
            reporting_host=self.settings.reporting_host,
            remote_host=self.settings.remote_host,
            report_from=report_from,
            arrival=claimed.received_at,
            now=self.clock(),
        )
        dsn = Incoming(
            envelope_from="",  # the null reverse-path: no report about a report (RFC 5321 4.5.5)
            rcpt_tos=(claimed.envelope_from,),
            data=report.as_bytes(),
            client="mailgate",
            subject="Undelivered Mail Returned to Sender",
        )
        bounce_id = await self.db(self.queue.accept, dsn, self.clock())
        await self.db(
            self.queue.note,
            claimed.id,
            self.clock(),
            f"bounce report queued as message {bounce_id}",
        )
        self.wake()

    async def _event(self, level: str, kind: str, text: str, message_id: int | None = None) -> None:
        # add_event logs it too (mailgate.events), so it is not logged here a second time.
        await self.db(self.queue.add_event, self.clock(), level, kind, text, message_id)


#: Steps where a refusal is about the whole session, not the message (RFC 5321 3.1, 4.1.1.1).
_SESSION_STAGES = frozenset({"connect", "EHLO", "HELO", "STARTTLS"})


async def _close(upstream: UpstreamConnection | None) -> UpstreamConnection | None:
    """Close quietly (the connection may be broken already); always returns None."""
    if upstream is not None:
        with contextlib.suppress(Exception):
            await upstream.close()
    return None
