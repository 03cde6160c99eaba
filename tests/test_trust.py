from __future__ import annotations

import ssl
from pathlib import Path

import pytest

from mailgate.config.model import TrustConfig
from mailgate.sim.ca import create_certificates
from mailgate.trust import CaBundleError, ssl_context


def test_default_context_verifies() -> None:
    context = ssl_context(TrustConfig())
    assert context.verify_mode is ssl.CERT_REQUIRED
    assert context.check_hostname
    assert context.minimum_version is ssl.TLSVersion.TLSv1_2
    assert context.cert_store_stats()["x509_ca"] > 0  # the system store is loaded


def test_extra_ca_is_added_to_the_system_store(tmp_path: Path) -> None:
    certs = create_certificates(tmp_path)
    system = ssl_context(None).cert_store_stats()["x509_ca"]
    extended = ssl_context(TrustConfig(ca_bundle=certs.ca_cert)).cert_store_stats()["x509_ca"]
    assert extended == system + 1


def test_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(CaBundleError, match=r"does not exist"):
        ssl_context(TrustConfig(ca_bundle=tmp_path / "nope.pem"))


def test_bundle_that_is_not_pem(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("this is not a certificate")
    with pytest.raises(CaBundleError, match=r"PEM"):
        ssl_context(TrustConfig(ca_bundle=bad))
