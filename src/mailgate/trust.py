"""Which servers mailgate trusts: the system roots plus the administrator's extra CA bundle.

The extra bundle (for TLS-inspecting proxies, and the simulator's CA) is trusted
*in addition to* the system store, never instead of it, so pointing the setting at a
proxy's CA cannot break the way to Microsoft. One module serves SMTP (an SSLContext) and
HTTPS (a PEM file for requests, built in :mod:`mailgate.identity.http`).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from mailgate.config.model import TrustConfig
from mailgate.errors import MailgateError

_PEM_MARKER = b"-----BEGIN CERTIFICATE-----"


class CaBundleError(MailgateError, ValueError):
    """The extra CA bundle setting points to something unusable."""


def read_extra_ca(path: Path) -> bytes:
    """The PEM certificates of the extra CA bundle, or a CaBundleError saying what is wrong."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise CaBundleError(
            f"the extra CA bundle {path} does not exist; fix or clear the CA bundle setting "
            "(mailgate config set network.ca_bundle ...)"
        ) from None
    except OSError as exc:
        raise CaBundleError(
            f"cannot read the CA bundle {path}: {exc.strerror or exc}; "
            "set the CA bundle setting to a readable PEM file"
        ) from None
    if _PEM_MARKER not in data:
        raise CaBundleError(
            f"{path} holds no PEM certificate (-----BEGIN CERTIFICATE-----); "
            "export the proxy's CA certificate as PEM (Base-64), not DER"
        )
    return data


def ssl_context(trust: TrustConfig | None = None) -> ssl.SSLContext:
    """A verifying client context: system trust + ``trust.ca_bundle``, TLS 1.2 or newer.

    Hostnames are checked; raises :class:`CaBundleError` with the path and what to do if the
    bundle is missing or not PEM certificates.
    """
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    # Exchange Online and Outlook.com refuse TLS 1.0/1.1 since 2022; so do we.
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if trust is not None and trust.ca_bundle is not None:
        read_extra_ca(trust.ca_bundle)  # the clear error, before ssl's terse one
        try:
            context.load_verify_locations(cafile=str(trust.ca_bundle))
        except (ssl.SSLError, OSError) as exc:
            raise CaBundleError(
                f"the extra CA bundle {trust.ca_bundle} cannot be read as PEM certificates "
                f"({exc}); export the CA certificate in PEM (Base-64) form"
            ) from None
    return context
