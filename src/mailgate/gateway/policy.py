"""Sender policy for relayed mail and the header rewriting it needs.

Exchange rejects mail whose sender the signed-in mailbox may not send as (554 5.2.252
SendAsDenied), so by default the envelope and From become the mailbox's address.

Exchange Online lets the signed-in mailbox send only as its primary address, its aliases
and addresses it has Send As rights on (else 554 5.2.252 SendAsDenied). Devices put all
kinds of senders on their mail (`scanner@printer.local`, the user who pressed the button).
The policy decides what goes upstream:

- ``rewrite`` (default): envelope sender and From become the sender address; the device's
  From moves to Reply-To, so answers still reach whoever the device named.
- ``allow-list``: listed addresses pass unchanged; others are rewritten (or refused).
- ``pass-through``: nothing changes; Exchange decides.

Messages are stored exactly as received; :func:`prepare` derives what is sent at delivery
time. Only header lines are touched; the body bytes pass through untouched.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import formataddr, getaddresses

from mailgate.config.model import SenderPolicy
from mailgate.gateway.headers import decoded, field_name, field_value, split_fields


@dataclass(frozen=True)
class Prepared:
    envelope_from: str
    data: bytes
    #: What was changed, in words, for the message's history.
    notes: tuple[str, ...]


# Headers that name a sender Exchange would also check, or that an MTA sets itself.
_DROP_ON_REWRITE = {b"sender", b"return-path"}


def header_addresses(data: bytes, name: str = "From") -> list[tuple[str, str]]:
    """(display name, address) pairs of a header of the stored message."""
    fields, _ = split_fields(data)
    wanted = name.lower().encode()
    values = [field_value(f) for f in fields if field_name(f) == wanted]
    return [(decoded(n), a) for n, a in getaddresses(values) if a]


def safe_display_name(name: str, address: str) -> str:
    """A display name Exchange and mail clients will not mistake for an address.

    Devices often send `From: scanner@printer.local` or a display name holding an address;
    an "@" in the display name of a rewritten From looks like spoofing to anti-phishing
    filters, so it is spelled out. Control characters are removed.
    """
    text = name or address
    text = "".join(ch for ch in text if ch >= " " and ch != "\x7f")
    return text.replace("@", " at ").strip()


def _must_rewrite(
    policy: SenderPolicy,
    envelope_from: str,
    from_addresses: list[str],
    allowed: set[str],
    sender_address: str,
) -> bool:
    if policy is SenderPolicy.PASS_THROUGH:
        return False
    if policy is SenderPolicy.REWRITE:
        # Already the sender address, envelope and From alike: nothing to move to Reply-To.
        mine = sender_address.lower()
        return envelope_from.lower() != mine or {a.lower() for a in from_addresses} != {mine}
    senders = {a.lower() for a in [envelope_from, *from_addresses] if a}
    return not senders or not senders <= allowed


def prepare(
    data: bytes,
    envelope_from: str,
    policy: SenderPolicy,
    sender_address: str,
    allowed: tuple[str, ...] = (),
) -> Prepared:
    """What to submit for a stored message: envelope sender and message bytes.

    *sender_address* is the address the signed-in mailbox sends as; *allowed* are the
    other addresses it may use (aliases, send-as grants) for ``allow-list``.
    """
    fields, rest = split_fields(data)
    from_pairs = header_addresses(data)
    allowed_set = {a.lower() for a in (*allowed, sender_address)}
    if not _must_rewrite(
        policy, envelope_from, [a for _, a in from_pairs], allowed_set, sender_address
    ):
        return Prepared(envelope_from, data, ())
    notes: list[str] = []
    original_from = next((f for f in fields if field_name(f) == b"from"), None)
    display, original_address = from_pairs[0] if from_pairs else ("", envelope_from)
    new_from = formataddr(
        (safe_display_name(display, original_address), sender_address), charset="utf-8"
    )
    out: list[bytes] = []
    for field in fields:
        name = field_name(field)
        if name == b"from":
            continue
        if name in _DROP_ON_REWRITE:
            notes.append(f"removed {name.decode().title()} header")
            continue
        out.append(field)
    has_reply_to = any(field_name(f) == b"reply-to" for f in fields)
    head = [b"From: " + new_from.encode("utf-8") + b"\r\n"]
    if original_from is not None and not has_reply_to:
        head.append(b"Reply-To:" + original_from.split(b":", 1)[1])
        notes.append(f"device From {field_value(original_from)!r} moved to Reply-To")
    notes.append(f"From set to {sender_address}")
    if envelope_from.lower() != sender_address.lower():
        notes.append(f"envelope sender {envelope_from or '<>'} replaced by {sender_address}")
    return Prepared(sender_address, b"".join(head + out) + rest, tuple(notes))
