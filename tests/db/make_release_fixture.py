"""Regenerate tests/db/fixtures/release-0.1.0: a data directory made by the first release.

The migration test (tests/db/test_upgrade.py) upgrades it and delivers its mail, proving
that a gateway installed from the release before schema migrations keeps its queue.

What this does, with nothing but loopback:
1. extracts the release's source (`git archive RELEASE src`) into a temporary directory;
2. with that code (PYTHONPATH), runs its CLI as an administrator would: `init`, `config
   provider` (pointing at 127.0.0.1:9, never contacted: nobody signs in), `device add`;
3. starts its `serve`, sends three messages through the SMTP listener, and waits until its
   delivery engine has held them (no sign-in), then stops it with SIGTERM;
4. writes the database as SQL text (`mailgate.sql`), the secret key (`secret.key`) and the
   time the mail was received (`made_at`) into the fixture directory.

Usage: .venv/bin/python tests/db/make_release_fixture.py [--release 4094ae2] [--out DIR]
The project's virtualenv has what the release needs (its dependencies are a subset).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import smtplib
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
#: The commit the baseline revision (0001) describes: main just before migrations.
RELEASE = "4094ae2"
DEFAULT_OUT = ROOT / "tests" / "db" / "fixtures" / "release-0.1.0"
SUBJECTS = ("legacy-one", "legacy-two", "legacy-three")
CLIENT_ID = "0a1b2c3d-4e5f-4789-abcd-ef0123456789"


def extract(release: str, into: Path) -> Path:
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", release, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into / "src"


class Release:
    def __init__(self, src: Path, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
        self.env["PYTHONPATH"] = str(src)
        self.env["PYTHONUNBUFFERED"] = "1"

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mailgate", "--data-dir", str(self.data_dir), *args]

    def run(self, *args: str, stdin: str = "") -> str:
        done = subprocess.run(
            self.argv(*args), input=stdin, capture_output=True, text=True, env=self.env, timeout=120
        )
        if done.returncode != 0:
            raise SystemExit(f"{args} failed:\n{done.stdout}\n{done.stderr}")
        return done.stdout


def message(subject: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = "Office Printer <mfp@printer.local>"
    mail["To"] = "someone@fabrikam.com"
    mail["Subject"] = subject
    mail.set_content(f"Scanned document {subject}.\n")
    return mail


def wait_for(what: str, check: Callable[[], bool], limit: float = 60.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def queue_mail(release: Release, work: Path) -> None:
    ready = work / "ready.json"
    log = (work / "serve.log").open("wb")
    serve = subprocess.Popen(
        release.argv(
            "serve", "--listen", "127.0.0.1:0", "--ready-file", str(ready), "--no-console"
        ),
        stdout=log,
        stderr=subprocess.STDOUT,
        env=release.env,
    )
    try:
        wait_for("serve to start", ready.exists)
        port = json.loads(ready.read_text())["smtp"][0]["port"]
        with smtplib.SMTP("127.0.0.1", port, timeout=60) as smtp:
            for subject in SUBJECTS:
                smtp.send_message(message(subject))

        def all_held() -> bool:
            listed = json.loads(release.run("queue", "list", "--json"))
            return len(listed) == len(SUBJECTS) and all(m["state"] == "held" for m in listed)

        wait_for("the release to hold the mail (nobody signed in)", all_held)
    finally:
        serve.send_signal(signal.SIGTERM)
        serve.wait(60)
        log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--release", default=RELEASE)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        release = Release(extract(args.release, work), work / "data")
        release.run("init")
        release.run(
            "config", "provider", "exchange-online", "--client-id", CLIENT_ID,
            "--server", "127.0.0.1:9", "--host", "127.0.0.1:9",
        )  # fmt: skip
        release.run("device", "add", "scanner-3f", "--password-stdin", stdin="legacy-pass-1\n")
        made_at = time.time()
        queue_mail(release, work)
        args.out.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(work / "data" / "mailgate.db")
        try:
            dump = "\n".join(db.iterdump()) + "\n"
        finally:
            db.close()
        (args.out / "mailgate.sql").write_text(dump, encoding="utf-8")
        shutil.copyfile(work / "data" / "secret.key", args.out / "secret.key")
        (args.out / "made_at").write_text(f"{made_at:.3f}\n", encoding="utf-8")
        (args.out / "release").write_text(f"{args.release}\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
