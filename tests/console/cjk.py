"""Finds English left on a Chinese page: lines without one CJK character.

Allowed without CJK: addresses, URLs, host:port, codes (AADSTS…, 5.7.139), numbers, times,
and the product and protocol names that stay in English in the manual (Microsoft,
Exchange Online, SMTP, OAuth 2.0, UPN…).
"""

from __future__ import annotations

import re

_CJK = re.compile(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]")
_ALLOWED = [
    re.compile(p)
    for p in (
        r"[\w.+-]+@[\w.-]+",  # addresses
        r"https?://\S+",
        r"\b[\w.-]+:\d+\b",  # host:port
        r"\bAADSTS\d+\b",
        r"\b\d[\d.:,/ -]*\b",  # numbers, dates, times, enhanced codes
        r"\b(?:UTC|GMT|CST|[A-Z]{2,5}[+-]\d+)\b",
        r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b",
    )
]
#: Names that are not translated (the manual keeps them), and the language switch.
NAMES = {
    "mailgate", "Microsoft", "Exchange", "Online", "Outlook.com", "Outlook", "SMTP",
    "OAuth", "XOAUTH2", "UPN", "ID", "Entra", "GCC", "High", "21Vianet", "English",
    "STARTTLS", "TLS", "none", "starttls", "tls", "QR", "IP", "CA", "PEM", "DNS", "HTTPS",
    "MFA", "SMTP.Send", "B", "KB", "MB", "GB", "—",
}  # fmt: skip
_WORD = re.compile(r"[A-Za-z][A-Za-z.'-]*")


def english_lines(text: str) -> list[str]:
    """The lines of *text* that hold an English sentence: a line without a Chinese
    character that holds an English word, or a run of two English words beside Chinese."""
    found = []
    for line in (raw.strip() for raw in text.splitlines()):
        rest = line
        for pattern in _ALLOWED:
            rest = pattern.sub(" | ", rest)
        chinese = bool(_CJK.search(line))
        for run in _CJK.sub(" | ", rest).split("|"):
            words = [w.strip(".'-") for w in _WORD.findall(run)]
            english = [w for w in words if w and w not in NAMES]
            if len(english) >= (2 if chinese else 1):
                found.append(line)
                break
    return found
