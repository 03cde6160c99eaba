"""Log output where administrators look: the journal, a terminal, or a log shipper.

Theory of operation: one handler on the root logger, on stderr, in one of three formats.

- ``journal``: what systemd's journal wants from a service's stderr (sd-daemon(3)): no
  timestamp (the journal stamps every line itself) and the level as a syslog priority
  prefix, ``<3>`` error ... ``<7>`` debug, which journald turns into the entry's PRIORITY.
  Every line of a multi-line record (a traceback) carries the prefix, since the journal
  makes one entry per line.
- ``json``: one JSON object per line (time, level, logger, message, and for gateway events
  their kind and message id) for Loki, Fluent Bit, Vector, Elastic and the like.
- ``text``: timestamped lines for a terminal or a plain log file.

``auto`` (the default) picks ``journal`` when stderr is the journal: systemd.exec(5) sets
$JOURNAL_STREAM to "DEVICE:INODE" of the stream it connects, and a program should compare
it with its own stderr (a child whose stderr was redirected must not think it logs there).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

FORMATS = ("auto", "text", "journal", "json")
ENV_JOURNAL_STREAM = "JOURNAL_STREAM"
#: The logger gateway events (the console's events table) are logged under.
EVENTS_LOGGER = "mailgate.events"
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

#: syslog(3) priorities: LOG_CRIT 2, LOG_ERR 3, LOG_WARNING 4, LOG_INFO 6, LOG_DEBUG 7.
_PRIORITIES = ((logging.CRITICAL, 2), (logging.ERROR, 3), (logging.WARNING, 4), (logging.INFO, 6))


def syslog_priority(levelno: int) -> int:
    for threshold, priority in _PRIORITIES:
        if levelno >= threshold:
            return priority
    return 7


def choose_format(
    option: str, journal_stream: str | None, stderr_ids: tuple[int, int] | None
) -> str:
    """The format to use: *option* unless it is ``auto``; then ``journal`` when
    $JOURNAL_STREAM names the device and inode of our stderr, else ``text``."""
    if option != "auto":
        return option
    if not journal_stream or stderr_ids is None:
        return "text"
    device, _, inode = journal_stream.partition(":")
    if not (device.isdigit() and inode.isdigit()):
        return "text"
    return "journal" if (int(device), int(inode)) == stderr_ids else "text"


def _stderr_ids(stream: TextIO) -> tuple[int, int] | None:
    try:
        info = os.fstat(stream.fileno())
    except (OSError, ValueError, AttributeError):
        return None  # not a real file (pytest's capture, an in-memory stream)
    return info.st_dev, info.st_ino


class JournalFormatter(logging.Formatter):
    """``<priority>logger: message`` on every line; no timestamp."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        prefix = f"<{syslog_priority(record.levelno)}>"
        return "\n".join(prefix + line for line in text.splitlines() or [""])


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (json.dumps escapes newlines)."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = dt.datetime.fromtimestamp(record.created, dt.UTC)
        obj: dict[str, object] = {
            "time": stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for field in ("event", "message_id"):
            value = getattr(record, field, None)
            if value is not None:
                obj[field] = value
        if record.exc_info:
            obj["exception"] = self.formatException(record.exc_info)
        return json.dumps(obj, ensure_ascii=False)


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt == "journal":
        return JournalFormatter()
    if fmt == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def configure(
    option: str, level: int, env: Mapping[str, str] | None = None, stream: TextIO | None = None
) -> str:
    """Set up the root logger on *stream* (stderr); returns the format chosen.

    Like logging.basicConfig, it leaves a root logger that has someone else's handlers
    alone (an embedding program's, or pytest's); a handler of ours is replaced."""
    env = os.environ if env is None else env
    stream = sys.stderr if stream is None else stream
    fmt = choose_format(option, env.get(ENV_JOURNAL_STREAM), _stderr_ids(stream))
    root = logging.getLogger()
    ours = [h for h in root.handlers if getattr(h, _MARK, False)]
    if len(ours) != len(root.handlers):
        return fmt
    for old in ours:
        root.removeHandler(old)
    handler = logging.StreamHandler(stream)
    setattr(handler, _MARK, True)
    handler.setFormatter(make_formatter(fmt))
    root.addHandler(handler)
    root.setLevel(level)
    return fmt


_MARK = "_mailgate_handler"


_EVENT_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "error": logging.ERROR}


def log_event(level: str, kind: str, text: str, message_id: int | None = None) -> None:
    """Log one gateway event (what the console's events page shows) as a log line."""
    levelno = _EVENT_LEVELS.get(level, logging.WARNING)
    logging.getLogger(EVENTS_LOGGER).log(
        levelno, text, extra={"event": kind, "message_id": message_id}
    )
