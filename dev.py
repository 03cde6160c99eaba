#!/usr/bin/env python3
"""Set-up and entry point for a fresh checkout; needs only python3.

    python3 dev.py demo     the simulator and a device signing in to it (README's first command)
    python3 dev.py test     ruff, mypy and the whole test suite (README's second command)
    python3 dev.py --python /usr/bin/python3.11 test    the same under another Python
    python3 dev.py pythons  the other supported Pythons on this machine (for .ci/run)

Each run makes sure the virtual environment in .venv exists and holds what pyproject.toml
asks for, and (for `test`) that the system tools the tests drive are installed.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent
#: `--python X` runs under X with a virtual environment of its own (.venv-X.Y.Z).
VENV = ROOT / os.environ.get("MAILGATE_DEV_VENV", ".venv")
BIN = VENV / "bin"
STAMP = VENV / ".mailgate-installed"


@dataclass(frozen=True)
class Requirement:
    """Something the tests use from the system: the Debian packages that bring it and a
    check of the capability itself (a binary can be there without what the tests need,
    e.g. swaks without Net::SSLeay has no STARTTLS)."""

    what: str
    packages: tuple[str, ...]
    #: A command that must exit 0 and print each of *expect* (stdout or stderr) ...
    check: tuple[str, ...] = ()
    expect: tuple[str, ...] = ()
    #: ... and/or a file that must exist.
    path: str = ""


#: Everything a test drives as a real client or needs on disk, on a fresh Debian/Ubuntu.
SYSTEM_REQUIREMENTS = (
    Requirement(
        "swaks with STARTTLS (Net::SSLeay) and AUTH (Authen::SASL)",
        ("swaks", "libnet-ssleay-perl", "libio-socket-ssl-perl", "libauthen-sasl-perl"),
        check=("swaks", "--support"),
        expect=("=== TLS supported", "=== Basic AUTH supported"),
    ),
    Requirement(
        "msmtp with TLS (GnuTLS) and XOAUTH2",
        ("msmtp",),
        check=("msmtp", "--version"),
        expect=("TLS/SSL library: GnuTLS", "xoauth2"),
    ),
    Requirement(
        "Debian's Chromium for the console's browser tests",
        ("chromium",),
        check=("/usr/bin/chromium", "--headless", "--no-sandbox", "--disable-gpu", "--version"),
        expect=("Chromium",),
        path="/usr/bin/chromium",
    ),
    Requirement(
        "Playwright's driver (its node binary links libatomic)",
        ("libatomic1",),
        check=(str(BIN / "python"), "-m", "playwright", "--version"),
        expect=("Version",),
    ),
    Requirement(
        "a CJK font, so the Chinese console's screenshots show text",
        ("fonts-wqy-zenhei",),
        path="/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc",
    ),
    Requirement(
        "Dovecot 2.3's submission service, a second upstream (its 2.3 configuration syntax)",
        ("dovecot-core", "dovecot-submissiond"),
        check=("dovecot", "--version"),
        expect=("2.3.",),
        path="/usr/lib/dovecot/submission",
    ),
    Requirement(
        "unshare and mount (DNS and disk-full fault tests)",
        ("util-linux", "mount"),
        check=("unshare", "--version"),
        expect=("unshare",),
    ),
    Requirement(
        "systemd-analyze, which verifies the generated systemd unit",
        ("systemd",),
        check=("systemd-analyze", "--version"),
        expect=("systemd",),
    ),
    Requirement(
        "podman, which builds the container image (--isolation=chroot) and mounts it",
        ("podman",),
        check=("podman", "--version"),
        expect=("podman version",),
    ),
    Requirement(
        "Debian's Python with venv: the unit test installs mailgate as an administrator would",
        ("python3", "python3-venv"),
        check=("/usr/bin/python3", "-c", "import ensurepip, venv; print('venv ok')"),
        expect=("venv ok",),
    ),
    Requirement(
        "setpriv, which runs the unit's commands as an unprivileged user",
        ("util-linux",),
        check=("setpriv", "--version"),
        expect=("setpriv",),
    ),
    Requirement(
        "debootstrap, which makes the image test's Debian base (no registry needed)",
        ("debootstrap",),
        check=("debootstrap", "--version"),
        expect=("debootstrap",),
    ),
)


def run(*args: str | Path, env: dict[str, str] | None = None) -> int:
    return subprocess.call([str(a) for a in args], env=env)


def venv_python_version() -> str:
    if not (BIN / "python").exists():
        return ""
    done = subprocess.run(
        [BIN / "python", "-c", "import sys; print(sys.version)"],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def ensure_venv() -> None:
    """.venv for the Python running this script: `/usr/bin/python3 dev.py test` tests on the
    distribution's own Python (Debian 12: 3.11.2); a .venv of another Python is remade."""
    made = venv_python_version()
    if made != sys.version:
        version = sys.version.split()[0]
        print(f"mailgate: creating {VENV.name} for Python {version}", flush=True)
        if run(sys.executable, "-m", "venv", "--clear", VENV) != 0:
            sys.exit(
                "mailgate: could not create .venv; on Debian/Ubuntu install python3-venv first."
            )
    wanted = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()
    if STAMP.exists() and STAMP.read_text().strip() == wanted:
        return
    print(f"mailgate: installing mailgate and its dependencies into {VENV.name}", flush=True)
    pip: list[str | Path] = [BIN / "python", "-m", "pip", "--disable-pip-version-check", "-q"]
    if (
        run(*pip, "install", "--upgrade", "pip") != 0
        or run(*pip, "install", "-e", f"{ROOT}[test]") != 0
    ):
        sys.exit(
            "mailgate: pip could not install the dependencies; check the network and try again."
        )
    STAMP.write_text(wanted + "\n")


def missing_capabilities() -> list[Requirement]:
    return [r for r in SYSTEM_REQUIREMENTS if not capable(r)]


def capable(requirement: Requirement) -> bool:
    if requirement.path and not Path(requirement.path).exists():
        return False
    if not requirement.check:
        return True
    if shutil.which(requirement.check[0]) is None:
        return False
    try:
        done = subprocess.run(
            requirement.check, capture_output=True, text=True, timeout=120, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    said = done.stdout + done.stderr
    return done.returncode == 0 and all(text in said for text in requirement.expect)


def apt_get(*args: str) -> bool:
    """apt-get with retries: Debian's mirror can fail for a minute."""
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    command = ["apt-get", "-o", "DPkg::Lock::Timeout=600", *args]
    for attempt in range(4):
        if attempt:
            print(f"mailgate: apt-get failed; trying again in {20 * attempt} s", flush=True)
            time.sleep(20 * attempt)
        if run(*command, env=env) == 0:
            return True
    return False


def ensure_system_tools() -> None:
    missing = missing_capabilities()
    if not missing:
        return
    packages = sorted({pkg for r in missing for pkg in r.packages} | {"ca-certificates"})
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        sys.exit(
            "mailgate: the tests need what this machine lacks: "
            + "; ".join(r.what for r in missing)
            + "\nInstall it (Debian/Ubuntu: sudo apt-get install -y --no-install-recommends "
            + " ".join(packages)
            + ") and run again."
        )
    print(f"mailgate: installing {', '.join(packages)} with apt-get", flush=True)
    # Packages with daemons (Dovecot, PostgreSQL) must not start system services: the
    # tests start their own on private configs. policy-rc.d is Debian's switch for that.
    policy = Path("/usr/sbin/policy-rc.d")
    ours = not policy.exists()
    if ours:
        policy.write_text("#!/bin/sh\n# mailgate dev.py: no services while installing\nexit 101\n")
        policy.chmod(0o755)
    try:
        installed = apt_get("update", "-qq") and apt_get(
            "install", "-y", "-qq", "--no-install-recommends", *packages
        )
    finally:
        if ours:
            policy.unlink()
    if not installed:
        sys.exit(
            "mailgate: apt-get could not install " + ", ".join(packages) + "; run again later."
        )
    still = missing_capabilities()
    if still:
        sys.exit(
            "mailgate: installed, but still missing: "
            + "; ".join(f"{r.what} (check: {' '.join(r.check) or r.path})" for r in still)
        )


def parallel(args: list[str]) -> list[str]:
    """Two pytest-xdist workers unless the caller chose (-n N, -n 0 for none). loadscope
    keeps a module's tests on one worker, so module-scoped simulators start once."""
    if any(a == "-n" or a.startswith(("-n", "--numprocesses")) for a in args):
        return []
    return ["-n", "2", "--dist", "loadscope"]


def test(args: list[str]) -> int:
    ensure_system_tools()
    os.chdir(ROOT)
    steps: list[tuple[str, list[str | Path]]] = []
    if args[:1] == ["--suite-only"]:  # another interpreter: the code was checked already
        args = args[1:]
    else:
        steps = [
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
    code = run(BIN / "python", "-m", "pytest", *parallel(args), *args)
    if code == 5:
        print("mailgate: pytest collected no tests: the set-up is broken", file=sys.stderr)
        return 1
    return code


def under(python: str, argv: list[str]) -> int:
    """Run this script again under another interpreter, in a virtual environment of its own."""
    path = shutil.which(python)
    if path is None:
        print(f"mailgate: no such Python: {python}", file=sys.stderr)
        return 2
    version = version_of(path)
    if not version:
        print(f"mailgate: {path} does not run as Python", file=sys.stderr)
        return 2
    env = {**os.environ, "MAILGATE_DEV_VENV": f".venv-{version}"}
    return run(path, ROOT / "dev.py", *argv, env=env)


def version_of(python: str) -> str:
    probe = [python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=60, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    return done.stdout.strip() if done.returncode == 0 else ""


def other_pythons() -> list[str]:
    """Supported interpreters (3.11 and newer) on this machine other than the running one,
    one per version, oldest first: the distribution's own, any in PATH, pyenv's."""
    names = [f"python3.{minor}" for minor in range(11, 20)]
    candidates = ["/usr/bin/python3", *(f"/usr/bin/{n}" for n in names)]
    candidates += [found for n in names if (found := shutil.which(n))]
    candidates += sorted(str(p) for p in Path.home().glob(".pyenv/versions/3.*/bin/python3"))
    found: dict[tuple[int, ...], str] = {tuple(sys.version_info[:3]): sys.executable}
    for candidate in candidates:
        version = version_of(candidate) if Path(candidate).exists() else ""
        parts = tuple(int(x) for x in version.split(".")) if version else ()
        if parts >= (3, 11) and parts not in found:
            found[parts] = candidate
    del found[tuple(sys.version_info[:3])]
    return [found[v] for v in sorted(found)]


def main() -> int:
    argv = sys.argv[1:]
    if argv[:1] == ["--python"] and len(argv) >= 2:
        return under(argv[1], argv[2:])
    if argv[:1] == ["pythons"]:
        print("\n".join(other_pythons()))
        return 0
    if not argv or argv[0] not in {"demo", "test", "mailgate"}:
        print(__doc__)
        return 2
    command, rest = argv[0], argv[1:]
    ensure_venv()
    if command == "test":
        return test(rest)
    if command == "demo":
        return run(BIN / "mailgate", "demo", *rest)
    return run(BIN / "mailgate", *rest)


if __name__ == "__main__":
    sys.exit(main())
