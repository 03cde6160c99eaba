"""The operations layer: the CLI and the console run the same functions on a GatewayHandle."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from mailgate import operations
from mailgate.cli import main
from mailgate.config.errors import ValidationError
from mailgate.config.model import AccountState
from mailgate.config.store import Store, init_data_dir
from mailgate.console.security import SetupToken
from mailgate.console.state import Console
from mailgate.gateway.queue_schema import Incoming
from mailgate.service import Gateway

CLIENT_ID = "0a1b2c3d-4e5f-4789-abcd-ef0123456789"


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    """Configured, signed in (an account row; no tokens are needed to show status), one
    message in the queue."""
    for name in ("MAILGATE_SECRET_KEY", "MAILGATE_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    with init_data_dir(tmp_path / "data") as opened:
        opened.apply_provider("exchange-online", client_id=CLIENT_ID)
        opened.save_account(
            AccountState("scanner@contoso.com", "scanner@contoso.com", 1000.0, 1000.0, 5000.0)
        )
        handle = operations.OfflineHandle(opened)
        handle.queue.accept(
            Incoming("mfp@printer.local", ("a@fabrikam.test",), b"Subject: s\r\n\r\nx\r\n"), 1.0
        )
        yield opened


def _cli_status(data_dir: Path) -> dict[str, Any]:
    result = CliRunner().invoke(main, ["--data-dir", str(data_dir), "status", "--json"])
    assert result.exit_code == 0, result.output
    loaded: dict[str, Any] = json.loads(result.stdout)
    return loaded


def test_cli_and_console_status_are_one_function_with_one_set_of_fields(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    callers: list[str] = []
    real = operations.status

    def recording(handle: operations.GatewayHandle, *args: Any) -> dict[str, Any]:
        callers.append(type(handle).__name__)
        return real(handle, *args)

    monkeypatch.setattr(operations, "status", recording)
    cli = _cli_status(store.data_dir)
    gateway = Gateway(store, store.settings())
    try:
        console = Console(gateway, SetupToken("t"), listeners=[("127.0.0.1", 2525, False)])
        shown = console.status()
    finally:
        gateway.db.close()
    assert callers == ["OfflineHandle", "Gateway"]
    assert sorted(cli) == sorted(shown)
    for field in ("upn", "sender_address", "queue", "re_sign_in_needed_by", "events"):
        assert cli[field] == shown[field], field
    assert cli["listeners"] == []  # no gateway in the CLI's process
    assert shown["listeners"] == ["127.0.0.1:2525"]


def test_queue_actions_mean_the_same_from_both(store: Store) -> None:
    handle = operations.OfflineHandle(store)
    (message,) = handle.queue.messages()
    assert operations.queue_action(handle, message.id, "hold", 2.0) == 1
    assert operations.queue_action(handle, None, "release", 3.0) == 1
    with pytest.raises(ValidationError, match="Unknown action"):
        operations.queue_action(handle, None, "delete", 4.0)  # delete takes one message
    assert operations.queue_action(handle, message.id, "delete", 5.0) == 1
    assert handle.queue.messages() == []


def test_readiness_reports_the_reason(store: Store) -> None:
    handle = operations.OfflineHandle(store)
    assert operations.readiness(handle) is None
    store.save_account(None)
    assert operations.readiness(handle) == (
        "nobody is signed in; sign in on the console's Sign-in page"
    )
