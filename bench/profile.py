"""Profile `mailgate serve` under one bench load with py-spy (sampling, from outside).

    .venv/bin/python bench/profile.py ingest    # 8 clients x 2 KB for 10 s
    .venv/bin/python bench/profile.py large     # 10 clients x 25 MB at once
    .venv/bin/python bench/profile.py relay     # 8 clients x 50 KB, delivering (8 connections)
    .venv/bin/python bench/profile.py ingest 1 50   # ingest or relay with CLIENTS and SIZE in KB

Prints the functions with the most samples (self and inclusive, all threads: the event
loop and the queue's writer thread) and keeps the collapsed stacks (flame-graph input)
in bench/results/profile-<load>.txt.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import loadgen  # noqa: E402
import systems  # noqa: E402


def summarize(collapsed: Path, top: int = 18) -> str:
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        count = int(count_text)
        frames = [f.split(" (")[0] + " (" + f.split(" (")[-1] for f in stack.split(";")]
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            inclusive[frame] += count
    lines = [f"{total} samples (all threads; idle threads are not sampled)", "", "self:"]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in own.most_common(top)]
    lines += ["", "inclusive (mailgate, aiosmtpd, sqlalchemy, sqlite3 frames):"]
    interesting = ("mailgate", "aiosmtpd", "sqlalchemy", "sqlite3", "asyncio")
    picked = [(f, n) for f, n in inclusive.most_common() if any(k in f for k in interesting)]
    lines += [f"  {100 * n / total:5.1f}%  {f}" for f, n in picked[:top]]
    return "\n".join(lines)


def main(load: str, clients: int = 8, size_kb: int | None = None) -> int:
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    root = Path(tempfile.mkdtemp(prefix="mailgate-profile-"))
    root.chmod(0o755)
    suffix = "" if size_kb is None else f"-{clients}x{size_kb}k"
    out = BENCH / "results" / f"profile-{load}{suffix}.txt"
    out.parent.mkdir(exist_ok=True)
    sim = systems.Sim(root / "sim")
    try:
        sim.scenario(limits=False)
        relay = load == "relay"
        connections = str(min(clients, 20))
        settings = {"delivery.connections": connections, "delivery.messages_per_minute": "10000"}
        gate = systems.Mailgate(sim, root, settings if relay else {}, signed_in=relay)
        try:
            warm = loadgen.make_message(1024, sender=sim.address)
            asyncio.run(loadgen.run_load("127.0.0.1", gate.port, 1, warm, 0))
            time.sleep(0.5)
            duration = 10 if load != "large" else 20
            recorder = subprocess.Popen(  # noqa: S603
                [py_spy, "record", "--pid", str(gate.pid), "--duration", str(duration),
                 "--rate", "200", "--format", "raw", "--output", str(out), "--threads"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            time.sleep(1.0)
            if load == "large":
                message = loadgen.make_message(25 * 1024 * 1024)
                got = asyncio.run(loadgen.run_load("127.0.0.1", gate.port, 10, message, 0))
            else:
                size = 50 * 1024 if relay else 2048  # issue 20: 8 clients x 50 KB
                size = size if size_kb is None else size_kb * 1024
                message = loadgen.make_message(size, sender=sim.address)
                seconds = duration - 2.0
                got = asyncio.run(
                    loadgen.run_load("127.0.0.1", gate.port, clients, message, seconds)
                )
            recorder.wait()
            p50 = 1000 * got.percentile(50)
            print(f"{load}: {got.sent} sent, {got.rate:.1f} msg/s, p50 {p50:.0f} ms")
        finally:
            gate.stop()
    finally:
        sim.stop()
        shutil.rmtree(root, ignore_errors=True)
    print(summarize(out))
    return 0


if __name__ == "__main__":
    args = sys.argv[1:]
    load = args[0] if args else "ingest"
    sys.exit(
        main(load, int(args[1]) if len(args) > 1 else 8, int(args[2]) if len(args) > 2 else None)
    )
