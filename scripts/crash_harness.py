#!/usr/bin/env python3
"""Crash harness: kill -9 `mailgate serve` under load, N rounds, and count what survived.

    .venv/bin/python scripts/crash_harness.py --rounds 20 --messages 4000

Theory of operation. One simulated Microsoft cloud (SimulatorThread, limits off) and one
data directory configured and signed in with the CLI, as an administrator does it, with
pacing raised (`delivery.messages_per_minute 10000`). Each round starts `serve --listen
127.0.0.1:0`, lets several smtplib clients (threads) send numbered messages at it, and kills
the process with SIGKILL after a random time (sometimes while intake is in full swing,
sometimes while only delivery is under way). A message counts as *accepted* only when its
DATA got a 250; a client cut off before that drops the message (it never re-sends it, so any
copy in the mailbox is the gateway's doing). After each kill the queue database is read as
the next `serve` will find it: messages still in state "sending" were *in flight* (Exchange
may have said 250 before we recorded it) and are the only ones allowed to arrive twice.

At the end one last `serve` delivers what is left and is stopped with SIGTERM; then every
accepted message must be in the simulator's mailbox exactly once, or twice if it was in
flight at a kill. The figures are printed (and with --json written as one JSON line); the
exit status is 0 only if nothing was lost and no duplicate is unexplained.
"""

from __future__ import annotations

import argparse
import json
import queue
import random
import re
import shutil
import smtplib
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: reuse the e2e helpers
    sys.path.insert(0, str(ROOT))

from tests.gateway.e2e_helpers import (  # noqa: E402
    DEVICE,
    SCANNER,
    Mailgate,
    Serve,
    mail,
    wait_until,
)

from mailgate.config.paths import db_path  # noqa: E402
from mailgate.sim.server import SimulatorThread  # noqa: E402

_SUBJECT = re.compile(rb"^Subject: (\S+)\r?$", re.M)


@dataclass
class Report:
    rounds: int = 0
    kills: int = 0
    sent_attempts: int = 0
    accepted: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    unexplained_duplicates: int = 0
    in_flight_at_kills: int = 0
    delivered_without_250: int = 0
    seconds: float = 0.0
    lost_subjects: list[str] = field(default_factory=list)
    unexplained: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.unexplained_duplicates == 0

    def text(self) -> str:
        return (
            f"rounds {self.rounds}, kills {self.kills}: accepted {self.accepted}, "
            f"delivered {self.delivered}, lost {self.lost}, duplicated {self.duplicated} "
            f"(in flight at the kills: {self.in_flight_at_kills}; unexplained duplicates: "
            f"{self.unexplained_duplicates}); {self.sent_attempts} messages offered, "
            f"{self.delivered_without_250} delivered without a 250 (cut off at a kill); "
            f"{self.seconds:.0f} s"
        )


class Mailbox:
    """The simulator's mailbox, counted by Subject, read incrementally (it grows to thousands)."""

    def __init__(self, sim: SimulatorThread) -> None:
        self.sim = sim
        self.seen = 0
        self.copies: Counter[str] = Counter()
        self.wrong_sender: list[str] = []

    def refresh(self) -> Counter[str]:
        with self.sim.state.lock:
            new = self.sim.state.messages[self.seen :]
        for stored in new:
            head = stored.data.split(b"\r\n\r\n", 1)[0]
            found = _SUBJECT.search(head)
            subject = found.group(1).decode() if found else ""
            self.copies[subject] += 1
            if stored.upn != SCANNER:
                self.wrong_sender.append(subject)
        self.seen += len(new)
        return self.copies


class Load:
    """Client threads sending numbered messages to one serve until stopped."""

    def __init__(self, port: int, label: str, counter: _Numbers, clients: int) -> None:
        self.port = port
        self.label = label
        self.numbers = counter
        self.stop = threading.Event()
        self.accepted: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.accepted_count = 0  # only grows; read without a lock for the kill trigger
        self.offered: queue.SimpleQueue[str] = queue.SimpleQueue()
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(30)

    def _client(self) -> None:
        while not self.stop.is_set():
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                    client.ehlo("printer.local")
                    while not self.stop.is_set():
                        number = self.numbers.take()
                        if number is None:
                            return
                        subject = f"{self.label}-{number:06d}"
                        self.offered.put(subject)
                        client.sendmail(DEVICE, ["someone@fabrikam.com"], mail(subject))
                        self.accepted.put(subject)
                        self.accepted_count += 1
            except (OSError, smtplib.SMTPException):
                # The gateway died under us (or said 4xx): this message got no 250. Wait for
                # the next round rather than hammer a dead port.
                self.stop.wait(0.2)


class _Numbers:
    """Message numbers handed out to clients, up to a total."""

    def __init__(self, total: int = 0) -> None:
        self.total = total
        self.next = 0
        self.lock = threading.Lock()

    def extend(self, more: int) -> None:
        with self.lock:
            self.total += more

    def take(self) -> int | None:
        with self.lock:
            if self.next >= self.total:
                return None
            self.next += 1
            return self.next

    @property
    def left(self) -> int:
        with self.lock:
            return self.total - self.next


def _drain(q: queue.SimpleQueue[str]) -> list[str]:
    items = []
    while not q.empty():
        items.append(q.get())
    return items


def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    """Poll every 5 ms up to *timeout* (a kill a little late is still a kill)."""
    deadline = time.monotonic() + timeout
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.005)


def _accepted_at_least(load: Load, count: int) -> Callable[[], bool]:
    return lambda: load.accepted_count >= count


def in_flight(data_dir: Path) -> set[str]:
    """Subjects of messages leased to a delivery worker, as the database was left by a kill."""
    uri = f"file:{db_path(data_dir)}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=30) as conn:
        rows = conn.execute("SELECT subject FROM queue_messages WHERE state = 'sending'").fetchall()
    return {str(row[0]) for row in rows}


def active_count(data_dir: Path) -> int:
    uri = f"file:{db_path(data_dir)}?mode=ro"
    with sqlite3.connect(uri, uri=True, timeout=30) as conn:
        (count,) = conn.execute(
            "SELECT count(*) FROM queue_messages WHERE state IN "
            "('queued', 'deferred', 'held', 'sending')"
        ).fetchone()
    return int(count)


def run(
    rounds: int,
    messages: int,
    clients: int = 6,
    min_up: float = 0.5,
    max_up: float = 4.0,
    seed: int | None = None,
    workdir: Path | None = None,
    final_timeout: float = 300.0,
    verbose: bool = False,
) -> Report:
    """The harness itself; see the module docstring. Returns the figures."""
    rng = random.Random(seed)  # noqa: S311 - kill timing, not cryptography
    report = Report()
    started = time.monotonic()
    own_tmp = workdir is None
    base = Path(tempfile.mkdtemp(prefix="mailgate-crash-")) if workdir is None else workdir
    label = f"crash{rng.randrange(16**6):06x}"
    numbers = _Numbers()
    accepted: set[str] = set()
    offered: set[str] = set()
    allowed_twice: set[str] = set()
    try:
        with SimulatorThread(profile="global") as sim:
            sim.set_scenario(limits=False, poll_interval=1)
            mailbox = Mailbox(sim)
            mailgate = Mailgate(base / "data")
            mailgate.configure(sim)
            mailgate.login(sim)
            mailgate.ok("config", "set", "delivery.messages_per_minute", "10000")
            # Spread the messages over the rounds: each round's intake is cut short by a kill.
            for number in range(1, rounds + 1):
                budget = -(-(messages - numbers.total) // (rounds + 1 - number))
                numbers.extend(budget)
                serve = Serve.start(mailgate, base)
                load = Load(serve.port, label, numbers, clients)
                load.start()
                if rng.random() < 0.6:
                    # In the middle of intake (and of delivery: it starts at once).
                    kill_after = rng.randint(1, max(1, budget))
                    why = f"after {kill_after} of {budget} accepted"
                    _wait(_accepted_at_least(load, kill_after), max_up * 5)
                else:
                    # At a random moment: intake may be over, delivery under way or done.
                    up = rng.uniform(min_up, max_up)
                    why = f"after {up:.1f} s"
                    time.sleep(up)
                serve.kill()
                load.finish()
                report.rounds, report.kills = number, report.kills + 1
                accepted.update(_drain(load.accepted))
                offered.update(_drain(load.offered))
                flying = in_flight(mailgate.data_dir)
                allowed_twice |= flying
                if verbose:
                    print(
                        f"round {number}: killed {why}, accepted {len(accepted)}, "
                        f"in flight at the kill {len(flying)}, left {numbers.left}",
                        flush=True,
                    )
            # The last life: deliver the rest (and whatever load is left), stop politely.
            serve = Serve.start(mailgate, base)
            if numbers.left:
                load = Load(serve.port, label, numbers, clients)
                load.start()
                wait_until(lambda: numbers.left == 0, final_timeout, "the rest of the load")
                load.finish()
                accepted.update(_drain(load.accepted))
                offered.update(_drain(load.offered))

            def all_done() -> bool:
                copies = mailbox.refresh()
                return all(copies[s] for s in accepted) and active_count(mailgate.data_dir) == 0

            wait_until(all_done, final_timeout, "every accepted message to be delivered")
            if serve.stop() != 0:
                raise RuntimeError(f"serve did not stop cleanly:\n{serve.log()}")
            copies = mailbox.refresh()
            if mailbox.wrong_sender:
                raise RuntimeError(f"sent by another mailbox: {mailbox.wrong_sender[:5]}")
    finally:
        if own_tmp:
            shutil.rmtree(base, ignore_errors=True)
    report.sent_attempts = len(offered)
    report.accepted = len(accepted)
    report.in_flight_at_kills = len(allowed_twice)
    report.lost_subjects = sorted(s for s in accepted if copies[s] == 0)
    report.lost = len(report.lost_subjects)
    report.delivered = sum(1 for s in accepted if copies[s] > 0)
    twice = {s: n for s, n in copies.items() if s.startswith(label) and n > 1}
    report.duplicated = len(twice)
    report.unexplained = sorted(s for s, n in twice.items() if n > 2 or s not in allowed_twice)
    report.unexplained_duplicates = len(report.unexplained)
    report.delivered_without_250 = sum(
        1 for s, n in copies.items() if s.startswith(label) and n and s not in accepted
    )
    report.seconds = time.monotonic() - started
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=20, help="kill -9 rounds (default 20)")
    parser.add_argument("--messages", type=int, default=4000, help="messages offered in all")
    parser.add_argument("--clients", type=int, default=6, help="SMTP client threads")
    parser.add_argument("--min-up", type=float, default=0.5, help="shortest life before a kill")
    parser.add_argument("--max-up", type=float, default=4.0, help="longest life before a kill")
    parser.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep files here (logs, db)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON last")
    parser.add_argument("-q", "--quiet", action="store_true", help="no per-round lines")
    args = parser.parse_args(argv)
    if args.workdir is not None:
        args.workdir.mkdir(parents=True, exist_ok=True)
    report = run(
        args.rounds,
        args.messages,
        clients=args.clients,
        min_up=args.min_up,
        max_up=args.max_up,
        seed=args.seed,
        workdir=args.workdir,
        verbose=not args.quiet,
    )
    print(report.text())
    if report.lost_subjects:
        print("lost:", ", ".join(report.lost_subjects[:20]))
    if report.unexplained:
        print("unexplained duplicates:", ", ".join(report.unexplained[:20]))
    if args.json:
        figures = {k: v for k, v in asdict(report).items() if not isinstance(v, list)}
        print(json.dumps({**figures, "ok": report.ok}))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
