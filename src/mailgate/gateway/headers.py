"""Reading header fields of a stored message without touching its body.

Stored messages are kept byte for byte as received; rewriting at delivery time works on
header lines only (RFC 5322 section 2.2: a field is a line plus its folded continuation
lines), so bodies, including 8-bit and binary-ish content, pass through untouched.
"""

from __future__ import annotations

import re
from email.header import decode_header, make_header

_HEADER_END = re.compile(rb"\r?\n\r?\n")


def split_fields(data: bytes) -> tuple[list[bytes], bytes]:
    """Header fields (each with its folded continuation lines and line ending) and the rest.

    The rest starts with the blank line that ends the header section, so
    ``b"".join(fields) + rest == data`` for any message that has one.
    """
    if data.startswith((b"\r\n", b"\n")):
        return [], data
    match = _HEADER_END.search(data)
    head, rest = (data, b"") if match is None else (data[: match.start()], data[match.start() :])
    fields: list[bytes] = []
    for line in head.splitlines(keepends=True):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        else:
            fields.append(line)
    if fields and not fields[-1].endswith(b"\n"):
        # The separator's first line break ends the last header line; give it back to it.
        brk = b"\r\n" if rest.startswith(b"\r\n") else b"\n" if rest.startswith(b"\n") else b"\r\n"
        fields[-1] += brk
        rest = rest[len(brk) :] if rest.startswith(brk) else rest
    return fields, rest


def field_name(field: bytes) -> bytes:
    """Lower-cased name of a header field."""
    return field.split(b":", 1)[0].strip().lower()


def field_value(field: bytes) -> str:
    """Unfolded value of a header field, as text (undecoded RFC 2047 words stay as they are)."""
    raw = field.split(b":", 1)[1] if b":" in field else b""
    text = raw.decode("utf-8", errors="replace")
    return re.sub(r"\r?\n[ \t]", " ", text).strip()


def decoded(value: str) -> str:
    """RFC 2047 encoded words decoded for display; the value itself when they are broken."""
    try:
        return str(make_header(decode_header(value)))
    except (ValueError, LookupError):
        return value


def first_value(data: bytes, name: str) -> str | None:
    wanted = name.lower().encode()
    fields, _ = split_fields(data)
    return next((field_value(f) for f in fields if field_name(f) == wanted), None)
