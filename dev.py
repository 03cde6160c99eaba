#!/usr/bin/env python3
"""Set-up and entry point for a fresh checkout; needs only python3.

    python3 dev.py demo     the simulator and a device signing in to it (README's first command)
    python3 dev.py test     ruff, mypy and the whole test suite (README's second command)

Each run makes sure the virtual environment in .venv exists and holds what pyproject.toml
asks for, and (for `test`) that the system tools the tests drive are installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / "bin"
STAMP = VENV / ".mailgate-installed"
#: Debian packages whose programs the tests run as real clients (command -> package).
#: chromium: the console's browser tests (Playwright's own browser download is not used).
#: Debian packages the tests need that bring files rather than commands (path -> package):
#: a CJK font, so the Chinese console's screenshots show text, not empty boxes.
SYSTEM_FILES = {"/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc": "fonts-wqy-zenhei"}
SYSTEM_TOOLS = {"swaks": "swaks", "msmtp": "msmtp", "chromium": "chromium"}


def run(*args: str | Path, env: dict[str, str] | None = None) -> int:
    return subprocess.call([str(a) for a in args], env=env)


def ensure_venv() -> None:
    if not (BIN / "python").exists():
        print("mailgate: creating the virtual environment in .venv", flush=True)
        if run(sys.executable, "-m", "venv", VENV) != 0:
            sys.exit(
                "mailgate: could not create .venv; on Debian/Ubuntu install python3-venv first."
            )
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    print("mailgate: installing mailgate and its dependencies into .venv", flush=True)
    pip: list[str | Path] = [BIN / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
    if (
        run(*pip, "install", "--upgrade", "pip") != 0
        or run(*pip, "install", "-e", f"{ROOT}[test]") != 0
    ):
        sys.exit(
            "mailgate: pip could not install the dependencies; check the network and try again."
        )
    STAMP.write_text(wanted + "\n")


def ensure_system_tools() -> None:
    wanted = {pkg for tool, pkg in SYSTEM_TOOLS.items() if shutil.which(tool) is None}
    wanted |= {pkg for path, pkg in SYSTEM_FILES.items() if not Path(path).exists()}
    missing = sorted(wanted)
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(
            "mailgate: the tests drive these programs, which are not installed: "
            + ", ".join(missing)
            + "\nInstall them (Debian/Ubuntu: sudo apt-get install -y "
            + " ".join(missing)
            + ") and run again."
        )
    print(f"mailgate: installing {', '.join(missing)} with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if (
        run("apt-get", "update", "-qq", env=env) != 0
        or run("apt-get", "install", "-y", "-qq", "--no-install-recommends", *missing, env=env) != 0
    ):
        sys.exit("mailgate: apt-get could not install " + ", ".join(missing))


def test(args: list[str]) -> int:
    ensure_system_tools()
    os.chdir(ROOT)
    steps: list[tuple[str, list[str | Path]]] = [
        ("ruff", [BIN / "ruff", "check", "src", "tests", "dev.py"]),
        ("ruff format", [BIN / "ruff", "format", "--check", "src", "tests", "dev.py"]),
        ("mypy", [BIN / "mypy"]),
    ]
    for name, command in steps:
        print(f"mailgate: {name}", flush=True)
        if run(*command) != 0:
            print(f"mailgate: {name} failed", file=sys.stderr)
            return 1
    print("mailgate: pytest", flush=True)
    code = run(BIN / "python", "-m", "pytest", *args)
    if code == 5:
        print("mailgate: pytest collected no tests: the set-up is broken", file=sys.stderr)
        return 1
    return code


def main() -> int:
    if len(sys.argv) < 2 or sys.argv[1] not in {"demo", "test", "mailgate"}:
        print(__doc__)
        return 2
    command, rest = sys.argv[1], sys.argv[2:]
    ensure_venv()
    if command == "test":
        return test(rest)
    if command == "demo":
        return run(BIN / "mailgate", "demo", *rest)
    return run(BIN / "mailgate", *rest)


if __name__ == "__main__":
    sys.exit(main())
