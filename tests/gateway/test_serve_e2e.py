"""`mailgate serve` end to end: real SMTP clients -> serve (a subprocess) -> the simulator.

Each test gets a data directory configured and signed in with the CLI, as an administrator
does it, starts `serve --listen 127.0.0.1:0 --ready-file F`, sends with swaks or smtplib,
and ends with SIGTERM and exit status 0. Messages are told apart by their Subject (a
token unique to the test), because the simulator is shared by the whole module.
Pacing at 30/min is tested with a controllable clock in test_delivery.py, not here.
"""

from __future__ import annotations

import random
import shutil
import smtplib
import ssl
import subprocess
import threading
import time
from email.parser import BytesHeaderParser, BytesParser
from email.policy import default
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest

from mailgate.config.store import Store
from mailgate.gateway.queue import QueueStore
from mailgate.sim.server import SimulatorThread
from tests.bounds import HANG, SOCKET
from tests.gateway.e2e_helpers import (
    CLIENT_ID,
    DEVICE,
    SCANNER,
    Mailgate,
    Serve,
    assert_delivered_once,
    delivered,
    delivered_by_subject,
    event_kinds,
    mail,
    send_all,
    start,
    tokens,
    wait_delivered,
    wait_until,
)

DELIVERY_TIMEOUT = HANG


# -- 1. happy path --------------------------------------------------------------------------
def test_swaks_and_smtplib_reach_the_mailbox_as_the_signed_in_account(
    mailgate: Mailgate, sim: SimulatorThread, tmp_path: Path, servers: list[Serve]
) -> None:
    swaks = shutil.which("swaks")
    if swaks is None:
        pytest.fail("swaks is not installed: apt-get install swaks")
    serve = start(mailgate, tmp_path, servers)
    by_swaks, *by_smtplib = tokens("happy", 4)

    result = subprocess.run(
        [
            swaks,
            "--server",
            f"127.0.0.1:{serve.port}",
            "--ehlo",
            "printer.local",
            "--from",
            DEVICE,
            "--to",
            "someone@fabrikam.com",
            "--header",
            f"Subject: {by_swaks}",
            "--header",
            "From: Office Printer <mfp@printer.local>",
            "--body",
            "Scanned document.",
        ],
        capture_output=True,
        text=True,
        timeout=SOCKET,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "\n -> .\n<-  250 2.0.0 " in result.stdout, result.stdout
    send_all(serve.port, by_smtplib)

    subjects = {by_swaks, *by_smtplib}
    wait_delivered(sim, subjects, DELIVERY_TIMEOUT)
    assert_delivered_once(sim, subjects)
    for stored in delivered(sim):
        summary = stored.summary()
        if summary["subject"] not in subjects:
            continue
        assert summary["mail_from"] == SCANNER
        assert summary["rcpt_tos"] == ["someone@fabrikam.com"]
        headers = BytesHeaderParser(policy=default).parsebytes(stored.data)
        assert parseaddr(str(headers["From"]))[1] == SCANNER, headers["From"]
        assert parseaddr(str(headers["Reply-To"]))[1] == DEVICE, headers["Reply-To"]

    queue = mailgate.queue()
    assert {queue[s]["state"] for s in subjects} == {"sent"}
    status = mailgate.json("status")
    assert status["upn"] == SCANNER
    assert status["queue"]["sent"] == len(subjects)
    assert sum(n for state, n in status["queue"].items() if state != "sent") == 0
    assert status["oldest_message_at"] is None
    assert serve.stop() == 0, serve.log()


# -- 2. upstream down, then back --------------------------------------------------------------
def test_upstream_down_defers_without_spinning_and_retry_delivers(
    mailgate: Mailgate, sim: SimulatorThread, tmp_path: Path, servers: list[Serve]
) -> None:
    sim.set_scenario(smtp_down=True)
    serve = start(mailgate, tmp_path, servers)
    subjects = tokens("down", 3)
    send_all(serve.port, subjects)

    def all_deferred() -> bool:
        queue = mailgate.queue()
        return all(queue.get(s, {}).get("state") == "deferred" for s in subjects)

    wait_until(all_deferred, DELIVERY_TIMEOUT, "the messages to be deferred")
    # While the server stays down, nothing retries in a loop: attempts stay at one and the
    # log stays quiet (retries are a minute or more apart by design).
    lines_before = serve.log_lines()
    time.sleep(3)
    assert serve.log_lines() - lines_before <= 6, serve.log()
    queue = mailgate.queue()
    assert all(queue[s]["attempts"] == 1 for s in subjects), queue
    assert all(queue[s]["next_attempt_at"] > time.time() + 30 for s in subjects), queue
    assert "upstream_down" in event_kinds(mailgate)

    sim.set_scenario(smtp_down=False)
    assert "Retry: 3 messages." in mailgate.ok("queue", "retry", "--all")
    wait_delivered(sim, set(subjects), DELIVERY_TIMEOUT)
    assert_delivered_once(sim, set(subjects))
    assert {mailgate.queue()[s]["state"] for s in subjects} == {"sent"}
    assert serve.stop() == 0, serve.log()


# -- 3. token revoked -> held -> sign in again -> delivered ------------------------------------
def test_revoked_sign_in_holds_mail_until_the_next_login(
    mailgate: Mailgate, sim: SimulatorThread, tmp_path: Path, servers: list[Serve]
) -> None:
    serve = start(mailgate, tmp_path, servers)
    sim.state.revoke_all_tokens()
    subjects = tokens("revoked", 2)
    send_all(serve.port, subjects)

    def all_held() -> bool:
        queue = mailgate.queue()
        return all(queue.get(s, {}).get("state") == "held" for s in subjects)

    wait_until(all_held, DELIVERY_TIMEOUT, "the messages to be held")
    queue = mailgate.queue()
    assert {queue[s]["held_reason"] for s in subjects} == {"sign-in needed"}
    assert "sign_in_needed" in event_kinds(mailgate)
    assert not any(delivered_by_subject(sim, set(subjects)).values())

    mailgate.login(sim)
    wait_delivered(sim, set(subjects), DELIVERY_TIMEOUT)
    assert_delivered_once(sim, set(subjects))
    assert {mailgate.queue()[s]["state"] for s in subjects} == {"sent"}
    assert "resumed" in event_kinds(mailgate)
    assert serve.stop() == 0, serve.log()


# -- 4. 432: the mailbox's three connections are taken ----------------------------------------
def _occupy(sim: SimulatorThread) -> smtplib.SMTP:
    """An authenticated session to the simulator, as another client of the mailbox."""
    grant = sim.state.issue_access_token(SCANNER, CLIENT_ID, [sim.state.profile.smtp_scope], 3600)
    client = smtplib.SMTP("127.0.0.1", sim.smtp_port, timeout=SOCKET)
    client.ehlo("other.client")
    client.starttls(context=_trusting(sim))
    client.ehlo("other.client")
    client.auth("XOAUTH2", lambda _=None: f"user={SCANNER}\x01auth=Bearer {grant.token}\x01\x01")
    return client


def _trusting(sim: SimulatorThread) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(sim.ca_path))


def test_432_concurrent_connections_defers_then_retry_delivers(
    mailgate: Mailgate, sim: SimulatorThread, tmp_path: Path, servers: list[Serve]
) -> None:
    occupying = [_occupy(sim) for _ in range(3)]
    try:
        serve = start(mailgate, tmp_path, servers)
        (subject,) = tokens("throttled", 1)
        send_all(serve.port, [subject])

        def deferred() -> bool:
            return mailgate.queue().get(subject, {}).get("state") == "deferred"

        wait_until(deferred, DELIVERY_TIMEOUT, "the message to be deferred")
        info = mailgate.queue()[subject]
        assert info["last_reply"].startswith("432 4.3.2"), info
        assert "throttled" in event_kinds(mailgate)
    finally:
        for client in occupying:
            client.quit()
    assert "Retry: 1 message." in mailgate.ok("queue", "retry", "--all")
    wait_delivered(sim, {subject}, DELIVERY_TIMEOUT)
    assert_delivered_once(sim, {subject})
    assert serve.stop() == 0, serve.log()


# -- 5. SendAsDenied -> failed, bounced to the device ------------------------------------------
def test_send_as_denied_fails_and_bounces_to_the_envelope_sender(
    mailgate: Mailgate, sim: SimulatorThread, tmp_path: Path, servers: list[Serve]
) -> None:
    mailgate.ok("config", "set", "sender.policy", "pass-through")
    serve = start(mailgate, tmp_path, servers)
    denied, null_sender = tokens("denied", 2)
    with smtplib.SMTP("127.0.0.1", serve.port, timeout=SOCKET) as client:
        client.sendmail(DEVICE, ["someone@fabrikam.com"], mail(denied, "ceo@contoso.com"))
        client.sendmail("", ["someone@fabrikam.com"], mail(null_sender, "ceo@contoso.com"))

    def both_failed() -> bool:
        queue = mailgate.queue()
        return all(queue.get(s, {}).get("state") == "failed" for s in (denied, null_sender))

    wait_until(both_failed, DELIVERY_TIMEOUT, "both messages to fail")
    queue = mailgate.queue()
    assert "5.2.252" in queue[denied]["recipients"][0]["reply"], queue[denied]

    def bounced() -> list[Any]:
        return [m for m in delivered(sim) if m.rcpt_tos == [DEVICE]]

    wait_until(lambda: bool(bounced()), DELIVERY_TIMEOUT, "the bounce report")
    (report,) = bounced()
    assert report.upn == SCANNER
    parsed = BytesParser(policy=default).parsebytes(report.data)
    assert parsed.get_content_type() == "multipart/report"
    assert parsed.get_param("report-type") == "delivery-status"
    assert parseaddr(str(parsed["From"]))[1] == SCANNER
    assert b"Status: 5.2.252" in report.data
    assert denied.encode() in report.data
    assert null_sender.encode() not in report.data
    kinds = event_kinds(mailgate)
    assert kinds.count("message_failed") == 2, kinds

    # The null-sender message produced no bounce (RFC 5321 section 4.5.5): nothing else
    # went to anyone but the device. Once every message in the queue is finished, a second
    # bounce would have been queued and sent already.
    def all_finished() -> bool:
        return all(m["state"] in ("sent", "failed") for m in mailgate.queue().values())

    wait_until(all_finished, DELIVERY_TIMEOUT, "every message to be finished")
    assert len(bounced()) == 1
    assert not any(delivered_by_subject(sim, {denied, null_sender}).values())
    assert serve.stop() == 0, serve.log()


# -- 6. kill -9 in the middle of a load ---------------------------------------------------------
LOAD = 300
CLIENTS = 8
DELIVERY_CONNECTIONS = 3


def _load(port: int, subjects: list[str], accepted: list[str], stop: threading.Event) -> None:
    """Send *subjects* one by one, reconnecting after errors, until done or *stop*."""
    pending = list(subjects)
    while pending and not stop.is_set():
        try:
            with smtplib.SMTP("127.0.0.1", port, timeout=SOCKET) as client:
                while pending:
                    subject = pending[0]
                    client.sendmail(DEVICE, ["someone@fabrikam.com"], mail(subject))
                    accepted.append(subject)  # list.append is atomic
                    pending.pop(0)
        except (OSError, smtplib.SMTPException):
            # The gateway died under us: this message did not get a 250; stop this client.
            return


def test_kill_9_mid_load_loses_no_accepted_message(
    mailgate: Mailgate, sim: SimulatorThread, tmp_path: Path, servers: list[Serve]
) -> None:
    sim.set_scenario(limits=False)
    mailgate.ok("config", "set", "delivery.messages_per_minute", "10000")
    serve = start(mailgate, tmp_path, servers)
    subjects = tokens("load", LOAD)
    accepted: list[str] = []
    stop = threading.Event()
    clients = [
        threading.Thread(target=_load, args=(serve.port, subjects[i::CLIENTS], accepted, stop))
        for i in range(CLIENTS)
    ]
    for client in clients:
        client.start()
    # Kill once a random part of the load has been accepted, while delivery is under way.
    kill_after = random.randint(LOAD // 5, LOAD * 3 // 5)
    wait_until(lambda: len(accepted) >= kill_after, 60, f"{kill_after} accepted messages")
    serve.kill()
    stop.set()
    for client in clients:
        client.join(30)
    got_250 = set(accepted)
    assert len(got_250) == len(accepted)
    with Store.open(mailgate.data_dir) as store:
        at_kill = QueueStore(store.engine).counts()

    restarted = start(mailgate, tmp_path, servers)
    wait_delivered(sim, got_250, 60)
    copies = delivered_by_subject(sim, set(subjects))
    assert all(copies[s] for s in got_250)
    assert all(c["upn"] == SCANNER for found in copies.values() for c in found)
    duplicates = sum(len(found) - 1 for found in copies.values() if len(found) > 1)
    # Only a message in flight at the kill (Exchange said 250, we had not yet recorded it)
    # may go twice: at most one per delivery connection.
    twice = {s: len(c) for s, c in copies.items() if len(c) > 1}
    assert duplicates <= at_kill["sending"] <= DELIVERY_CONNECTIONS, (twice, at_kill)
    queue = mailgate.queue()
    assert all(queue[s]["state"] == "sent" for s in got_250)
    assert restarted.stop() == 0, restarted.log()
