"""The container image: it builds from this source tree with `podman build
--isolation=chroot`, carries the promised configuration (non-root user, /data volume,
HEALTHCHECK on /readyz, SIGTERM), and its filesystem runs `mailgate --version` and the demo
under chroot as the image's user.

The base image is made with debootstrap (container_base.py; cached under /var/tmp, about
half a minute the first time). Building takes a minute or more (apt-get and pip inside,
from Debian's archive and PyPI), so the whole module is marked slow.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mailgate import __version__
from tests.bounds import HANG
from tests.install.container_base import ensure_base_image, podman_storage_problem

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
#: apt-get and pip inside the build, from Debian's archive and PyPI.
BUILD_TIMEOUT = 10 * HANG
#: The image's service user (Containerfile: useradd --uid 10001).
UID = 10001


def _missing() -> str | None:
    """Why the image cannot be tested here (skip), after failing on a missing tool."""
    for tool in ("podman", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed: `python3 dev.py test` installs it (apt-get)")
    if os.geteuid() != 0:
        return "needs root: debootstrap, podman mount and chroot do"
    with tempfile.TemporaryDirectory() as scratch:
        return podman_storage_problem(Path(scratch))


def _pip_cert() -> Path | None:
    """The CA bundle pip uses here (a TLS-inspecting proxy's CA may be in it)."""
    for candidate in (os.environ.get("PIP_CERT"), "/etc/ssl/certs/ca-certificates.crt"):
        if candidate and Path(candidate).is_file():
            return Path(candidate)
    return None


def _podman(*args: str, timeout: float = HANG) -> str:
    result = subprocess.run(
        ["podman", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    assert result.returncode == 0, (args, result.stdout[-4000:], result.stderr[-4000:])
    return result.stdout.strip()


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    missing = _missing()
    if missing is not None:
        pytest.skip(missing)
    base = ensure_base_image()
    tag = f"localhost/mailgate-test-{uuid.uuid4().hex[:8]}:latest"
    secret = [] if (cert := _pip_cert()) is None else ["--secret", f"id=pip_cert,src={cert}"]
    _podman(
        "build",
        "--isolation=chroot",
        "--format=docker",  # HEALTHCHECK exists only in the docker format, not in OCI's
        "--build-arg",
        f"BASE_IMAGE={base}",
        *secret,
        "-t",
        tag,
        "-f",
        str(ROOT / "Containerfile"),
        str(ROOT),
        timeout=BUILD_TIMEOUT,
    )
    try:
        yield tag
    finally:
        subprocess.run(["podman", "rmi", "--force", tag], capture_output=True, check=False)


@pytest.fixture
def rootfs(image: str) -> Iterator[Path]:
    """A writable filesystem of the image: a container created (not run) and mounted."""
    container = _podman("create", image)
    try:
        yield Path(_podman("mount", container))
    finally:
        subprocess.run(["podman", "umount", container], capture_output=True, check=False)
        subprocess.run(["podman", "rm", "--force", container], capture_output=True, check=False)


def _chroot(rootfs: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """Run *argv* inside the image's filesystem as its user, with the image's environment."""
    env = {
        "PATH": "/opt/mailgate/bin:/usr/local/bin:/usr/bin:/bin",
        "HOME": "/data",
        "MAILGATE_DATA_DIR": "/data",
        "PYTHONUNBUFFERED": "1",
    }
    chroot = shutil.which("chroot") or "/usr/sbin/chroot"
    return subprocess.run(
        [chroot, f"--userspec={UID}:{UID}", str(rootfs), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=HANG,
        check=False,
    )


def test_image_configuration(image: str) -> None:
    (info,) = json.loads(_podman("image", "inspect", image))
    config: dict[str, Any] = info["Config"]
    assert config["User"] == "mailgate"
    assert "/data" in config["Volumes"]
    assert "MAILGATE_DATA_DIR=/data" in config["Env"]
    assert config["StopSignal"] in {"SIGTERM", "15"}
    health = info.get("Healthcheck") or config.get("Healthcheck")
    assert health is not None, info
    assert any("/readyz" in part for part in health["Test"])
    assert "mailgate serve" in " ".join(config["Cmd"])


def test_version_runs_under_chroot(rootfs: Path) -> None:
    result = _chroot(rootfs, "/opt/mailgate/bin/mailgate", "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"mailgate, version {__version__}"
    assert not (rootfs / "src").exists(), "the source tree is left in the image"


def test_demo_runs_under_chroot(rootfs: Path) -> None:
    result = _chroot(
        rootfs,
        "/opt/mailgate/bin/mailgate",
        "demo",
        "--auto-approve",
        "scanner@contoso.cn",
        "--once",
        "--port",
        "0",
    )
    assert result.returncode == 0, (result.stdout[-4000:], result.stderr[-4000:])
    assert "Signed in as scanner@contoso.cn" in result.stdout
    assert "A first message went device -> mailgate -> simulated Exchange" in result.stdout


def test_container_runs(image: str) -> None:
    """Running the image for real: not possible in this sandbox, where crun cannot set
    rlimits; it skips then (and only then) and says so."""
    result = subprocess.run(
        ["podman", "run", "--rm", image, "mailgate", "--version"],
        capture_output=True,
        text=True,
        timeout=HANG,
        check=False,
    )
    rlimit = [line for line in result.stderr.splitlines() if "setrlimit" in line]
    if result.returncode != 0 and rlimit:
        pytest.skip(
            "running containers is not possible in this sandbox (crun cannot set rlimits: "
            f"{rlimit[0].strip()[:160]}); the image's filesystem is tested under chroot"
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"mailgate, version {__version__}"
