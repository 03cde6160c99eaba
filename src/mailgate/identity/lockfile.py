"""A lock file shared by every mailgate process using one data directory.

Two `mailgate send` runs, the service and a `mailgate login` may all want to touch the
token cache at once. Microsoft rotates the refresh token on every refresh, so two
processes refreshing together would each store a different token and waste a refresh;
the lock makes load-decide-refresh-save one step across processes. ``fcntl.flock`` locks
are per open file, so two holders in one process (two threads) exclude each other too,
and the kernel drops the lock if a holder dies.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created 0600 if missing). Blocks; call from a thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
