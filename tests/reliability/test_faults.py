"""Faults of the network, of Microsoft's service and of the disk, injected around a real
`mailgate serve`: each one ends with every accepted message delivered exactly once after
recovery, with serve quiet while the fault lasts (bounded CPU time and log lines: no busy
loop) and with something an administrator can read (the events table, the queue, the log).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import smtplib
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailgate.config.paths import db_path
from mailgate.config.store import Store
from mailgate.gateway.queue import QueueStore
from mailgate.sim.server import SimulatorThread
from tests.bounds import HANG, SOCKET
from tests.gateway.e2e_helpers import (
    CLIENT_ID,
    DEVICE,
    Mailgate,
    Serve,
    assert_delivered_once,
    delivered_by_subject,
    events,
    mail,
    send_all,
    signed_in_copy,
    start,
    tokens,
    wait_delivered,
    wait_until,
)
from tests.reliability.fixtures import assert_quiet, measure_quiet

DELIVERY_TIMEOUT = HANG


def wait_state(mailgate: Mailgate, subjects: list[str], state: str, timeout: float = HANG) -> None:
    def reached() -> bool:
        queue = mailgate.queue()
        return all(queue.get(s, {}).get("state") == state for s in subjects)

    wait_until(reached, timeout, f"{len(subjects)} message(s) to be {state}")


def recover_and_deliver(
    mailgate: Mailgate, sim: SimulatorThread, serve: Serve, subjects: list[str]
) -> None:
    """After the fault: retry now (instead of waiting out the backoff), all delivered once."""
    mailgate.ok("queue", "retry", "--all")
    wait_delivered(sim, set(subjects), DELIVERY_TIMEOUT)
    assert_delivered_once(sim, set(subjects))
    wait_state(mailgate, subjects, "sent")
    assert serve.stop() == 0, serve.log()


def history(mailgate: Mailgate, message_id: int) -> list[tuple[float, str]]:
    with Store.open(mailgate.data_dir) as store:
        return QueueStore(store.engine).history(message_id)


def kinds(mailgate: Mailgate) -> list[str]:
    return [event.kind for event in events(mailgate)]


# -- upstream faults: deferred, quiet, an event, delivered after recovery ----------------------
UPSTREAM_FAULTS: dict[str, dict[str, Any]] = {
    "reset-in-the-middle-of-DATA": {"smtp_reset_in_data": True},
    "TLS-handshake-failure": {"smtp_tls_failure": True},
    "421-on-connect": {
        "smtp_connect_reply": "421 4.3.2 Service not available, closing transmission channel"
    },
    "token-endpoint-503": {"token_endpoint": "503", "token_retry_after": 2},
}
#: MSAL answers a repeated token request from its own cache after a 5xx: for Retry-After
#: seconds (2 here), else for 60 s (msal.application: default_throttle_time=60).
MSAL_5XX_THROTTLE = 3.0
#: The event each fault leaves for the admin. A 421 greeting (even with 4.3.2, Exchange's
#: code for its concurrency limit) is the server refusing service, not throttling.
EVENT = dict.fromkeys(UPSTREAM_FAULTS, "upstream_down")
HEALTHY: dict[str, Any] = {
    "smtp_reset_in_data": False,
    "smtp_tls_failure": False,
    "smtp_connect_reply": None,
    "token_endpoint": "ok",
    "token_delay": 0.0,
    "token_retry_after": None,
    "smtp_reply_delay": 0.0,
}


@pytest.mark.parametrize("fault", list(UPSTREAM_FAULTS))
def test_upstream_fault_defers_quietly_and_delivers_after_recovery(
    fault: str, mailgate: Mailgate, sim: SimulatorThread, tmp_path: Path, servers: list[Serve]
) -> None:
    serve = start(mailgate, tmp_path, servers)
    sim.set_scenario(**UPSTREAM_FAULTS[fault])
    if fault.startswith("token"):
        # Exchange no longer takes the access token mailgate holds: it must refresh it.
        with sim.state.lock:
            sim.state.access_tokens.clear()
    subjects = tokens(fault, 3)
    send_all(serve.port, subjects)
    wait_state(mailgate, subjects, "deferred")
    assert_quiet(measure_quiet(serve), serve)
    assert not any(delivered_by_subject(sim, set(subjects)).values())
    queue = mailgate.queue()
    assert all(queue[s]["attempts"] == 1 for s in subjects), queue
    assert all(queue[s]["next_attempt_at"] > time.time() + 10 for s in subjects), queue
    for subject in subjects:  # what `mailgate queue show` tells the admin
        notes = [text for _, text in history(mailgate, queue[subject]["id"])]
        assert any(n.startswith("deferred: ") and len(n) > 30 for n in notes), notes
    assert EVENT[fault] in kinds(mailgate), events(mailgate)

    sim.set_scenario(**HEALTHY)
    if fault.startswith("token"):
        time.sleep(MSAL_5XX_THROTTLE)
    recover_and_deliver(mailgate, sim, serve, subjects)


def test_slow_server_delivers_slowly_without_spinning(
    mailgate: Mailgate, sim: SimulatorThread, tmp_path: Path, servers: list[Serve]
) -> None:
    serve = start(mailgate, tmp_path, servers)
    sim.set_scenario(smtp_reply_delay=0.4)  # ten replies a session: seconds per message
    subjects = tokens("slow", 3)
    send_all(serve.port, subjects)
    assert_quiet(measure_quiet(serve), serve)
    wait_delivered(sim, set(subjects), DELIVERY_TIMEOUT)
    assert_delivered_once(sim, set(subjects))
    wait_state(mailgate, subjects, "sent")
    assert serve.stop() == 0, serve.log()


def test_slow_then_hung_token_endpoint(
    mailgate: Mailgate, sim: SimulatorThread, tmp_path: Path, servers: list[Serve]
) -> None:
    """A token endpoint that takes 3 s is waited for; one that never answers is given up on
    at the HTTP read timeout (30 s), the mail deferred; both end delivered."""
    serve = start(mailgate, tmp_path, servers)
    sim.set_scenario(token_endpoint="slow", token_delay=3.0)
    with sim.state.lock:
        sim.state.access_tokens.clear()
    slow = tokens("token-slow", 1)
    send_all(serve.port, slow)
    wait_delivered(sim, set(slow), DELIVERY_TIMEOUT)

    sim.set_scenario(token_endpoint="timeout")
    with sim.state.lock:
        sim.state.access_tokens.clear()
    hung = tokens("token-timeout", 2)
    send_all(serve.port, hung)
    started = time.monotonic()
    assert_quiet(measure_quiet(serve, 10.0), serve)  # waiting on the socket, not spinning
    wait_state(mailgate, hung, "deferred", timeout=HANG)
    assert time.monotonic() - started >= 20  # the 30 s read timeout, not an early give-up
    assert "upstream_down" in kinds(mailgate)
    sim.set_scenario(**HEALTHY)
    recover_and_deliver(mailgate, sim, serve, hung)
    assert_delivered_once(sim, set(slow))


# -- DNS: the upstream's name resolves nowhere -----------------------------------------------
@pytest.fixture
def no_dns(tmp_path: Path) -> list[str]:
    """A command prefix that runs serve with a resolver on 127.0.0.1 where nothing listens:
    every lookup fails at once and no query leaves the machine."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to give serve its own /etc/resolv.conf")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 127.0.0.1\noptions timeout:1 attempts:1\n")
    probe = subprocess.run(
        ["unshare", "-m", "sh", "-c", f"mount --bind {resolv} /etc/resolv.conf && true"],
        capture_output=True,
        check=False,
    )
    if probe.returncode != 0:
        pytest.skip(f"cannot bind-mount /etc/resolv.conf here: {probe.stderr!r}")
    script = f'mount --bind {resolv} /etc/resolv.conf && exec "$0" "$@"'
    return ["unshare", "-m", "sh", "-c", script]


def provider(mailgate: Mailgate, sim: SimulatorThread, server: str) -> None:
    mailgate.ok(
        "config",
        "provider",
        "exchange-online",
        "--client-id",
        CLIENT_ID,
        "--server",
        server,
        "--host",
        sim.idp_hostport,
    )


def test_dns_failure_defers_and_recovers_when_the_name_is_fixed(
    mailgate: Mailgate,
    sim: SimulatorThread,
    tmp_path: Path,
    servers: list[Serve],
    no_dns: list[str],
) -> None:
    mailgate.serve_prefix = no_dns
    mailgate.serve_options = ["-v"]  # to see "settings changed: applied"
    provider(mailgate, sim, "smtp.mailgate-test.invalid:587")
    serve = start(mailgate, tmp_path, servers)
    subjects = tokens("dns", 2)
    send_all(serve.port, subjects)
    wait_state(mailgate, subjects, "deferred")
    assert_quiet(measure_quiet(serve), serve)
    down = [e for e in events(mailgate) if e.kind == "upstream_down"]
    assert down, events(mailgate)
    assert "mailgate-test.invalid" in serve.log()

    provider(mailgate, sim, f"127.0.0.1:{sim.smtp_port}")
    wait_until(lambda: "settings changed: applied" in serve.log(), 15, "the settings reload")
    recover_and_deliver(mailgate, sim, serve, subjects)


# -- the store: disk full, read-only, locked -----------------------------------------------
@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MB tmpfs (root only; skipped where mounting is not allowed)."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount_point)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr!r}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(disk: Path) -> Path:
    """Fill *disk* to the last byte; the file to remove to free it again."""
    filler = disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (65536, 512, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * size)
    finally:
        os.close(fd)
    return filler


def refused_451(port: int, subject: str, size: int = 0) -> str:
    """Send one message that must be refused with a 4xx; the reply text."""
    data = mail(subject) + (b"x" * 78 + b"\r\n") * (size // 80)
    with smtplib.SMTP("127.0.0.1", port, timeout=SOCKET) as client:
        try:
            client.sendmail(DEVICE, ["someone@fabrikam.com"], data)
        except smtplib.SMTPDataError as error:
            text = error.smtp_error
            return f"{error.smtp_code} {text.decode() if isinstance(text, bytes) else text}"
    raise AssertionError(f"{subject} got a 250 though the store could not take it")


# A message larger than the WAL can take in place: it must grow a file on the full disk.
BIG = 2 * 1024 * 1024


def test_disk_full_gives_451_loses_nothing_and_recovers(
    template: Mailgate,
    sim: SimulatorThread,
    tmp_path: Path,
    servers: list[Serve],
    small_disk: Path,
) -> None:
    mailgate = signed_in_copy(template, sim, small_disk / "data")
    serve = start(mailgate, tmp_path, servers)
    before = tokens("before-full", 3)
    send_all(serve.port, before)
    wait_delivered(sim, set(before), DELIVERY_TIMEOUT)

    filler = fill(small_disk)
    (refused,) = tokens("disk-full", 1)
    reply = refused_451(serve.port, refused, BIG)
    assert reply.startswith("451 4.3.0"), reply
    assert_quiet(measure_quiet(serve), serve)
    assert "could not store a message" in serve.log()
    assert not delivered_by_subject(sim, {refused})[refused]

    filler.unlink()
    after = [refused, *tokens("after-full", 2)]  # the device tries again, as told
    send_all(serve.port, after)
    wait_delivered(sim, set(after), DELIVERY_TIMEOUT)
    assert_delivered_once(sim, {*before, *after})
    assert serve.stop() == 0, serve.log()


LOCKER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None, timeout=30)
conn.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.readline()
conn.execute("ROLLBACK")
"""


def test_locked_database_gives_451_then_recovers(
    mailgate: Mailgate, sim: SimulatorThread, tmp_path: Path, servers: list[Serve]
) -> None:
    serve = start(mailgate, tmp_path, servers)
    locker = subprocess.Popen(
        [sys.executable, "-c", LOCKER, str(db_path(mailgate.data_dir))],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert locker.stdout is not None
        assert locker.stdout.readline() == "locked\n"
        (refused,) = tokens("locked", 1)
        reply = refused_451(serve.port, refused)  # after busy_timeout (10 s)
        assert reply.startswith("451 4.3.0"), reply
        assert_quiet(measure_quiet(serve), serve)
    finally:
        locker.communicate("\n", timeout=HANG)
    after = [refused, *tokens("unlocked", 2)]
    send_all(serve.port, after)
    wait_delivered(sim, set(after), DELIVERY_TIMEOUT)
    assert_delivered_once(sim, set(after))
    assert serve.stop() == 0, serve.log()
