"""The delivery engine against a scripted upstream, on a fake clock (no real waiting)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from mailgate.db.migrate import upgrade
from mailgate.db.writer import Writer
from mailgate.gateway.delivery import (
    SIGN_IN_HOLD,
    DeliveryEngine,
    DeliverySettings,
    SenderIdentity,
    UpstreamConnection,
)
from mailgate.gateway.headers import first_value
from mailgate.gateway.queue import QueueStore, State
from mailgate.gateway.queue_schema import Incoming
from mailgate.identity.errors import TokenError
from mailgate.identity.errors import classify as classify_identity
from mailgate.submission.client import SendResult
from mailgate.submission.errors import SubmissionError, SubmissionNetworkError
from mailgate.submission.replies import Classification, Reply, ReplyKind, classify, parse_reply
from tests.bounds import HANG

SENDER = "scanner@contoso.com"
DATA = b"From: MFP <mfp@printer.local>\r\nSubject: scan\r\n\r\nbody\r\n"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.now += seconds
        await asyncio.sleep(0.001)


@dataclass
class Sent:
    at: float
    mail_from: str
    rcpts: list[str]
    data: bytes


@dataclass
class FakeServer:
    clock: FakeClock
    sent: list[Sent] = field(default_factory=list)
    #: Replies to give instead of accepting, consumed in order ("connect:..." fails the connect).
    script: list[str] = field(default_factory=list)
    connections: int = 0
    open_now: int = 0
    max_open: int = 0
    resets: int = 0

    def next_failure(self, stage: str) -> SubmissionError | None:
        if not self.script or not self.script[0].startswith(stage + ":"):
            return None
        text = self.script.pop(0).split(":", 1)[1]
        if text == "network":
            return SubmissionNetworkError(
                Classification(ReplyKind.NETWORK, "Connection refused.", "Check the network."),
                stage=stage,
            )
        reply = parse_reply(text)
        return SubmissionError(classify(reply), reply, stage=stage)


class FakeUpstream:
    def __init__(self, server: FakeServer) -> None:
        self.server = server
        self._connected = True

    @property
    def connected(self) -> bool:
        return self._connected

    async def send(self, mail_from: str, rcpt_tos: list[str], data: bytes) -> SendResult:
        failure = self.server.next_failure("send")
        if failure is not None:
            raise failure
        self.server.sent.append(Sent(self.server.clock(), mail_from, list(rcpt_tos), data))
        reply = Reply(250, ("2.0.0 OK <ABC> [Hostname=BY1PR10CA0041]",))
        return SendResult(reply, "ABC", "BY1", tuple(rcpt_tos), {}, (), len(data))

    async def reset(self) -> Reply:
        self.server.resets += 1
        return Reply(250, ("2.0.0 Resetting",))

    async def close(self) -> None:
        if self._connected:
            self._connected = False
            self.server.open_now -= 1


@dataclass
class Harness:
    queue: QueueStore
    engine: DeliveryEngine
    server: FakeServer
    clock: FakeClock
    identity: list[SenderIdentity | None]

    def accept(self, rcpts: list[str] | None = None, sender: str = "mfp@printer.local") -> int:
        mid = self.queue.accept(
            Incoming(sender, tuple(rcpts or ["a@fabrikam.test"]), DATA), self.clock()
        )
        self.engine.wake()
        return mid

    async def until(self, condition: Callable[[], bool], limit: float = HANG) -> None:
        """Poll the queue (state lives in SQLite, so there is no event to wait on)."""
        async with asyncio.timeout(limit):
            while not condition():  # noqa: ASYNC110
                await asyncio.sleep(0.01)

    def states(self) -> dict[str, int]:
        return {k: v for k, v in self.queue.counts().items() if v}

    async def engine_ran(self, passes: int = 2) -> None:
        """Until the engine has been round its loop *passes* housekeeping intervals: the
        fake clock moves only when its workers nap, so this is progress, not wall time."""
        until = self.clock() + passes * self.engine.settings.housekeeping_interval
        await self.until(lambda: self.clock() >= until)


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[Harness]:
    clock = FakeClock()
    server = FakeServer(clock)
    queue = QueueStore(upgrade(create_engine(f"sqlite:///{tmp_path / 'q.db'}")))
    db = Writer()
    identity: list[SenderIdentity | None] = [SenderIdentity(SENDER, generation=1.0)]

    async def open_upstream() -> UpstreamConnection:
        if server.script and server.script[0].startswith("refresh:"):
            # A refusal of the token refresh: {"error", "error_codes"} as Microsoft sends.
            error, code = server.script.pop(0).split(":")[1:]
            body = {"error": error, "error_codes": [int(code)] if code else []}
            raise TokenError(classify_identity(body))
        failure = server.next_failure("connect")
        if failure is not None:
            raise failure
        server.connections += 1
        server.open_now += 1
        server.max_open = max(server.max_open, server.open_now)
        return FakeUpstream(server)

    async def current_identity() -> SenderIdentity | None:
        return identity[0]

    settings = DeliverySettings(housekeeping_interval=1.0, reporting_host="gw.test")
    engine = DeliveryEngine(
        queue,
        db,
        open_upstream,
        current_identity,
        settings,
        clock=clock,
        sleep=clock.sleep,
        draw=lambda: 0.5,
    )
    await engine.start()
    yield Harness(queue, engine, server, clock, identity)
    await engine.stop(grace=5)
    db.close()


async def test_delivers_with_sender_rewritten(harness: Harness) -> None:
    mid = harness.accept(["a@fabrikam.test", "b@fabrikam.test"])
    await harness.until(lambda: harness.states() == {"sent": 1})
    [sent] = harness.server.sent
    assert sent.mail_from == SENDER
    assert sent.rcpts == ["a@fabrikam.test", "b@fabrikam.test"]
    assert first_value(sent.data, "From") == f"MFP <{SENDER}>"
    assert first_value(sent.data, "Reply-To") == "MFP <mfp@printer.local>"
    # Stored exactly as received: rewriting happens on the way out only.
    assert harness.queue.body(mid) == DATA
    assert any("Reply-To" in text for _, text in harness.queue.history(mid))


async def test_connections_are_reused_and_capped_at_three(harness: Harness) -> None:
    for _ in range(20):
        harness.accept()
    await harness.until(lambda: harness.states() == {"sent": 20})
    assert len(harness.server.sent) == 20
    assert harness.server.max_open <= 3
    assert harness.server.connections <= 3
    # The end-of-DATA reply ends each transaction: no RSET round trip between messages.
    assert harness.server.resets == 0


async def test_pacing_never_exceeds_thirty_a_minute(harness: Harness) -> None:
    for _ in range(75):
        harness.accept()
    await harness.until(lambda: harness.states() == {"sent": 75})
    times = sorted(s.at for s in harness.server.sent)
    for start in times:
        assert sum(1 for t in times if start <= t < start + 60) <= 30
    # ... and it does not dawdle either: 75 messages take a little over two minutes.
    assert times[-1] - times[0] < 3 * 60


async def test_more_than_500_recipients_are_split(harness: Harness) -> None:
    rcpts = [f"r{i}@fabrikam.test" for i in range(1201)]
    harness.accept(rcpts)
    await harness.until(lambda: harness.states() == {"sent": 1})
    assert [len(s.rcpts) for s in harness.server.sent] == [500, 500, 201]


@pytest.mark.parametrize(
    ("script", "held", "words"),
    [
        ("refresh:invalid_client:7000218", True, "Allow public client flows"),
        ("refresh:invalid_grant:53003", True, "Conditional Access"),
        ("refresh:unauthorized_client:700016", True, "client ID"),
        ("refresh:temporarily_unavailable:", False, "unavailable"),
    ],
)
async def test_refresh_configuration_faults_hold_with_the_fix(
    harness: Harness, script: str, held: bool, words: str
) -> None:
    harness.server.script = [script]
    mid = harness.accept()
    kind = "sign_in_needed" if held else "upstream_down"
    await harness.until(lambda: any(e.kind == kind for e in harness.queue.events()))
    info = harness.queue.get(mid)
    assert info is not None
    assert harness.engine.signin_needed is held
    events = {e.kind: e.text for e in harness.queue.events()}
    if held:
        assert words in events["sign_in_needed"]
        assert "upstream_down" not in events
    else:
        assert info.attempts == 1
        assert words in events["upstream_down"]


async def test_auth_failure_holds_everything_until_sign_in(harness: Harness) -> None:
    harness.server.script = ["connect:535 5.7.3 Authentication unsuccessful [BY1 2026 08DC]"]
    harness.accept()
    await harness.until(lambda: [e.kind for e in harness.queue.events()] == ["sign_in_needed"])
    assert harness.states() == {"held": 1}
    assert harness.engine.signin_needed
    second = harness.accept()
    await harness.engine_ran()
    info = harness.queue.get(second)
    assert info is not None
    assert info.state in (State.QUEUED, State.HELD)
    assert harness.server.sent == []
    assert [e.kind for e in harness.queue.events()] == ["sign_in_needed"]
    # A new sign-in (a new generation) releases the held mail.
    harness.identity[0] = SenderIdentity(SENDER, generation=2.0)
    await harness.until(lambda: harness.states() == {"sent": 2})
    assert not harness.engine.signin_needed
    assert harness.queue.events()[0].kind == "resumed"


async def test_manual_hold_survives_a_sign_in(harness: Harness) -> None:
    harness.engine.signin_needed = True
    mid = harness.accept()
    harness.queue.hold(mid, harness.clock(), "held by the administrator")
    harness.engine.signin_needed = False
    await harness.engine_ran()
    info = harness.queue.get(mid)
    assert info is not None
    assert info.held_reason != SIGN_IN_HOLD
    assert info.state is State.HELD


async def test_send_as_denied_fails_and_bounces_to_the_sender(harness: Harness) -> None:
    harness.server.script = [
        "send:554 5.2.252 SendAsDenied; scanner@contoso.com not allowed to send as mfp@printer.local; "
        "STOREDRV.Submission.Exception:SendAsDeniedException.MapiExceptionSendAsDenied"
    ]
    mid = harness.accept(sender="user@contoso.com")
    await harness.until(lambda: harness.states() == {"failed": 1, "sent": 1})
    info = harness.queue.get(mid)
    assert info is not None
    assert info.state is State.FAILED
    [bounce] = harness.server.sent
    assert bounce.rcpts == ["user@contoso.com"]
    assert bounce.mail_from == SENDER
    assert b"multipart/report" in bounce.data
    assert b"5.2.252" in bounce.data
    assert "message_failed" in [e.kind for e in harness.queue.events()]


async def test_no_bounce_for_the_null_sender(harness: Harness) -> None:
    harness.server.script = ["send:552 5.3.4 Message size exceeds fixed maximum message size"]
    harness.accept(sender="")
    await harness.until(lambda: harness.states() == {"failed": 1})
    await harness.engine_ran()
    assert harness.server.sent == []
    assert harness.states() == {"failed": 1}  # no report was queued either


async def test_network_fault_defers_then_delivers(harness: Harness) -> None:
    harness.server.script = ["connect:network", "connect:network"]
    mid = harness.accept()
    await harness.until(lambda: harness.states() == {"sent": 1})
    info = harness.queue.get(mid)
    assert info is not None
    assert info.attempts == 2
    kinds = [e.kind for e in harness.queue.events()]
    assert kinds == ["upstream_up", "upstream_down"]


async def test_throttle_uses_one_connection(harness: Harness) -> None:
    harness.server.script = [
        "send:432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending "
        "for more information. [Hostname=BY1]"
    ]
    harness.accept()
    await harness.until(lambda: harness.states() == {"sent": 1})
    before = harness.server.max_open
    harness.server.max_open = harness.server.open_now
    for _ in range(10):
        harness.accept()
    await harness.until(lambda: harness.states() == {"sent": 11})
    assert before <= 3
    assert harness.server.max_open == 1
    assert "throttled" in [e.kind for e in harness.queue.events()]


async def test_wake_from_another_thread_is_handed_to_the_loop(harness: Harness) -> None:
    # asyncio.Event is not thread-safe; in debug mode asyncio raises when another thread
    # schedules on the loop directly, which the console's worker threads used to do.
    asyncio.get_running_loop().set_debug(True)
    harness.queue.accept(Incoming("mfp@printer.local", ("a@fabrikam.test",), DATA), harness.clock())
    await asyncio.to_thread(harness.engine.wake)
    await harness.until(lambda: harness.states() == {"sent": 1})
