"""One error root, and one CLI handler for it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from mailgate import operations
from mailgate.cli import main
from mailgate.config.errors import ConfigError
from mailgate.config.store import init_data_dir
from mailgate.db.migrate import SchemaTooNewError
from mailgate.errors import MailgateError
from mailgate.identity.errors import IdentityError, not_signed_in
from mailgate.service import AlreadyServing
from mailgate.submission.errors import SubmissionError
from mailgate.trust import CaBundleError


@pytest.mark.parametrize(
    "family",
    [ConfigError, SchemaTooNewError, IdentityError, SubmissionError, AlreadyServing, CaBundleError],
)
def test_every_error_a_user_meets_has_the_one_root(family: type[Exception]) -> None:
    assert issubclass(family, MailgateError)


def test_the_cli_reports_any_mailgate_error_with_its_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MAILGATE_SECRET_KEY", raising=False)
    with init_data_dir(tmp_path / "data") as store:
        store.apply_provider("exchange-online", client_id="0a1b2c3d-4e5f-4789-abcd-ef0123456789")

    def refuse(*args: object) -> dict[str, object]:
        raise IdentityError(not_signed_in())

    monkeypatch.setattr(operations, "status", refuse)
    result = CliRunner().invoke(main, ["--data-dir", str(tmp_path / "data"), "status"])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert result.stderr.startswith("Error: not_signed_in: Not signed in.")
    assert "mailgate login" in result.stderr  # what to do
