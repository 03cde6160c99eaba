"""Console languages: English and Simplified Chinese, all strings through gettext.

The catalogs are the .po files under ``locales/``; they are compiled in memory at start-up
(Babel's ``write_mo`` into a buffer), so a fresh ``pip install -e .`` needs no build step
and nothing is written into the package directory. Each language gets its own Jinja2
environment with the i18n extension installed on that language's translations.
"""

from __future__ import annotations

import datetime as dt
import gettext
import io
from functools import cache
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from jinja2 import Environment, FileSystemLoader, select_autoescape

from mailgate.console import texts
from mailgate.texts import N_

LOCALES = Path(__file__).parent / "locales"
TEMPLATES = Path(__file__).parent / "templates"
#: Setting value (console.language, lower case) -> catalog directory.
LANGUAGES = {"en": "en", "zh-cn": "zh_CN"}
#: What the language switch shows, each in its own language (never translated).
LANGUAGE_NAMES = {"en": "English", "zh-cn": "简体中文"}
LANGUAGE_COOKIE = "mailgate_lang"
DEFAULT_LANGUAGE = "en"


#: Queue states as the pages name them.
STATE_NAMES = {
    "queued": N_("queued"),
    "deferred": N_("deferred"),
    "held": N_("held"),
    "sending": N_("sending"),
    "sent": N_("sent"),
    "failed": N_("failed"),
}


def format_time(timestamp: float | None) -> str:
    if not timestamp:
        return "—"
    return dt.datetime.fromtimestamp(timestamp).astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")


def filesize(size: int | None) -> str:
    """362 B, 4.2 KB, 35.0 MB: binary units, as the size settings are written (35M)."""
    value = float(size or 0)
    for unit in ("B", "KB", "MB"):
        if value < 1024:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"


def normalize(language: str | None) -> str:
    value = (language or "").strip().lower().replace("_", "-")
    if value in LANGUAGES:
        return value
    if value.startswith("zh"):
        return "zh-cn"
    return DEFAULT_LANGUAGE


def from_accept_language(header: str) -> str | None:
    """The browser's most wanted language the console has (RFC 9110 section 12.5.4)."""
    wanted: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        quality = 1.0
        if params.strip().startswith("q="):
            try:
                quality = float(params.strip()[2:])
            except ValueError:
                continue
        if tag and quality > 0:
            wanted.append((-quality, index, tag.strip().lower()))
    for _, _, tag in sorted(wanted):
        if tag.startswith("zh"):
            return "zh-cn"
        if tag == "en" or tag.startswith("en-"):
            return "en"
    return None


@cache
def translations(language: str) -> gettext.NullTranslations:
    po_path = LOCALES / LANGUAGES[normalize(language)] / "LC_MESSAGES" / "messages.po"
    if not po_path.exists():
        return gettext.NullTranslations()
    with po_path.open("rb") as po_file:
        catalog = read_po(po_file)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


def gettext_for(language: str) -> gettext.NullTranslations:
    return translations(normalize(language))


@cache
def environment(language: str) -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        extensions=["jinja2.ext.i18n"],
        trim_blocks=True,
        lstrip_blocks=True,
    )
    catalog = gettext_for(language)
    env.install_gettext_translations(catalog, newstyle=True)  # type: ignore[attr-defined]
    env.filters["datetime"] = format_time
    env.filters["filesize"] = filesize
    env.filters["state_name"] = lambda state: catalog.gettext(STATE_NAMES.get(state) or str(state))
    say = catalog.gettext
    env.filters["stored"] = lambda text: texts.stored_text(str(text or ""), say)
    env.filters["recipient_state"] = lambda v: texts.word(texts.RECIPIENT_STATES, str(v), say)
    env.filters["event_level"] = lambda v: texts.word(texts.EVENT_LEVELS, str(v), say)
    env.filters["event_kind"] = lambda v: texts.word(texts.EVENT_KINDS, str(v), say)
    env.filters["provider_title"] = lambda v: texts.provider_title(str(v), say)
    env.filters["code_title"] = lambda v: texts.code_title(str(v), say)
    return env
