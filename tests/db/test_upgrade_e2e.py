"""A gateway of release 0.1.0, upgraded by the commands an administrator types, delivers
the mail that release had accepted and held."""

from __future__ import annotations

import json
from pathlib import Path

from mailgate.sim.server import SimulatorThread
from tests.bounds import HANG
from tests.db import release
from tests.gateway.e2e_helpers import (
    CLIENT_ID,
    Mailgate,
    Serve,
    assert_delivered_once,
    wait_delivered,
)

DELIVERY_TIMEOUT = HANG


def test_release_queue_is_upgraded_and_delivered(sim: SimulatorThread, tmp_path: Path) -> None:
    mailgate = Mailgate(tmp_path / "data")
    release.restore(mailgate.data_dir)
    # The first command of the new version upgrades the data directory, and says so.
    result = mailgate.run("queue", "list", "--json")
    assert result.returncode == 0, result.stderr
    assert "upgraded the database" in result.stderr, result.stderr
    assert {m["subject"]: m["state"] for m in json.loads(result.stdout)} == dict.fromkeys(
        release.SUBJECTS, "held"
    )
    assert len(list(mailgate.data_dir.glob("mailgate.db.backup-*"))) == 1
    # The release pointed at a server that is not there; the administrator points it here.
    mailgate.ok(
        "config", "provider", "exchange-online", "--client-id", CLIENT_ID,
        "--server", f"127.0.0.1:{sim.smtp_port}", "--host", sim.idp_hostport,
    )  # fmt: skip
    mailgate.ok("config", "set", "network.ca_bundle", str(sim.ca_path))
    mailgate.login(sim)
    # Held for the sign-in by an earlier life of serve: released by the administrator, as
    # with the release itself (serve releases only holds it made since it started).
    assert mailgate.ok("queue", "release", "--all").strip() == "Release: 3 messages."
    serve = Serve.start(mailgate, tmp_path)
    try:
        wait_delivered(sim, release.SUBJECTS, DELIVERY_TIMEOUT)
    except AssertionError:
        raise AssertionError(f"{mailgate.ok('queue', 'list')}\n{serve.log()}") from None
    finally:
        assert serve.stop() == 0, serve.log()
    assert_delivered_once(sim, release.SUBJECTS)
    states = {m["subject"]: m["state"] for m in mailgate.json("queue", "list")}
    assert states == dict.fromkeys(release.SUBJECTS, "sent")
