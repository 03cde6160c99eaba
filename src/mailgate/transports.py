"""Small helpers for asyncio transports shared by the servers in this package."""

from __future__ import annotations

import asyncio


def abort(transport: asyncio.BaseTransport) -> None:
    """Cut a connection now, whatever state it is in.

    Early 3.11 releases (Debian 12 ships 3.11.2) raise ``AttributeError`` from the SSL
    transport's ``abort()`` once ``close()`` has run twice, because it has dropped its
    protocol (3.11.7 checks for that). Such a connection is already gone: nothing to cut.
    """
    if getattr(transport, "_ssl_protocol", transport) is None:
        return
    if hasattr(transport, "abort"):
        transport.abort()
