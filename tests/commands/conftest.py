"""Drive the real `mailgate` command line against the simulator, as an administrator would.

Every command runs as a subprocess (`python -m mailgate --data-dir DIR ...`), so what is
tested is what a terminal sees: exit status, stdout and stderr. Each module shares one
simulator and one configured data directory that every test copies, so tests do not couple
through the store; the simulator's switches are reset before each test.

A :class:`Transcript` keeps every output of every command and every token and device code
the simulators issued; after each test none of those secrets may appear in any output or in
any file of a data directory (tokens encrypted at rest).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from click.testing import CliRunner

from mailgate.cli import main
from mailgate.sim.server import SimulatorThread
from mailgate.sim.state import SimState
from tests.bounds import HANG

#: A well-formed client ID: the simulator treats every GUID as a registered app.
CLIENT_ID = "0a1b2c3d-4e5f-4789-abcd-ef0123456789"
#: Default directory of the global cloud (sim/directory.py).
SCANNER = "scanner@contoso.com"
JSMITH_UPN = "jsmith@contoso.onmicrosoft.com"
JSMITH_ADDRESS = "john.smith@contoso.com"
LEGACY = "legacy@contoso.com"

#: Exit codes of `mailgate send` (commands/send.py).
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_TEMPORARY = 0, 1, 2, 75

COMMAND_TIMEOUT = HANG


def _environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILGATE_")}
    # The login's code line must reach us before the process ends.
    env["PYTHONUNBUFFERED"] = "1"
    return env


@dataclass
class Transcript:
    """What every command printed, and every secret the simulators handed out."""

    outputs: list[str] = field(default_factory=list)
    secrets: set[str] = field(default_factory=set)
    states: list[SimState] = field(default_factory=list)
    data_dirs: list[Path] = field(default_factory=list)
    processes: list[subprocess.Popen[str]] = field(default_factory=list)

    def watch(self, state: SimState) -> None:
        if all(s is not state for s in self.states):
            self.states.append(state)

    def harvest(self) -> None:
        """Remember the tokens issued so far (before a test revokes and forgets them)."""
        for state in self.states:
            with state.lock:
                self.secrets.update(state.access_tokens)
                self.secrets.update(state.refresh_tokens)
                self.secrets.update(state.device_codes)

    def record(self, *texts: str) -> None:
        self.outputs.extend(texts)
        self.harvest()

    def leaks(self) -> list[str]:
        """Where a secret shows: command outputs and every file of the data directories."""
        self.harvest()
        found: list[str] = []
        for number, text in enumerate(self.outputs):
            if any(secret in text for secret in self.secrets):
                found.append(f"output #{number}: {text[:200]!r}")
        for data_dir in self.data_dirs:
            for path in data_dir.rglob("*"):
                if not path.is_file():
                    continue
                raw = path.read_bytes()
                if any(secret.encode() in raw for secret in self.secrets):
                    found.append(f"file {path}")
        return found

    def stop_processes(self) -> None:
        """Kill what a failed test left running (only our own children), close the pipes."""
        for process in self.processes:
            if process.poll() is None:
                process.kill()
            process.wait(timeout=HANG)
            for pipe in (process.stdout, process.stderr):
                if pipe is not None:
                    pipe.close()
        self.processes.clear()


@dataclass
class Login:
    """A `mailgate login` subprocess: read its code, approve it, read how it ended."""

    process: subprocess.Popen[str]
    transcript: Transcript
    as_json: bool
    shown: list[str] = field(default_factory=list)

    def _stdout(self) -> IO[str]:
        assert self.process.stdout is not None
        return self.process.stdout

    def code(self) -> dict[str, Any]:
        """The `code` event (JSON mode) or the code and link parsed from the human text."""
        if self.as_json:
            line = self._stdout().readline()
            self.shown.append(line)
            assert line, "login printed no code event"
            event: dict[str, Any] = json.loads(line)
            assert event["event"] == "code", event
            return event
        found: dict[str, Any] = {}
        while "user_code" not in found:
            line = self._stdout().readline()
            assert line, f"login ended before showing a code: {''.join(self.shown)!r}"
            self.shown.append(line)
            words = line.split()
            if words[:2] == ["1.", "open"]:
                found["verification_uri"] = words[2]
            elif words[:2] == ["2.", "enter"]:
                found["user_code"] = words[2]
        return found

    def finish(self, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        # Not communicate(): on POSIX it reads the raw pipe and would lose what readline()
        # already buffered in the text wrapper.
        assert self.process.stderr is not None
        stderr = self.process.stderr
        errors: list[str] = []
        reader = threading.Thread(target=lambda: errors.append(stderr.read()), daemon=True)
        watchdog = threading.Timer(timeout, self.process.kill)
        reader.start()
        watchdog.start()
        try:
            out = self._stdout().read()
            self.process.wait(timeout)
            reader.join(timeout)
        finally:
            watchdog.cancel()
            self._stdout().close()
            stderr.close()
        err = "".join(errors)
        stdout = "".join(self.shown) + out
        self.transcript.record(stdout, err)
        return subprocess.CompletedProcess(self.process.args, self.process.returncode, stdout, err)

    def events(self, result: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
        return [json.loads(line) for line in result.stdout.splitlines() if line.strip()]


@dataclass
class Cli:
    """`mailgate --data-dir DIR ...` as a user types it."""

    data_dir: Path
    transcript: Transcript

    def argv(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "mailgate", "--data-dir", str(self.data_dir), *args]

    def run(self, *args: str, timeout: float = COMMAND_TIMEOUT) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args),
            capture_output=True,
            text=True,
            env=_environment(),
            timeout=timeout,
            check=False,
        )
        self.transcript.record(result.stdout, result.stderr)
        return result

    def ok(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = self.run(*args)
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def json(self, *args: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.ok(*args, "--json").stdout)
        return data

    def quick_json(self, *args: str) -> dict[str, Any]:
        """The same command in this process (click's CliRunner): for looking, not testing."""
        unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("MAILGATE_")}
        result = CliRunner().invoke(
            main, ["--data-dir", str(self.data_dir), *args, "--json"], env=unset
        )
        self.transcript.record(result.output)
        assert result.exit_code == 0, (args, result.output)
        data: dict[str, Any] = json.loads(result.output)
        return data

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            self.argv(*args),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=_environment(),
        )
        self.transcript.processes.append(process)
        return process

    def start_login(self, as_json: bool = True) -> Login:
        args = ["login", "--json"] if as_json else ["login", "--no-qr"]
        return Login(self.start(*args), self.transcript, as_json)

    def login(self, sim: SimulatorThread, upn: str) -> dict[str, Any]:
        """Sign in as *upn*, approving the code on the simulator; the `signed_in` event."""
        login = self.start_login()
        code = login.code()
        assert sim.sign_in(code["user_code"], upn, True).ok
        result = login.finish()
        assert result.returncode == 0, (result.stdout, result.stderr)
        events = login.events(result)
        assert events[-1]["event"] == "signed_in", events
        return events[-1]

    def copy(self, target: Path) -> Cli:
        """The same data directory under *target* (key file and mode included)."""
        shutil.copytree(self.data_dir, target)
        self.transcript.data_dirs.append(target)
        return Cli(target, self.transcript)

    def send(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run("send", "--subject", f"test {time.time_ns()}", *args)


def configure(
    cli: Cli, sim: SimulatorThread, provider: str = "exchange-online", client_id: str = CLIENT_ID
) -> Cli:
    """`init`, `config provider ... --server <sim> --host <sim>`, trust the simulator's CA."""
    cli.transcript.watch(sim.state)
    cli.transcript.data_dirs.append(cli.data_dir)
    cli.ok("init")
    cli.ok(
        "config",
        "provider",
        provider,
        "--client-id",
        client_id,
        "--server",
        f"127.0.0.1:{sim.smtp_port}",
        "--host",
        sim.idp_hostport,
    )
    cli.ok("config", "set", "network.ca_bundle", str(sim.ca_path))
    return cli


def prepare(sim: SimulatorThread, **scenario: Any) -> SimulatorThread:
    """A healthy tenant that asks clients to poll every second, plus *scenario*."""
    sim.reset()
    sim.set_scenario(poll_interval=1, **scenario)
    return sim


@pytest.fixture(scope="module")
def transcript() -> Iterator[Transcript]:
    record = Transcript()
    yield record
    record.stop_processes()


@pytest.fixture(autouse=True)
def _no_secret_leaks(transcript: Transcript) -> Iterator[None]:
    """After every test: no token or device code in any output or data-directory file."""
    yield
    transcript.stop_processes()
    assert transcript.leaks() == []


@pytest.fixture(scope="module")
def module_sim() -> Iterator[SimulatorThread]:
    """One simulated global cloud for the whole module (tests find their mail by subject)."""
    with SimulatorThread(profile="global") as running:
        yield running


@pytest.fixture
def cloud(module_sim: SimulatorThread) -> Iterator[SimulatorThread]:
    """The module's simulator with every switch back to healthy and 1-second polling."""
    yield prepare(module_sim)
    module_sim.reset()


@pytest.fixture(scope="module")
def configured_template(
    module_sim: SimulatorThread, transcript: Transcript, tmp_path_factory: pytest.TempPathFactory
) -> Cli:
    directory = tmp_path_factory.mktemp("configured") / "data"
    return configure(Cli(directory, transcript), module_sim)


@pytest.fixture
def configured(configured_template: Cli, cloud: SimulatorThread, tmp_path: Path) -> Cli:
    """A data directory set up for the simulator's global cloud; nobody signed in."""
    return configured_template.copy(tmp_path / "data")
