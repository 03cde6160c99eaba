"""HTTPS to the identity platform, trusting exactly what the settings say.

requests reads REQUESTS_CA_BUNDLE, CURL_CA_BUNDLE, HTTPS_PROXY and .netrc from the
environment and lets REQUESTS_CA_BUNDLE replace a Session's ``verify`` on every request
(``Session.merge_environment_settings``). mailgate must not depend on variables it does
not own, so the session has ``trust_env`` off and gets its trust and proxy from
:class:`~mailgate.config.model.TrustConfig` only.

requests can only verify against a CA *file*, so the extra CA bundle is combined with
certifi's roots (what requests trusts by default) into one PEM file, cached by content
hash in a directory only this user can write.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from pathlib import Path
from typing import Any

import certifi
import requests

from mailgate.config.model import TrustConfig
from mailgate.trust import CaBundleError, read_extra_ca

#: (connect, read) seconds. Microsoft answers in well under a second; a proxy may be slow.
DEFAULT_TIMEOUT: tuple[float, float] = (10.0, 30.0)


class TimeoutSession(requests.Session):
    """A Session with a default timeout: MSAL passes none, and a hung proxy must not hang us."""

    def __init__(self, timeout: tuple[float, float] = DEFAULT_TIMEOUT) -> None:
        super().__init__()
        self.default_timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("timeout") is None:
            kwargs["timeout"] = self.default_timeout
        return super().request(method, url, *args, **kwargs)


def _private_dir(base: Path | None) -> Path:
    if base is None:
        # Per user, because another local user must not be able to plant a CA for us.
        base = Path(tempfile.gettempdir()) / f"mailgate-{os.getuid()}"
    base.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = base.stat()
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) & 0o022:
        raise CaBundleError(f"{base} is not a private directory of this user; remove it")
    return base


def combined_ca_bundle(extra: Path, cache_dir: Path | None = None) -> Path:
    """A PEM file with certifi's roots followed by the extra CA bundle; reused while unchanged."""
    roots = Path(certifi.where()).read_bytes()
    combined = roots.rstrip(b"\n") + b"\n" + read_extra_ca(extra)
    digest = hashlib.sha256(combined).hexdigest()[:32]
    directory = _private_dir(cache_dir)
    target = directory / f"ca-bundle-{digest}.pem"
    if not target.exists():
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=".ca-", suffix=".pem")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(combined)
            os.replace(tmp, target)  # atomic: a concurrent reader never sees half a file
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
    return target


def ca_file(trust: TrustConfig, cache_dir: Path | None = None) -> str:
    """The CA file to verify the identity platform with."""
    if trust.ca_bundle is None:
        return certifi.where()
    return str(combined_ca_bundle(trust.ca_bundle, cache_dir))


def build_session(
    trust: TrustConfig,
    *,
    timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    cache_dir: Path | None = None,
) -> requests.Session:
    """A requests Session for the identity platform, independent of the environment."""
    session = TimeoutSession(timeout)
    session.trust_env = False
    session.verify = ca_file(trust, cache_dir)
    if trust.https_proxy:
        session.proxies = {"https": trust.https_proxy}
    return session
