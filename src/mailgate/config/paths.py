"""Where mailgate keeps its data.

The data directory is, in order: the `--data-dir` option of the `mailgate` command, the
environment variable MAILGATE_DATA_DIR, or a default — /var/lib/mailgate when running as
root (a service), else $XDG_DATA_HOME/mailgate, else ~/.local/share/mailgate (the XDG
Base Directory default). It holds the settings database and the secret key file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

ENV_DATA_DIR = "MAILGATE_DATA_DIR"
DB_FILE = "mailgate.db"
KEY_FILE = "secret.key"
SYSTEM_DATA_DIR = Path("/var/lib/mailgate")


def _running_as_root() -> bool:
    geteuid = getattr(os, "geteuid", None)  # absent on Windows
    return geteuid is not None and geteuid() == 0


def default_data_dir(env: Mapping[str, str] | None = None, as_root: bool | None = None) -> Path:
    """The data directory used when neither --data-dir nor MAILGATE_DATA_DIR is given."""
    env = os.environ if env is None else env
    if _running_as_root() if as_root is None else as_root:
        return SYSTEM_DATA_DIR
    xdg = env.get("XDG_DATA_HOME", "")
    # The XDG spec says a relative value is invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "mailgate"
    return Path.home() / ".local" / "share" / "mailgate"


def resolve_data_dir(option: Path | str | None, env: Mapping[str, str] | None = None) -> Path:
    """--data-dir, else MAILGATE_DATA_DIR, else the default; always absolute."""
    env = os.environ if env is None else env
    if option:
        chosen = Path(option)
    elif env.get(ENV_DATA_DIR):
        chosen = Path(env[ENV_DATA_DIR])
    else:
        chosen = default_data_dir(env)
    return chosen.expanduser().absolute()


def db_path(data_dir: Path) -> Path:
    return data_dir / DB_FILE


def key_path(data_dir: Path) -> Path:
    return data_dir / KEY_FILE


@dataclass
class CliState:
    """What the `mailgate` group's global options leave in the click context (`ctx.obj`).

    Subcommands call `ctx.find_object(CliState).data_dir` — resolved only when asked, so
    `--help` never touches the environment.
    """

    data_dir_option: Path | None = None

    @property
    def data_dir(self) -> Path:
        return resolve_data_dir(self.data_dir_option)
