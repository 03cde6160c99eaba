"""CPU time and resident memory of a process tree, from /proc (Linux), sampled in a thread.

Every system under test is measured the same way: the sum over the tree rooted at its
main pid (Postfix's master and its smtpd/cleanup/qmgr/smtp children, mailgate's serve,
emailproxy), CPU = user + system ticks of the live processes plus what their reaped
children used (cutime/cstime), peak RSS = the largest sum of VmRSS seen by the sampler.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: int) -> tuple[int, float, int] | None:
    """(ppid, cpu seconds incl. reaped children, rss bytes) of one process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    # fields[0] is field 3 (state): ppid=4, utime=14, stime=15, cutime=16, cstime=17, rss=24
    ppid = int(fields[1])
    cpu = sum(int(fields[i]) for i in (11, 12, 13, 14)) / _TICK
    return ppid, cpu, int(fields[21]) * _PAGE


def tree(root: int) -> dict[int, tuple[float, int]]:
    """{pid: (cpu seconds, rss bytes)} for *root* and all its descendants."""
    stats: dict[int, tuple[int, float, int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _stat(int(entry))
            if found is not None:
                stats[int(entry)] = found
    keep = {root} if root in stats else set()
    grew = True
    while grew:
        grew = False
        for pid, (ppid, _, _) in stats.items():
            if ppid in keep and pid not in keep:
                keep.add(pid)
                grew = True
    return {pid: (stats[pid][1], stats[pid][2]) for pid in keep}


class Sampler:
    """Peak summed RSS of a process tree, sampled every *interval* s, and its CPU use
    between start() and stop()."""

    def __init__(self, root: int, interval: float = 0.2) -> None:
        self.root = root
        self.interval = interval
        self.peak_rss = 0
        self._cpu_start = 0.0
        self.cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _sample(self) -> float:
        now = tree(self.root)
        self.peak_rss = max(self.peak_rss, sum(rss for _, rss in now.values()))
        return sum(cpu for cpu, _ in now.values())

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self._sample()

    def start(self) -> Sampler:
        self._cpu_start = self._sample()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()
        self.cpu = self._sample() - self._cpu_start
