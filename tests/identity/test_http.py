"""The identity platform's HTTPS session trusts the settings, not the environment."""

from __future__ import annotations

import os
import ssl
import stat
from pathlib import Path

import certifi
import pytest
import requests

from mailgate.config.model import TrustConfig
from mailgate.identity.http import DEFAULT_TIMEOUT, build_session, combined_ca_bundle
from mailgate.sim.server import SimulatorThread
from mailgate.trust import CaBundleError, ssl_context


def test_defaults_ignore_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/nonexistent.pem")
    monkeypatch.setenv("HTTPS_PROXY", "http://127.0.0.1:9")
    session = build_session(TrustConfig())
    assert session.trust_env is False
    assert session.verify == certifi.where()
    assert session.proxies == {}


def test_proxy_setting() -> None:
    session = build_session(TrustConfig(https_proxy="http://proxy.example:3128"))
    assert session.proxies == {"https": "http://proxy.example:3128"}


def test_combined_bundle(tmp_path: Path) -> None:
    extra = tmp_path / "proxy-ca.pem"
    extra.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    cache = tmp_path / "cache"
    first = combined_ca_bundle(extra, cache)
    again = combined_ca_bundle(extra, cache)
    assert first == again
    content = first.read_bytes()
    assert content.startswith(Path(certifi.where()).read_bytes().rstrip(b"\n"))
    assert content.endswith(extra.read_bytes())
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700
    extra.write_text(extra.read_text() + extra.read_text())
    assert combined_ca_bundle(extra, cache) != first  # content changed: a new file


def test_unusable_ca_bundle(tmp_path: Path) -> None:
    with pytest.raises(CaBundleError, match="does not exist"):
        build_session(TrustConfig(ca_bundle=tmp_path / "missing.pem"), cache_dir=tmp_path)
    der = tmp_path / "ca.der"
    der.write_bytes(b"\x30\x82\x01\x0a")
    with pytest.raises(CaBundleError, match="not DER"):
        build_session(TrustConfig(ca_bundle=der), cache_dir=tmp_path)


def test_shared_cache_dir_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o777)  # noqa: S103 - the point of the test
    extra = tmp_path / "ca.pem"
    extra.write_text("-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(CaBundleError, match="not a private directory"):
        combined_ca_bundle(extra, shared)


def test_session_reaches_the_simulator_despite_env(
    sim: SimulatorThread, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # The trap: REQUESTS_CA_BUNDLE (here certifi, which does not trust the simulator) would
    # replace verify if trust_env were on. (No failed-handshake check here: the simulator's
    # shutdown then waits 30 s for that connection; reported to its owner.)
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    with build_session(TrustConfig(ca_bundle=sim.ca_path), cache_dir=tmp_path) as session:
        answer = session.get(f"{sim.idp_url}/common/v2.0/.well-known/openid-configuration")
    assert answer.status_code == 200
    assert "token_endpoint" in answer.json()


def test_default_timeout_applied() -> None:
    session = build_session(TrustConfig())
    seen: dict[str, object] = {}

    def fake_send(request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        seen.update(kwargs)
        response = requests.Response()
        response.status_code = 204
        return response

    session.send = fake_send  # type: ignore[method-assign]
    session.get("https://login.microsoftonline.com/")
    assert seen["timeout"] == DEFAULT_TIMEOUT


def test_ssl_context_trusts_the_extra_ca(sim: SimulatorThread) -> None:
    plain = len(ssl.create_default_context().get_ca_certs())
    assert len(ssl_context(TrustConfig(ca_bundle=sim.ca_path)).get_ca_certs()) > plain
