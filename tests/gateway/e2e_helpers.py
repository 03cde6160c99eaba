"""Drive `mailgate serve` as a subprocess, with the CLI as an administrator types it.

Used by test_serve_e2e.py: every mailgate command is `python -m mailgate --data-dir DIR ...`
in its own process, `serve` listens on 127.0.0.1 port 0 and says where through
`--ready-file`, and its log goes to a file the tests can read (and measure).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import smtplib
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any

import pytest

from mailgate.config.store import Store
from mailgate.gateway.queue import Event, QueueStore
from mailgate.sim.server import SimulatorThread
from mailgate.sim.state import StoredMessage
from tests.bounds import HANG, SOCKET

#: A well-formed client ID: the simulator treats every GUID as a registered app.
CLIENT_ID = "0a1b2c3d-4e5f-4789-abcd-ef0123456789"
#: The signed-in mailbox of the simulator's global directory (UPN = primary address).
SCANNER = "scanner@contoso.com"
#: What the devices in these tests claim to be.
DEVICE = "mfp@printer.local"

COMMAND_TIMEOUT = HANG
START_TIMEOUT = HANG


def wait_ready(
    process: subprocess.Popen[bytes], ready: Path, log_path: Path, limit: float = START_TIMEOUT
) -> dict[str, Any]:
    """Wait for `serve --ready-file` to write the file; its JSON (addresses, console URL)."""
    deadline = time.monotonic() + limit
    while not ready.exists():
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                process.kill()
            process.wait()
            raise AssertionError(f"serve did not start:\n{log_path.read_text()}")
        time.sleep(0.05)
    info: dict[str, Any] = json.loads(ready.read_text())
    return info


STOP_TIMEOUT = HANG


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    env["PYTHONUNBUFFERED"] = "1"
    return env


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll *predicate* every 0.1 s; fail with *what* after *timeout* seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.1)


@dataclass
class Mailgate:
    """`mailgate --data-dir DIR ...`, with extra global options and an optional command
    prefix for `serve` (e.g. `unshare -m ...` to give it another /etc/resolv.conf)."""

    data_dir: Path
    serve_prefix: list[str] = field(default_factory=list)
    serve_options: list[str] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        argv = [sys.executable, "-m", "mailgate", "--data-dir", str(self.data_dir), *args]
        if args and args[0] == "serve":
            at = argv.index("serve")
            return [*self.serve_prefix, *argv[:at], *self.serve_options, *argv[at:]]
        return argv

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=environment(),
            timeout=timeout,
            check=False,
        )

    def ok(self, *args: str) -> str:
        result = self.run(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.ok(*args, "--json"))

    def queue(self) -> dict[str, dict[str, Any]]:
        """`mailgate queue list --json`, by subject (tests give every message its own)."""
        listed = self.json("queue", "list", "--limit", "100000")
        return {m["subject"]: m for m in listed}

    def configure(self, sim: SimulatorThread) -> None:
        """`init`, provider pointing at the simulator, trust the simulator's CA."""
        self.ok("init")
        self.ok(
            "config",
            "provider",
            "exchange-online",
            "--client-id",
            CLIENT_ID,
            "--server",
            f"127.0.0.1:{sim.smtp_port}",
            "--host",
            sim.idp_hostport,
        )
        self.ok("config", "set", "network.ca_bundle", str(sim.ca_path))

    def login(self, sim: SimulatorThread, upn: str = SCANNER) -> None:
        """`mailgate login --json`, approved on the simulator as *upn*."""
        process = subprocess.Popen(
            self.argv("login", "--json"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=environment(),
        )
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            assert first, f"login printed nothing: {process.communicate()[1]}"
            event = json.loads(first)
            assert event["event"] == "code", event
            assert sim.sign_in(event["user_code"], upn, True).ok
            out, err = process.communicate(timeout=COMMAND_TIMEOUT)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
        assert process.returncode == 0, (first + out, err)
        last = json.loads(out.strip().splitlines()[-1])
        assert last["event"] == "signed_in", last
        assert last["upn"] == upn, last


@dataclass
class Serve:
    """A running `mailgate serve --listen 127.0.0.1:0`."""

    process: subprocess.Popen[bytes]
    port: int
    log_path: Path

    @classmethod
    def start(cls, mailgate: Mailgate, workdir: Path) -> Serve:
        ready = workdir / "serve.ready.json"
        ready.unlink(missing_ok=True)
        log_path = workdir / "serve.log"
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                # No admin console: it would take its fixed default port (8025).
                mailgate.argv(
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    "--ready-file",
                    str(ready),
                    "--no-console",
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment(),
            )
        info = wait_ready(process, ready, log_path)
        assert info["pid"] == process.pid, info
        (listening,) = info["smtp"]
        assert listening["host"] == "127.0.0.1", info
        return cls(process, int(listening["port"]), log_path)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def log_lines(self) -> int:
        return len(self.log().splitlines())

    def stop(self) -> int:
        """SIGTERM, as a service manager stops it; the exit status."""
        return stop_process(self.process, STOP_TIMEOUT)

    def kill(self) -> None:
        """SIGKILL: no chance to clean up."""
        self.process.kill()
        self.process.wait()


def mail(token: str, sender: str = DEVICE, to: str = "someone@fabrikam.com") -> bytes:
    """A message a device would send; *token* is its subject and its Message-ID's left part."""
    message = EmailMessage()
    message["From"] = f"Office Printer <{sender}>"
    message["To"] = to
    message["Subject"] = token
    message["Message-ID"] = make_msgid(token, "printer.local")
    message.set_content(f"Scanned document {token}.\n")
    return message.as_bytes(policy=message.policy.clone(linesep="\r\n"))


def delivered(sim: SimulatorThread) -> list[StoredMessage]:
    with sim.state.lock:
        return list(sim.state.messages)


def delivered_by_subject(sim: SimulatorThread, subjects: set[str]) -> dict[str, list[Any]]:
    """Messages the simulator accepted whose Subject is one of *subjects*, by subject."""
    found: dict[str, list[Any]] = {s: [] for s in subjects}
    for stored in delivered(sim):
        summary = stored.summary()
        if summary["subject"] in found:
            found[summary["subject"]].append(summary)
    return found


def wait_delivered(sim: SimulatorThread, subjects: set[str], timeout: float) -> None:
    def done() -> bool:
        return all(delivered_by_subject(sim, subjects).values())

    wait_until(done, timeout, f"{len(subjects)} message(s) to arrive at the simulator")


def assert_delivered_once(sim: SimulatorThread, subjects: set[str], upn: str = SCANNER) -> None:
    """Every message is in the simulator's mailbox exactly once, sent by *upn*."""
    for subject, copies in delivered_by_subject(sim, subjects).items():
        assert len(copies) == 1, (subject, copies)
        assert copies[0]["upn"] == upn, copies[0]


# -- fixtures for tests that run `serve` against one simulator per module ---------------------
@pytest.fixture(scope="module")
def cloud() -> Iterator[SimulatorThread]:
    with SimulatorThread(profile="global") as running:
        yield running


@pytest.fixture(scope="module")
def template(cloud: SimulatorThread, tmp_path_factory: pytest.TempPathFactory) -> Mailgate:
    """A data directory configured for the simulator; nobody signed in yet."""
    mailgate = Mailgate(tmp_path_factory.mktemp("template") / "data")
    mailgate.configure(cloud)
    return mailgate


def signed_in_copy(template: Mailgate, sim: SimulatorThread, data_dir: Path) -> Mailgate:
    """A copy of *template*'s data directory, signed in with the CLI as scanner@contoso.com."""
    own = Mailgate(data_dir)
    shutil.copytree(template.data_dir, own.data_dir, dirs_exist_ok=True)
    own.login(sim)
    return own


@pytest.fixture
def mailgate(template: Mailgate, sim: SimulatorThread, tmp_path: Path) -> Mailgate:
    """This test's own data directory, signed in as scanner@contoso.com."""
    return signed_in_copy(template, sim, tmp_path / "data")


@pytest.fixture
def servers() -> Iterator[list[Serve]]:
    """Serve processes a test started; any still running at the end are killed."""
    started: list[Serve] = []
    yield started
    for serve in started:
        if serve.process.poll() is None:
            serve.kill()


def start(mailgate: Mailgate, workdir: Path, servers: list[Serve]) -> Serve:
    serve = Serve.start(mailgate, workdir)
    servers.append(serve)
    return serve


def tokens(label: str, count: int) -> list[str]:
    """Unique subjects for *count* messages of one test run."""
    run = uuid.uuid4().hex[:8]
    return [f"{label}-{run}-{i:03d}" for i in range(count)]


def send_all(port: int, subjects: list[str], sender: str = DEVICE) -> None:
    """Several messages over one connection; each DATA must get 250."""
    with smtplib.SMTP("127.0.0.1", port, timeout=SOCKET) as client:
        client.ehlo("printer.local")
        for subject in subjects:
            client.sendmail(sender, ["someone@fabrikam.com"], mail(subject, sender))


def events(mailgate: Mailgate) -> list[Event]:
    with Store.open(mailgate.data_dir) as store:
        return QueueStore(store.engine).events(1000)


def event_kinds(mailgate: Mailgate) -> list[str]:
    return [event.kind for event in events(mailgate)]


@pytest.fixture
def sim(cloud: SimulatorThread) -> Iterator[SimulatorThread]:
    """The module's simulator, healthy, asking sign-ins to poll every second."""
    cloud.reset()
    cloud.set_scenario(poll_interval=1)
    yield cloud
    cloud.reset()


def stop_process(process: subprocess.Popen[bytes], limit: float) -> int:
    """SIGTERM, as a service manager stops it; the exit status (killed if it hangs)."""
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
    try:
        return process.wait(limit)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        raise
