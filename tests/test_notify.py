"""sd_notify(3) as `serve` speaks it: the decisions in tables, the datagrams for real, and
`serve` itself telling a listening socket READY, WATCHDOG and STOPPING."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from mailgate.notify import Notifier, message, ready_status, socket_address, watchdog_interval
from tests.bounds import HANG, SOCKET
from tests.gateway.e2e_helpers import Mailgate, environment, stop_process, wait_ready


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, None),
        ("", None),
        ("/run/systemd/notify", "/run/systemd/notify"),
        ("@/org/systemd/notify/1", b"\0/org/systemd/notify/1"),
        ("relative/path", None),
        ("vsock:2:1234", None),
    ],
)
def test_socket_address(value: str | None, expected: str | bytes | None) -> None:
    assert socket_address(value) == expected


@pytest.mark.parametrize(
    ("env", "pid", "expected"),
    [
        ({}, 100, None),
        ({"WATCHDOG_USEC": "60000000"}, 100, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "100"}, 100, 30.0),
        ({"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "99"}, 100, None),
        ({"WATCHDOG_USEC": "0"}, 100, None),
        ({"WATCHDOG_USEC": "soon"}, 100, None),
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "x"}, 100, None),
    ],
)
def test_watchdog_interval(env: dict[str, str], pid: int, expected: float | None) -> None:
    assert watchdog_interval(env, pid) == expected


def test_message_is_one_assignment_per_line() -> None:
    assert message(READY="1", STATUS="two\nlines") == b"READY=1\nSTATUS=two lines\n"


def test_ready_status_names_addresses_and_state() -> None:
    bound = [("127.0.0.1", 2525, False), ("127.0.0.1", 465, True)]
    assert ready_status(bound, True) == "listening on 127.0.0.1:2525, 127.0.0.1:465; delivering"
    assert "holding mail" in ready_status(bound, False)


def _listen(address: str | bytes) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(SOCKET)
    return sock


def test_notifier_sends_to_a_path_socket(tmp_path: Path) -> None:
    path = str(tmp_path / "notify")
    with _listen(path) as sock:
        assert Notifier.from_environ({"NOTIFY_SOCKET": path}).ready("up")
        assert sock.recv(4096) == b"READY=1\nSTATUS=up\n"


def test_notifier_sends_to_an_abstract_socket() -> None:
    name = f"@mailgate-test-{os.getpid()}-{time.monotonic_ns()}"
    with _listen(b"\0" + name[1:].encode()) as sock:
        assert Notifier.from_environ({"NOTIFY_SOCKET": name}).stopping()
        assert sock.recv(4096).startswith(b"STOPPING=1\n")


def test_notifier_without_a_manager_sends_nothing(tmp_path: Path) -> None:
    notifier = Notifier.from_environ({"WATCHDOG_USEC": "1000000"})
    assert not notifier.enabled
    assert notifier.watchdog is None
    assert not notifier.ready("up")


def test_a_vanished_socket_is_logged_not_raised(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    notifier = Notifier.from_environ({"NOTIFY_SOCKET": str(tmp_path / "gone")})
    assert not notifier.ready("up")
    assert "could not notify the service manager" in caplog.text


# -- serve speaks the protocol ---------------------------------------------------------------
@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[str, socket.socket]]:
    path = str(tmp_path / "notify.sock")
    with _listen(path) as sock:
        yield path, sock


def _receive(sock: socket.socket, timeout: float) -> list[dict[str, str]]:
    """Every datagram that arrives within *timeout* seconds, parsed."""
    received = []
    deadline = time.monotonic() + timeout
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            data = sock.recv(4096)
        except TimeoutError:
            break
        received.append(dict(line.split("=", 1) for line in data.decode().splitlines()))
    return received


def _wait_for(sock: socket.socket, key: str, timeout: float) -> list[dict[str, str]]:
    """Datagrams up to and including the first that sets *key*."""
    seen: list[dict[str, str]] = []
    deadline = time.monotonic() + timeout
    while not any(key in d for d in seen):
        left = deadline - time.monotonic()
        if left <= 0:
            raise AssertionError(f"no {key} within {timeout} s; got {seen}")
        sock.settimeout(left)
        data = sock.recv(4096)
        seen.append(dict(line.split("=", 1) for line in data.decode().splitlines()))
    return seen


@pytest.mark.slow
def test_serve_notifies_ready_watchdog_and_stopping(
    tmp_path: Path, notify_socket: tuple[str, socket.socket]
) -> None:
    path, sock = notify_socket
    mailgate = Mailgate(tmp_path / "data")
    mailgate.ok("init")
    ready = tmp_path / "ready.json"
    log_path = tmp_path / "serve.log"
    # 0.4 s watchdog: a ping every 0.2 s.
    env = {**environment(), "NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"}
    argv = mailgate.argv("serve", "--listen", "127.0.0.1:0", "--ready-file", str(ready))
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*argv, "--no-console"], stdout=log, stderr=subprocess.STDOUT, env=env
        )
    try:
        before_ready = _wait_for(sock, "READY", HANG)
        # READY comes only once the listener is up: it accepts a connection right away.
        info = wait_ready(process, ready, log_path)
        with socket.create_connection(("127.0.0.1", info["smtp"][0]["port"]), 10) as smtp:
            assert smtp.recv(512).startswith(b"220 ")
        assert before_ready[-1]["READY"] == "1"
        assert before_ready[-1]["STATUS"].startswith("listening on 127.0.0.1:")
        pings = [d for d in _receive(sock, 3.0) if d.get("WATCHDOG") == "1"]
        assert len(pings) >= 3, pings  # ~15 expected in 3 s; a loaded machine may lag
        process.send_signal(signal.SIGTERM)
        assert "STOPPING" in _wait_for(sock, "STOPPING", HANG)[-1]
        assert process.wait(HANG) == 0, log_path.read_text()
    finally:
        stop_process(process, HANG)
