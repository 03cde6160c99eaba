"""mailgate's benchmark: ingest, relay, burst, large messages and tokens, side by side with
the ceilings (aiosmtpd that discards, Postfix's smtp-sink), Postfix itself and the peer
(email-oauth2-proxy), all on 127.0.0.1 in one run. See docs/PERFORMANCE.md.

    .venv/bin/python bench/run.py            # full run, about 15-20 minutes
    .venv/bin/python bench/run.py --smoke    # a subset, under 2 minutes

Installs nothing; bench/setup.sh installs what it needs. Prints Markdown tables (also
written to bench/results/) and exits non-zero when a row could not be filled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
KB, MB = 1024, 1024 * 1024
MISSING = "?"


def _reexec_in_venv() -> None:
    """`python3 bench/run.py` from the repo root: use the project's venv when it exists."""
    try:
        import mailgate  # noqa: F401
    except ImportError:
        venv_python = REPO / ".venv" / "bin" / "python"
        in_venv = Path(sys.prefix).resolve() == venv_python.parent.parent.resolve()
        if venv_python.exists() and not in_venv:
            os.execv(venv_python, [str(venv_python), __file__, *sys.argv[1:]])  # noqa: S606


def missing_prerequisites() -> list[str]:
    from systems import postfix_binary

    problems = []
    for module in ("mailgate", "aiosmtpd", "aiosmtplib", "requests", "cryptography"):
        try:
            __import__(module)
        except ImportError:
            problems.append(f"Python module {module!r} (pip install -e '.[bench]')")
    if not Path(sys.executable).with_name("emailproxy").exists():
        problems.append("emailproxy in the venv (pip install -e '.[bench]')")
    for binary in ("postfix", "smtp-sink", "smtp-source", "postsuper"):
        if postfix_binary(binary) is None:
            problems.append(f"Postfix's {binary} (bench/setup.sh apt-installs postfix)")
    from peer_postfix import plugin_missing

    if plugin_missing():
        problems.append(str(plugin_missing()))
    if os.geteuid() != 0:
        problems.append("root: a private Postfix instance (master) must start as root")
    return problems


# -- the report ---------------------------------------------------------------------------
@dataclass
class Table:
    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([_cell(c) for c in cells])

    def unfilled(self) -> int:
        return sum(1 for row in self.rows for cell in row if cell in ("", MISSING, "nan"))

    def markdown(self) -> str:
        lines = [f"### {self.title}", ""]
        lines.append("| " + " | ".join(self.columns) + " |")
        lines.append("|" + "|".join("---" for _ in self.columns) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        lines += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def _cell(value: object) -> str:
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return MISSING
        return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"
    return str(value)


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 and not math.isnan(a) else MISSING


def ms(seconds: float) -> float:
    return seconds * 1000


@dataclass
class Targets:
    table: Table = field(
        default_factory=lambda: Table(
            "Targets (issues 7 and 20)", ["target", "figure", "goal", "result"]
        )
    )

    def check(self, name: str, figure: float, goal: float, shown: str, higher: bool) -> None:
        met = figure >= goal if higher else figure <= goal
        verdict = "met" if met else "NOT met"
        if math.isnan(figure):
            verdict = MISSING
        self.table.add(name, shown, ("≥ " if higher else "≤ ") + _cell(goal), verdict)


class Stoppable(Protocol):
    port: int

    def stop(self) -> None: ...


@contextmanager
def running(factory: Callable[[], Any]) -> Iterator[Any]:
    system = factory()
    try:
        yield system
    finally:
        system.stop()


# -- phases -------------------------------------------------------------------------------
@dataclass
class Plan:
    smoke: bool
    clients: tuple[int, ...]
    sizes: tuple[int, ...]
    cell_seconds: float
    source_messages: int
    relay_total: dict[int, int]
    proxy_seconds: float
    large_clients: int
    large_size: int
    token_messages: int
    token_lifetime: int

    @classmethod
    def make(cls, smoke: bool) -> Plan:
        if smoke:
            return cls(
                True,
                (1, 8),
                (2 * KB, 200 * KB),
                1.0,
                400,
                {1: 100, 8: 300},
                4.0,
                10,
                25 * MB,
                1200,
                15,
            )
        return cls(
            False,
            (1, 8, 32, 128),
            (2 * KB, 200 * KB, 5 * MB),
            4.0,
            3000,
            {1: 1000, 8: 4000},
            12.0,
            10,
            25 * MB,
            10_000,
            60,
        )


def size_label(size: int) -> str:
    return f"{size // MB} MB" if size >= MB else f"{size // KB} KB"


def ingest(sim: Any, root: Path, plan: Plan, targets: Targets) -> list[Table]:
    import loadgen
    import systems

    table = Table(
        "Ingest: asyncio client, one message per session, 250 only after the message is durable"
        " (aiosmtpd and smtp-sink: not durable, ceilings)",
        [
            "clients",
            "size",
            "system",
            "msg/s",
            "p50 ms",
            "p99 ms",
            "failed",
            "vs Postfix",
            "vs aiosmtpd",
            "vs smtp-sink",
        ],
    )
    source = Table(
        "Ingest with Postfix's smtp-source as the load generator (C; 8 sessions, 2 KB,"
        " one message per session; latency = mean by Little's law)",
        ["sessions", "messages", "system", "msg/s", "mean ms", "vs Postfix", "vs aiosmtpd"],
    )
    names = ("mailgate serve", "Postfix (queue, fsync)", "aiosmtpd (discard)", "smtp-sink")
    postfix = systems.Postfix(root / "postfix")
    sink = systems.AiosmtpdSink()
    smtp_sink = systems.SmtpSink()
    try:
        for size in plan.sizes:
            message = loadgen.make_message(size)
            # A fresh gateway per size; nobody signed in, so delivery holds the first
            # message and then waits for a sign-in: only ingest is measured.
            with running(lambda: systems.Mailgate(sim, root, {}, signed_in=False)) as gate:
                servers = (gate, postfix, sink, smtp_sink)
                for server in servers:  # warm-up (and mailgate's hold)
                    asyncio.run(loadgen.run_load("127.0.0.1", server.port, 1, message, 0))
                time.sleep(0.5)
                for clients in plan.clients:
                    results = {}
                    for name, server in zip(names, servers, strict=True):
                        results[name] = asyncio.run(
                            loadgen.run_load(
                                "127.0.0.1", server.port, clients, message, plan.cell_seconds
                            )
                        )
                    base = {n: r.rate for n, r in results.items()}
                    for name, r in results.items():
                        table.add(
                            clients,
                            size_label(size),
                            name,
                            r.rate,
                            ms(r.percentile(50)),
                            ms(r.percentile(99)),
                            r.failed,
                            ratio(r.rate, base[names[1]]),
                            ratio(r.rate, base[names[2]]),
                            ratio(r.rate, base[names[3]]),
                        )
                    if clients == 8:
                        mine = base[names[0]]
                        label = size_label(size)
                        targets.check(
                            f"ingest 8 clients {label} vs Postfix",
                            mine / base[names[1]],
                            1.0,
                            ratio(mine, base[names[1]]),
                            True,
                        )
                        targets.check(
                            f"ingest 8 clients {label} vs aiosmtpd",
                            mine / base[names[2]],
                            0.6,
                            ratio(mine, base[names[2]]),
                            True,
                        )
                if size == plan.sizes[0]:
                    rates = {}
                    for name, server in zip(names, servers, strict=True):
                        r = loadgen.smtp_source(
                            "127.0.0.1", server.port, 8, plan.source_messages, size
                        )
                        rates[name] = r
                    for name, r in rates.items():
                        source.add(
                            8,
                            plan.source_messages,
                            name,
                            r.rate,
                            ms(r.percentile(50)),
                            ratio(r.rate, rates[names[1]].rate),
                            ratio(r.rate, rates[names[2]].rate),
                        )
            postfix.clear_queue()
    finally:
        smtp_sink.stop()
        sink.stop()
        postfix.stop()
    table.notes.append(
        "Time to the 250: from connect to the reply after the final '.', per session "
        "(EHLO, MAIL, RCPT, DATA; no pipelining). The load generator runs in the bench "
        "process on the same 2 cores."
    )
    return [table, source]


def _wait_delivered(sim: Any, before: int, count: int, limit: float) -> tuple[int, float]:
    """Wait until the simulator accepted *count* more messages; (delivered, when)."""
    deadline = time.perf_counter() + limit
    delivered = 0
    while time.perf_counter() < deadline:
        delivered = sim.counters()["messages_accepted"] - before
        if delivered >= count:
            break
        time.sleep(0.1)
    return delivered, time.perf_counter()


def relay(sim: Any, root: Path, plan: Plan, targets: Targets) -> list[Table]:
    import loadgen
    import systems

    table = Table(
        "Relay: device -> system -> simulated Exchange (limits off), 2 KB, one message per session",
        [
            "clients",
            "system",
            "messages",
            "accepted msg/s",
            "delivered msg/s",
            "failures",
            "delivered vs direct",
            "delivered vs emailproxy",
        ],
    )
    tokens = sim.device_code_tokens()
    message = loadgen.make_message(2 * KB, sender=sim.address)
    for clients in (1, 8):
        total = plan.relay_total[clients]
        sim.clear_messages()
        direct = asyncio.run(
            loadgen.direct_xoauth2(
                "127.0.0.1",
                sim.smtp_port,
                sim.ca,
                sim.upn,
                str(tokens["access_token"]),
                clients,
                total,
                message,
                sim.address,
            )
        )
        # mailgate: as many upstream connections as clients (Exchange allows 3 per
        # mailbox; the limit is off here), pacing raised to its maximum.
        settings = {"delivery.connections": str(clients), "delivery.messages_per_minute": "10000"}
        sim.clear_messages()
        with running(lambda s=settings: systems.Mailgate(sim, root, s)) as gate:  # type: ignore[misc]
            before = sim.counters()["messages_accepted"]
            start = time.perf_counter()
            got = asyncio.run(
                loadgen.run_load("127.0.0.1", gate.port, clients, message, math.inf, total=total)
            )
            delivered, end = _wait_delivered(sim, before, got.sent, 300)
        mg_delivered = delivered / (end - start)
        mg_failures = got.failed + max(0, got.sent - delivered)
        sim.clear_messages()
        proxy_dir = root / f"emailproxy-{clients}"
        with running(lambda d=proxy_dir: systems.EmailProxy(sim, d, tokens)) as ep:  # type: ignore[misc]
            before = sim.counters()["messages_accepted"]
            start = time.perf_counter()
            prox = asyncio.run(
                loadgen.run_load(
                    "127.0.0.1",
                    ep.port,
                    clients,
                    message,
                    plan.proxy_seconds,
                    auth=ep.auth,
                    sender=sim.address,
                    per_message_limit=120,
                )
            )
            p_delivered, end = _wait_delivered(sim, before, prox.sent, 30)
        ep_delivered = p_delivered / (end - start)
        table.add(
            clients,
            "direct XOAUTH2 (reference)",
            direct.sent,
            direct.rate,
            direct.rate,
            direct.failed,
            "1.00x",
            ratio(direct.rate, ep_delivered),
        )
        table.add(
            clients,
            "mailgate serve",
            got.sent,
            got.rate,
            mg_delivered,
            mg_failures,
            ratio(mg_delivered, direct.rate),
            ratio(mg_delivered, ep_delivered),
        )
        table.add(
            clients,
            "emailproxy",
            prox.sent,
            prox.rate,
            ep_delivered,
            prox.failed + max(0, prox.sent - p_delivered),
            ratio(ep_delivered, direct.rate),
            "1.00x",
        )
        targets.check(
            f"relay delivered, {clients} client(s), vs direct",
            mg_delivered / direct.rate,
            0.8,
            ratio(mg_delivered, direct.rate),
            True,
        )
        if clients == 8:
            targets.check(
                "relay delivered, 8 clients, vs emailproxy",
                mg_delivered / ep_delivered if ep_delivered else math.nan,
                10.0,
                ratio(mg_delivered, ep_delivered),
                True,
            )
    table.notes += [
        "direct: aiosmtplib sessions straight to the simulator, STARTTLS + AUTH XOAUTH2 once "
        "per session, then messages back to back (best case, no storage).",
        "mailgate: accepted = rate of 250s to the clients (durable), delivered = messages "
        "accepted by the simulator / time from first connect to last delivery; "
        "delivery.connections = clients, delivery.messages_per_minute = 10000 (its maximum).",
        "emailproxy: synchronous pass-through, so accepted = delivered; each session does "
        f"AUTH PLAIN at the proxy; runs {plan.proxy_seconds:.0f} s.",
        f"emailproxy's own device flow GETs the devicecode URL: the simulator answers "
        f"HTTP {sim.devicecode_by_get()} (Microsoft documents POST), so its token cache was "
        "pre-seeded (see bench/systems.py EmailProxy).",
    ]
    return [table]


def burst(sim: Any, root: Path, plan: Plan, targets: Targets) -> list[Table]:
    import loadgen
    import systems

    table = Table(
        "Burst: 500 connections opened at once",
        ["system", "setting", "greeted", "what the others got"],
    )
    tokens = sim.device_code_tokens()
    cases: list[tuple[str, str, Callable[[], Any]]] = [
        (
            "mailgate serve",
            "listener.max_connections = 100 (default)",
            lambda: systems.Mailgate(sim, root, {}, signed_in=False),
        ),
        (
            "mailgate serve",
            "listener.max_connections = 1000",
            lambda: systems.Mailgate(
                sim, root, {"listener.max_connections": "1000"}, signed_in=False
            ),
        ),
        (
            "emailproxy",
            "defaults (listen backlog 5)",
            lambda: systems.EmailProxy(sim, root / "emailproxy-burst", tokens),
        ),
    ]
    for name, setting, factory in cases:
        with running(factory) as server:
            got = asyncio.run(loadgen.burst("127.0.0.1", server.port, 500))
        others = ", ".join(f"{n} x {k}" for k, n in got.refused.most_common(3)) or "-"
        table.add(name, setting, f"{got.greeted}/500", others)
        targets.check(
            f"burst greeted: {name}, {setting}", got.greeted, 500, f"{got.greeted}/500", True
        )
    table.notes.append("Greeted = a 220 line within 15 s; all 500 connections stay open meanwhile.")
    return [table]


def large(sim: Any, root: Path, plan: Plan, targets: Targets) -> list[Table]:
    import loadgen
    import systems

    table = Table(
        f"Large messages: {plan.large_clients} clients each send one "
        f"{size_label(plan.large_size)} message at once",
        [
            "system",
            "bytes in flight",
            "RSS before",
            "peak RSS (VmHWM)",
            "sent",
            "wall s",
            "goal: <= 2 x in flight + 150 MB",
        ],
    )
    message = loadgen.make_message(plan.large_size)
    with running(lambda: systems.Mailgate(sim, root, {}, signed_in=False)) as gate:
        asyncio.run(loadgen.run_load("127.0.0.1", gate.port, 1, loadgen.make_message(KB), 0))
        time.sleep(0.5)
        before = systems.memory_kb(gate.pid)["VmRSS"] * KB
        got = asyncio.run(loadgen.run_load("127.0.0.1", gate.port, plan.large_clients, message, 0))
        peak = systems.memory_kb(gate.pid)["VmHWM"] * KB
    in_flight = plan.large_clients * len(message)
    goal = 2 * in_flight + 150 * MB
    table.add(
        "mailgate serve",
        f"{in_flight / MB:.0f} MB",
        f"{before / MB:.0f} MB",
        f"{peak / MB:.0f} MB",
        f"{got.sent}/{plan.large_clients}",
        got.elapsed,
        f"{goal / MB:.0f} MB",
    )
    targets.check(
        "large messages: peak RSS (MB)", peak / MB, goal / MB, f"{peak / MB:.0f} MB", False
    )
    return [table]


def tokens(sim: Any, root: Path, plan: Plan, targets: Targets) -> list[Table]:
    import loadgen
    import systems

    table = Table(
        f"Tokens: 32 concurrent deliveries, {plan.token_messages} messages, access tokens "
        f"living {plan.token_lifetime} s",
        [
            "delivery workers",
            "messages",
            "delivered",
            "wall s",
            "token lifetimes",
            "token requests",
            "refresh grants",
            "refreshes per lifetime",
        ],
    )
    sim.scenario(access_token_lifetime=plan.token_lifetime)
    settings = {"delivery.messages_per_minute": "10000"}
    sim.clear_messages()
    try:
        with running(lambda: systems.Mailgate(sim, root, settings, connections=32)) as gate:
            counters = sim.counters()
            start = time.perf_counter()
            message = loadgen.make_message(2 * KB, sender=sim.address)
            got = asyncio.run(
                loadgen.run_load(
                    "127.0.0.1", gate.port, 8, message, math.inf, total=plan.token_messages
                )
            )
            delivered, end = _wait_delivered(sim, counters["messages_accepted"], got.sent, 600)
            after = sim.counters()
    finally:
        sim.scenario(access_token_lifetime=None)
        sim.clear_messages()
    wall = end - start
    lifetimes = max(1, math.ceil(wall / plan.token_lifetime))
    requests = after["token_requests"] - counters["token_requests"]
    refreshes = after["refresh_grants"] - counters["refresh_grants"]
    table.add(32, got.sent, delivered, wall, lifetimes, requests, refreshes, refreshes / lifetimes)
    table.notes.append(
        "delivery.connections allows at most 20; bench/gateway_proc.py runs serve's own "
        "wiring with the delivery engine rebuilt for 32 workers. Pacing raised to 10000/min "
        "(its maximum), so 10,000 messages take at least a minute."
    )
    targets.check(
        "tokens: refresh grants per token lifetime",
        refreshes / lifetimes,
        1.0,
        f"{refreshes} in {lifetimes} lifetime(s)",
        False,
    )
    return [table]


def compare(sim: Any, root: Path, plan: Plan, targets: Targets) -> list[Table]:
    import compare as side_by_side

    cplan = side_by_side.ComparePlan.make(plan.smoke)
    cells, bursts = side_by_side.measure(sim, root, cplan)
    return side_by_side.tables(cells, bursts, Table, targets)


PHASES = {
    "compare": compare,
    "ingest": ingest,
    "relay": relay,
    "burst": burst,
    "large": large,
    "tokens": tokens,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else "")
    parser.add_argument("--smoke", action="store_true", help="a subset, under two minutes")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run of the side-by-side comparison only (1 and 8 clients, 50 KB)",
    )
    parser.add_argument(
        "--only", choices=sorted(PHASES), action="append", help="run only this phase (repeatable)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    args = parser.parse_args(argv)
    problems = missing_prerequisites()
    if problems:
        print("Missing prerequisites:\n  - " + "\n  - ".join(problems), file=sys.stderr)
        print("Install them with: sudo bench/setup.sh  (from the repository root)", file=sys.stderr)
        return 2
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    import systems

    if args.quick:
        args.smoke, args.only = True, ["compare"]
    plan = Plan.make(args.smoke)
    root = Path(tempfile.mkdtemp(prefix="mailgate-bench-"))
    root.chmod(0o755)  # Postfix's unprivileged processes walk into it
    targets = Targets()
    tables: list[Table] = []
    began = time.perf_counter()
    sim = systems.Sim(root / "sim")
    try:
        sim.scenario(limits=False)
        for name in args.only or list(PHASES):
            phase_start = time.perf_counter()
            print(f"[bench] {name} ...", file=sys.stderr, flush=True)
            try:
                tables += PHASES[name](sim, root, plan, targets)
            except Exception as error:  # reported as an unfilled row; the run goes on
                failed = Table(f"{name}: could not be measured", ["error"])
                failed.add(MISSING)
                failed.notes.append(f"{type(error).__name__}: {error}")
                tables.append(failed)
            print(
                f"[bench] {name} took {time.perf_counter() - phase_start:.0f} s",
                file=sys.stderr,
                flush=True,
            )
    finally:
        sim.stop()
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    tables.append(targets.table)
    header = (
        f"mailgate bench ({'smoke' if plan.smoke else 'full'}), {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}, "
        f"took {time.perf_counter() - began:.0f} s\n\n"
    )
    report = header + "\n".join(t.markdown() for t in tables)
    print(report)
    out = BENCH / "results"
    out.mkdir(exist_ok=True)
    stem = "smoke" if plan.smoke else "full"
    (out / f"{stem}.md").write_text(report)
    (out / f"{stem}.json").write_text(
        json.dumps(
            [{"title": t.title, "columns": t.columns, "rows": t.rows} for t in tables], indent=1
        )
    )
    unfilled = sum(t.unfilled() for t in tables)
    if unfilled:
        print(f"[bench] {unfilled} cell(s) could not be filled", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    _reexec_in_venv()
    sys.path.insert(0, str(BENCH))
    sys.exit(main())
