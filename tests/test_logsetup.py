"""Log formats: the journal's priority prefixes, one JSON object per line, and gateway
events (what the console's events page shows) as log lines."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import smtplib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine

from mailgate.db.migrate import upgrade
from mailgate.gateway.queue import QueueStore
from mailgate.logsetup import (
    EVENTS_LOGGER,
    JournalFormatter,
    JsonFormatter,
    choose_format,
    configure,
    syslog_priority,
)
from tests.bounds import HANG
from tests.gateway.e2e_helpers import Mailgate, environment, stop_process, wait_ready


@pytest.mark.parametrize(
    ("level", "priority"),
    [
        (logging.DEBUG, 7),
        (logging.INFO, 6),
        (logging.WARNING, 4),
        (logging.ERROR, 3),
        (logging.CRITICAL, 2),
        (5, 7),
    ],
)
def test_syslog_priority(level: int, priority: int) -> None:
    assert syslog_priority(level) == priority


@pytest.mark.parametrize(
    ("option", "journal_stream", "stderr_ids", "expected"),
    [
        ("auto", None, (8, 42), "text"),
        ("auto", "8:42", (8, 42), "journal"),
        # systemd.exec(5): a redirected stderr is not the journal even if the variable is set
        ("auto", "8:42", (8, 43), "text"),
        ("auto", "8:42", None, "text"),
        ("auto", "garbage", (8, 42), "text"),
        ("json", "8:42", (8, 42), "json"),
        ("text", "8:42", (8, 42), "text"),
        ("journal", None, None, "journal"),
    ],
)
def test_choose_format(
    option: str, journal_stream: str | None, stderr_ids: tuple[int, int] | None, expected: str
) -> None:
    assert choose_format(option, journal_stream, stderr_ids) == expected


def _record(level: int, msg: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("mailgate.test", level, __file__, 1, msg, None, None)
    record.__dict__.update(extra)
    return record


def test_journal_lines_carry_the_priority_and_no_timestamp() -> None:
    text = JournalFormatter().format(_record(logging.WARNING, "first\nsecond"))
    assert text == "<4>mailgate.test: first\n<4>second"


def test_journal_prefixes_every_traceback_line() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = _record(logging.ERROR, "failed")
        record.exc_info = sys.exc_info()
    lines = JournalFormatter().format(record).splitlines()
    assert len(lines) > 3
    assert all(line.startswith("<3>") for line in lines)
    assert lines[-1] == "<3>ValueError: boom"


def test_json_is_one_object_per_line_with_event_fields() -> None:
    text = JsonFormatter().format(_record(logging.ERROR, "two\nlines", event="held", message_id=7))
    assert "\n" not in text
    obj = json.loads(text)
    assert obj["level"] == "error"
    assert obj["logger"] == "mailgate.test"
    assert obj["message"] == "two\nlines"
    assert obj["event"] == "held"
    assert obj["message_id"] == 7
    assert obj["time"].endswith("Z")


@contextlib.contextmanager
def own_root_logger() -> Iterator[None]:
    """A root logger without pytest's handlers (added for the test's call phase), restored
    afterwards."""
    root = logging.getLogger()
    saved, level = root.handlers[:], root.level
    root.handlers = []
    try:
        yield
    finally:
        root.handlers, root.level = saved, level


def test_configure_journal_on_the_journal_stream() -> None:
    with own_root_logger(), tempfile.TemporaryFile("w+") as stream:
        info = os.fstat(stream.fileno())
        env = {"JOURNAL_STREAM": f"{info.st_dev}:{info.st_ino}"}
        assert configure("auto", logging.INFO, env, stream) == "journal"
        logging.getLogger("mailgate.x").info("hello")
        stream.seek(0)
        assert stream.read() == "<6>mailgate.x: hello\n"


def test_configure_replaces_only_its_own_handler() -> None:
    first, second = io.StringIO(), io.StringIO()
    with own_root_logger():
        configure("json", logging.INFO, {}, first)
        configure("json", logging.INFO, {}, second)
        logging.getLogger("mailgate.x").info("once")
    assert first.getvalue() == ""
    assert json.loads(second.getvalue())["message"] == "once"


def test_configure_leaves_a_foreign_handler_alone() -> None:
    # pytest's own capture handlers are on the root logger here.
    root = logging.getLogger()
    before = root.handlers[:]
    configure("json", logging.INFO, {}, io.StringIO())
    assert root.handlers == before


def test_every_stored_event_is_a_log_line(caplog: pytest.LogCaptureFixture) -> None:
    engine = upgrade(create_engine("sqlite://"))
    queue = QueueStore(engine)
    with caplog.at_level(logging.INFO, logger=EVENTS_LOGGER):
        queue.add_event(1.0, "error", "auth_failed", "The sign-in needs renewing.", 12)
        queue.add_event(2.0, "info", "upstream_up", "The upstream server accepts mail again.")
    assert [e.kind for e in queue.events()] == ["upstream_up", "auth_failed"]
    records = [r for r in caplog.records if r.name == EVENTS_LOGGER]
    assert [(r.levelno, r.getMessage()) for r in records] == [
        (logging.ERROR, "The sign-in needs renewing."),
        (logging.INFO, "The upstream server accepts mail again."),
    ]
    assert records[0].__dict__["event"] == "auth_failed"
    assert records[0].__dict__["message_id"] == 12


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["json", "journal"])
def test_serve_logs_in_the_chosen_format(tmp_path: Path, fmt: str) -> None:
    """`serve --log-format F`: every line it writes on stderr, start to stop, is in F."""
    mailgate = Mailgate(tmp_path / "data")
    mailgate.ok("init")
    ready, log_path = tmp_path / "ready.json", tmp_path / "serve.log"
    argv = mailgate.argv("--log-format", fmt, "serve", "--listen", "127.0.0.1:0", "--no-console")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*argv, "--ready-file", str(ready)], stdout=log, stderr=log, env=environment()
        )
    try:
        wait_ready(process, ready, log_path)
    finally:
        assert stop_process(process, HANG) == 0
    lines = log_path.read_text().splitlines()
    assert any("listening for SMTP on 127.0.0.1:" in line for line in lines), lines
    check = _is_json_line if fmt == "json" else _is_journal_line
    assert all(check(line) for line in lines), lines


@pytest.mark.slow
def test_serve_logs_no_line_per_message(tmp_path: Path) -> None:
    """Under load a line per message costs CPU on the event loop: an accepted message
    leaves no INFO line, neither mailgate's nor aiosmtpd's per-command ones."""
    mailgate = Mailgate(tmp_path / "data")
    mailgate.ok("init")
    ready, log_path = tmp_path / "ready.json", tmp_path / "serve.log"
    argv = mailgate.argv("--log-format", "json", "serve", "--listen", "127.0.0.1:0")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*argv, "--no-console", "--ready-file", str(ready)],
            stdout=log,
            stderr=log,
            env=environment(),
        )
    try:
        wait_ready(process, ready, log_path)
        port = int(json.loads(ready.read_text())["smtp"][0]["port"])
        with smtplib.SMTP("127.0.0.1", port, timeout=HANG) as smtp:
            smtp.sendmail("mfp@printer.local", ["a@fabrikam.test"], b"Subject: x\r\n\r\nx\r\n")
    finally:
        assert stop_process(process, HANG) == 0
    records = [json.loads(line) for line in log_path.read_text().splitlines()]
    assert not [r for r in records if r["logger"] == "mail.log"], records
    assert not [r for r in records if "accepted message" in r["message"]], records


def _is_json_line(line: str) -> bool:
    obj = json.loads(line)
    return isinstance(obj, dict) and {"time", "level", "logger", "message"} <= obj.keys()


def _is_journal_line(line: str) -> bool:
    return line[:1] == "<" and line[1:2].isdigit() and line[2:3] == ">"
