"""A Debian bookworm base image for the container test, made without a registry.

This machine reaches Debian's package archive but no container registry, so the base
image the Containerfile takes as BASE_IMAGE is made here: `debootstrap --variant=minbase`
into a directory, packed into a tarball and `podman import`-ed. debootstrap takes minutes,
so the tarball is cached under /var/tmp (kept across runs and reboots, unlike /tmp) and the
imported image stays in podman's storage.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

CACHE = Path(os.environ.get("MAILGATE_TEST_CACHE", "/var/tmp/mailgate-test-cache"))
#: Bump the version when the way the base is made changes: old caches are then not used.
BASE_TAG = "localhost/mailgate-test-base:bookworm-v2"
MIRROR = "http://deb.debian.org/debian"
#: ca-certificates: pip in the image verifies PyPI's certificate with the system bundle.
INCLUDE = "ca-certificates"


def image_exists(tag: str) -> bool:
    return subprocess.run(["podman", "image", "exists", tag], check=False).returncode == 0


def base_tarball() -> Path:
    """The cached rootfs tarball, made with debootstrap on first use."""
    tarball = CACHE / "bookworm-minbase-v2.tar"
    if tarball.exists():
        return tarball
    CACHE.mkdir(parents=True, exist_ok=True)
    rootfs = CACHE / "rootfs.partial"
    shutil.rmtree(rootfs, ignore_errors=True)
    subprocess.run(
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={INCLUDE}",
            "bookworm",
            str(rootfs),
            MIRROR,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    # Like Debian's own images: no downloaded .debs, no package lists (apt-get update
    # fetches them again), which halves the base.
    for cache in ("var/cache/apt/archives", "var/lib/apt/lists"):
        for item in (rootfs / cache).glob("*"):
            if item.is_file():
                item.unlink()
    partial = tarball.with_suffix(".tar.partial")
    subprocess.run(["tar", "-C", str(rootfs), "-cf", str(partial), "."], check=True)
    partial.replace(tarball)  # whole or not at all: an interrupted run starts again
    shutil.rmtree(rootfs, ignore_errors=True)
    return tarball


def podman_storage_problem(scratch: Path) -> str | None:
    """Why podman cannot store an image on this machine at all, or None.

    Importing a one-file image needs nothing of mailgate's; where even that fails, podman
    itself cannot work here: in a chroot whose root is not a mount point (a throw-away
    test machine made with debootstrap) it fails to remount / for its layers, and without
    /sys it cannot start. A real machine, CI's included, passes this probe."""
    (scratch / "probe").mkdir(parents=True, exist_ok=True)
    (scratch / "probe" / "empty").write_text("")
    tarball = scratch / "probe.tar"
    subprocess.run(["tar", "-C", str(scratch / "probe"), "-cf", str(tarball), "."], check=True)
    tag = "localhost/mailgate-test-probe:latest"
    done = subprocess.run(
        ["podman", "import", str(tarball), tag], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        return f"podman cannot store images on this machine: {done.stderr.strip()[-300:]}"
    subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, check=False)
    return None


def ensure_base_image() -> str:
    """The podman tag of the base image, imported from the cached tarball when missing."""
    if not image_exists(BASE_TAG):
        subprocess.run(
            ["podman", "import", str(base_tarball()), BASE_TAG],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    return BASE_TAG


if __name__ == "__main__":  # warm the cache by hand: python tests/install/container_base.py
    print(ensure_base_image())
