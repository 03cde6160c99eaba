"""Backup while `serve` runs, restore onto a fresh data directory, and the restored gateway
delivers the queued mail through the simulator with the restored (encrypted) sign-in.

Each step is the CLI as an administrator types it, in its own process."""

from __future__ import annotations

import shutil
import smtplib
import uuid
from pathlib import Path

import pytest

from mailgate.sim.server import SimulatorThread
from tests.bounds import HANG, SOCKET
from tests.gateway.e2e_helpers import (
    DEVICE,
    Mailgate,
    Serve,
    assert_delivered_once,
    delivered_by_subject,
    mail,
    wait_delivered,
    wait_until,
)


@pytest.fixture
def old(template: Mailgate, sim: SimulatorThread, tmp_path: Path) -> Mailgate:
    """The gateway the backup is made of: configured and signed in."""
    own = Mailgate(tmp_path / "old")
    shutil.copytree(template.data_dir, own.data_dir)
    own.login(sim)
    return own


def _states(mailgate: Mailgate, subjects: list[str]) -> list[str]:
    queue = mailgate.queue()
    return [queue[s]["state"] if s in queue else "missing" for s in subjects]


@pytest.mark.slow
def test_backup_of_a_running_gateway_restores_and_delivers(
    old: Mailgate, sim: SimulatorThread, tmp_path: Path, servers: list[Serve]
) -> None:
    run = uuid.uuid4().hex[:8]
    subjects = [f"restore-{run}-{i}" for i in range(3)]
    # Exchange is unreachable: the old gateway accepts the mail and keeps it deferred.
    sim.set_scenario(smtp_down=True)
    (tmp_path / "old-run").mkdir()
    serve = Serve.start(old, tmp_path / "old-run")
    servers.append(serve)
    with smtplib.SMTP("127.0.0.1", serve.port, timeout=SOCKET) as client:
        client.ehlo("printer.local")
        for subject in subjects:
            client.sendmail(DEVICE, ["someone@fabrikam.com"], mail(subject))
    wait_until(
        lambda: _states(old, subjects) == ["deferred"] * 3,
        HANG,
        "the old gateway to defer the mail",
    )

    # Online: the backup is taken while serve runs.
    backup_file = tmp_path / "gateway.backup"
    made = old.ok("backup", str(backup_file))
    assert "3 messages not yet delivered" in made
    assert f"It is in {old.data_dir / 'secret.key'}" in made
    assert serve.stop() == 0
    assert not any(delivered_by_subject(sim, set(subjects)).values())

    new = Mailgate(tmp_path / "new")
    refused = new.run("restore", str(backup_file))
    assert refused.returncode == 1
    assert "--key-file" in refused.stderr
    assert not (new.data_dir / "mailgate.db").exists()

    restored = new.ok("restore", str(backup_file), "--key-file", str(old.data_dir / "secret.key"))
    assert "3 message(s) wait to be delivered (0 held)" in restored

    sim.set_scenario(smtp_down=False)
    (tmp_path / "new-run").mkdir()
    serve = Serve.start(new, tmp_path / "new-run")
    servers.append(serve)
    wait_delivered(sim, set(subjects), HANG)
    assert_delivered_once(sim, set(subjects))
    wait_until(
        lambda: _states(new, subjects) == ["sent"] * 3,
        HANG,
        "the restored gateway to record the mail as sent",
    )
    assert serve.stop() == 0
