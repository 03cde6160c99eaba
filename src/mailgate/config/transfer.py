"""`config export` / `config import`: settings as a TOML file, secrets left out.

The standard library reads TOML (tomllib) but does not write it; the settings are only
strings and lists of strings, so a small writer with TOML's basic-string escapes does.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping

from mailgate.config.errors import ValidationError
from mailgate.config.keys import KEYS, SettingValue

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\b": "\\b",
    "\t": "\\t",
    "\n": "\\n",
    "\f": "\\f",
    "\r": "\\r",
}

SECRETS_NOTE = (
    "Secrets are left out: the SMTP password (set it with `mailgate config set smtp.password -`) "
    "and the sign-in (run `mailgate login` on the new machine)."
)


def toml_string(text: str) -> str:
    """A TOML basic string (TOML 1.0 §String): quotes, backslash and control characters escaped."""
    out = []
    for char in text:
        if char in _ESCAPES:
            out.append(_ESCAPES[char])
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\u{ord(char):04X}")
        else:
            out.append(char)
    return '"' + "".join(out) + '"'


def toml_value(value: SettingValue) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(toml_string(item) for item in value) + "]"
    return toml_string(value)


def export_toml(values: Mapping[str, SettingValue], header: str = "mailgate settings") -> str:
    """Every non-secret key, grouped into TOML tables by its prefix, with its help as a comment."""
    # Every header line a comment: a path with a newline in it must not break the file.
    lines = [f"# {line}" for line in [*header.splitlines(), SECRETS_NOTE]] + [""]
    tables: dict[str, list[str]] = {}
    for key in KEYS.values():
        if key.secret:
            continue
        table, _, name = key.name.rpartition(".")
        entry = [f"# {key.help}", f"{name} = {toml_value(values.get(key.name, key.default))}"]
        if table:
            tables.setdefault(table, []).extend(entry)
        else:
            lines.extend([*entry, ""])
    for table, entries in tables.items():
        lines.extend([f"[{table}]", *entries, ""])
    return "\n".join(lines)


def parse_toml(text: str, source: str) -> dict[str, object]:
    """A TOML settings file as dotted keys; the values are validated later by the store."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ValidationError(
            f"{source} is not valid TOML ({error}). Fix it, or export again."
        ) from None
    flat: dict[str, object] = {}
    for name, value in document.items():
        if not isinstance(value, dict):
            flat[name] = value
            continue
        for sub, inner in value.items():
            if isinstance(inner, dict):
                raise ValidationError(f"{source}: [{name}.{sub}] is not a mailgate setting table.")
            flat[f"{name}.{sub}"] = inner
    return flat
