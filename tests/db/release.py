"""The data directory of release 0.1.0 in fixtures/ (made by make_release_fixture.py)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

FIXTURE = Path(__file__).parent / "fixtures" / "release-0.1.0"
#: The subjects of the mail the release accepted and held (nobody had signed in).
SUBJECTS = {"legacy-one", "legacy-two", "legacy-three"}
#: Timestamps of the queue, moved by the fixture's age (see restore()).
_TIMES = {
    "queue_messages": ("received_at", "next_attempt_at"),
    "queue_history": ("at",),
    "events": ("at",),
}


def restore(data_dir: Path, *, shift: bool = True) -> Path:
    """Write the release's database and key into *data_dir*; the database's path.

    With *shift*, the queue's times move forward by the fixture's age, as if the release
    had stopped a moment ago: its mail is then inside the 5-day queue lifetime, however
    long ago the fixture was made, instead of bouncing as expired."""
    data_dir.mkdir(mode=0o700, parents=True)
    key = data_dir / "secret.key"
    key.write_bytes((FIXTURE / "secret.key").read_bytes())
    key.chmod(0o600)
    db = data_dir / "mailgate.db"
    conn = sqlite3.connect(db)
    try:
        conn.executescript((FIXTURE / "mailgate.sql").read_text(encoding="utf-8"))
        if shift:
            age = time.time() - float((FIXTURE / "made_at").read_text())
            with conn:
                for table, columns in _TIMES.items():
                    sets = ", ".join(f"{c} = {c} + ?" for c in columns)
                    conn.execute(f"UPDATE {table} SET {sets}", [age] * len(columns))  # noqa: S608
    finally:
        conn.close()
    db.chmod(0o600)
    return db


def dump(db: Path) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()
