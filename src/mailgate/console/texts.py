"""Texts from below the console, rendered in the reader's language at display time.

Theory of operation. Sign-in problems carry their catalog texts unformatted with the values
they were formatted with (``SignInProblem.texts`` / ``params``), so :func:`problem_texts`
formats the reader's translation. History lines, hold reasons and event texts are stored as
English sentences by the queue (rows of older releases too); :func:`stored_text` recognises
each known shape by a pattern, translates its frame and, piece by piece, the catalog
sentences inside it (a problem title, an Exchange summary). A text of no known shape is
shown as stored.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from mailgate.config.errors import ValidationError
from mailgate.config.presets import PRESETS
from mailgate.identity.errors import SignInProblem, catalog_texts
from mailgate.texts import N_

Gettext = Callable[[str], str]


class _Keep(dict[str, str]):
    """format_map values: a placeholder a translation misspells stays visible, not a crash."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def fill(template: str, params: Mapping[str, str]) -> str:
    try:
        return template.format_map(_Keep(params))
    except (ValueError, IndexError):
        return template


def problem_texts(problem: SignInProblem, gettext: Gettext) -> tuple[str, str, str]:
    """Title, explanation and what to do, in the reader's language."""
    if problem.texts is None:
        return problem.title, problem.explanation, problem.what_to_do
    title, explanation, todo = (fill(gettext(t), problem.params) for t in problem.texts)
    return title, explanation, todo


#: Provider titles (config/presets.py), the menu and the Status page.
PROVIDER_TITLES = {
    "exchange-online": N_("Exchange Online (worldwide)"),
    "exchange-online-21vianet": N_("Exchange Online operated by 21Vianet (China)"),
    "exchange-online-gcc-high": N_("Exchange Online GCC High (US Government)"),
    "outlook-com": N_("Outlook.com (personal Microsoft accounts)"),
    "none": N_("Not specified (any SMTP server)"),
}


def provider_title(name: str, gettext: Gettext) -> str:
    preset = PRESETS.get(name)
    return gettext(PROVIDER_TITLES.get(name) or (preset.title if preset else name))


RECIPIENT_STATES = {"pending": N_("pending"), "sent": N_("sent"), "failed": N_("failed")}
EVENT_LEVELS = {"info": N_("info"), "warning": N_("warning"), "error": N_("error")}
EVENT_KINDS = {
    "resumed": N_("delivery resumed"),
    "upstream_up": N_("upstream server back"),
    "upstream_down": N_("upstream server unreachable"),
    "throttled": N_("throttled by Exchange"),
    "sign_in_needed": N_("sign-in needed"),
    "message_failed": N_("message failed"),
    "store_failed": N_("queue could not store mail"),
}


def word(table: Mapping[str, str], value: str, gettext: Gettext) -> str:
    return gettext(table[value]) if value in table else value


#: Stored shapes (gateway/queue.py, gateway/delivery.py, gateway/intake.py, operations.py).
#: Named groups are rendered again through :func:`_fragment` (they may be catalog texts).
_SHAPES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(r"accepted from (?P<client>.*) for (?P<count>\d+) recipient\(s\)"),
        N_("accepted from {client} for {count} recipient(s)"),
    ),
    (re.compile(r"sent"), N_("sent")),
    (re.compile(r"released"), N_("released")),
    (re.compile(r"released by the administrator"), N_("released by the administrator")),
    (re.compile(r"held by the administrator"), N_("held by the administrator")),
    (re.compile(r"signed in; released"), N_("signed in; released")),
    (re.compile(r"retry requested"), N_("retry requested")),
    (re.compile(r"sign-in needed"), N_("sign-in needed")),
    (
        re.compile(r"held until the signed-in account is confirmed"),
        N_("held until the signed-in account is confirmed"),
    ),
    (re.compile(r"held: (?P<why>.*)", re.S), N_("held: {why}")),
    (re.compile(r"deferred: (?P<why>.*)", re.S), N_("deferred: {why}")),
    (re.compile(r"failed: (?P<why>.*)", re.S), N_("failed: {why}")),
    (
        re.compile(r"waiting for Exchange's sending limits until (?P<until>.*)"),
        N_("waiting for Exchange's sending limits until {until}"),
    ),
    (
        re.compile(r"bounce report queued as message (?P<id>\d+)"),
        N_("bounce report queued as message {id}"),
    ),
    (
        re.compile(r"Signed in: delivery resumed, (?P<count>\d+) message\(s\) released\."),
        N_("Signed in: delivery resumed, {count} message(s) released."),
    ),
    (
        re.compile(r"The upstream server accepts mail again\."),
        N_("The upstream server accepts mail again."),
    ),
    (
        re.compile(
            r"Exchange refused a connection: (?P<why>.*) Using one connection for a while\."
        ),
        N_("Exchange refused a connection: {why} Using one connection for a while."),
    ),
    (
        re.compile(
            r"Cannot reach the upstream server: (?P<why>.*) Mail waits in the queue and is "
            r"retried\.",
            re.S,
        ),
        N_("Cannot reach the upstream server: {why} Mail waits in the queue and is retried."),
    ),
    (
        re.compile(
            r"All mail is held: (?P<why>.*)\. Sign in \(mailgate login, or the console's "
            r"sign-in page\); delivery resumes by itself\.",
            re.S,
        ),
        N_(
            "All mail is held: {why}. Sign in (mailgate login, or the console's sign-in page); "
            "delivery resumes by itself."
        ),
    ),
    (
        re.compile(
            r"Message (?P<id>\d+) from (?P<sender>\S*) could not be delivered to "
            r"(?P<to>[^:]*): (?P<reply>.*)",
            re.S,
        ),
        N_("Message {id} from {sender} could not be delivered to {to}: {reply}"),
    ),
]
#: The test send's client name (gateway: Incoming.client of the console).
CONSOLE = N_("console")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
#: Groups that are addresses, numbers or server replies: shown as they are.
_VERBATIM = frozenset({"client", "count", "id", "sender", "to", "reply", "until"})


def stored_text(text: str, gettext: Gettext) -> str:
    """A stored history line, hold reason or event text in the reader's language."""
    for pattern, template in _SHAPES:
        found = pattern.fullmatch(text)
        if found:
            values = {
                key: value if key in _VERBATIM else _fragment(value, gettext)
                for key, value in found.groupdict().items()
            }
            if values.get("client") == "console":
                values["client"] = gettext(CONSOLE)
            return fill(gettext(template), values)
    return _fragment(text, gettext)


def _fragment(text: str, gettext: Gettext) -> str:
    """A catalog sentence (or several) inside a stored line; unknown parts stay as they are."""
    whole = gettext(text)
    if whole != text:
        return whole
    parts = [_sentence(sentence, gettext) for sentence in _SENTENCE_END.split(text)]
    joiner = "" if gettext(FULL_STOP) != FULL_STOP else " "
    return joiner.join(parts)


#: "AADSTS50173 — Sign-in revoked.", "550 5.7.60: ...": a code kept before a catalog text.
_LEAD = re.compile(r"(?P<lead>\S+(?: \S+)? (?:—|-) |[^:]{1,40}: )(?P<rest>.+)", re.S)


def _sentence(sentence: str, gettext: Gettext) -> str:
    for lead, rest in [("", sentence), *_leads(sentence)]:
        translated = gettext(rest)
        if translated != rest:
            return lead + translated
        if rest.endswith("."):
            bare = gettext(rest[:-1])
            if bare != rest[:-1]:
                return lead + bare + _full_stop(gettext)
    return sentence


def _leads(sentence: str) -> list[tuple[str, str]]:
    found = _LEAD.fullmatch(sentence)
    return [(found.group("lead"), found.group("rest"))] if found else []


#: The sentence end of the reader's language ("。" in Chinese).
FULL_STOP = N_(".")


def _full_stop(gettext: Gettext) -> str:
    return gettext(FULL_STOP)


def code_title(code: str, gettext: Gettext) -> str:
    """A stored problem code ("AADSTS70000") with the catalog's title, translated."""
    texts = catalog_texts(code)
    return f"{code}: {gettext(texts[0])}" if texts else code


#: Console labels of the fields a validation error can be about (CLI options and keys).
FIELD_LABELS = {
    "--client-id": N_("Client ID"),
    "oauth.client_id": N_("Client ID"),
    "--server": N_("Server address"),
    "oauth.server": N_("Server address"),
    "smtp.server": N_("Server address"),
    "--host": N_("Host name"),
    "oauth.host": N_("Host name"),
    "--tenant": N_("Tenant"),
    "oauth.tenant": N_("Tenant"),
    "--scope": N_("Scope"),
    "oauth.scope": N_("Scope"),
    "smtp.username": N_("User name"),
    "sender.address": N_("Sender address"),
    "sender.allowed": N_("Allowed addresses (aliases, send-as), separated by commas"),
    "listener.bind": N_("Listen address"),
    "listener.port": N_("Port (STARTTLS offered)"),
    "listener.tls_port": N_("Implicit TLS port (empty: off)"),
    "listener.networks": N_("Allowed client networks, separated by commas"),
    "listener.tls_cert": N_("TLS certificate file (PEM; empty: self-signed)"),
    "listener.tls_key": N_("TLS key file (PEM)"),
    "listener.max_message_size": N_("Largest message (bytes)"),
    "network.https_proxy": N_("HTTPS proxy server"),
    "network.ca_bundle": N_("Extra CA certificates (PEM file path)"),
}


def error_text(error: Exception, gettext: Gettext) -> str:
    """A validation error in console words: the field's label, the reader's language."""
    if not isinstance(error, ValidationError) or error.text is None:
        return str(error)
    sentence = fill(gettext(error.text), error.params)
    label = FIELD_LABELS.get(error.field or "")
    return f"{gettext(label)}{gettext(COLON)}{sentence}" if label else sentence


#: Between a label and its sentence (a full-width colon in Chinese).
COLON = N_(": ")


def error_input(error: Exception) -> str | None:
    """The id of the input a validation error is about, for aria-describedby / focus."""
    field = getattr(error, "field", None)
    if not isinstance(field, str):
        return None
    return field.removeprefix("--").replace("-", "_").replace(".", "_")
