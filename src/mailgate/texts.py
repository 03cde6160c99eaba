"""Texts a person reads, marked for the message catalog (console/locales).

Modules below the console mark their sentences with :func:`N_` so Babel extracts them;
the console translates them at display time (``console/i18n.py``), the CLI prints them as
they are (English). One catalog entry serves both.
"""

from __future__ import annotations


def N_(message: str) -> str:
    """Marks a string for extraction; it is translated where it is shown."""
    return message
