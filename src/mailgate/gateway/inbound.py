"""Inbound decisions of the listener, apart from I/O: who may connect, what may be sent.

These are the answers the SMTP listener gives; the aiosmtpd adapter only carries them.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

from mailgate.config.model import DEFAULT_ALLOWED_NETWORKS, DEFAULT_MAX_MESSAGE_SIZE


@dataclass(frozen=True)
class InboundPolicy:
    allowed_networks: tuple[str, ...] = DEFAULT_ALLOWED_NETWORKS
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    #: Recipients accepted per message; more than Exchange's 500 are sent in parts.
    max_recipients: int = 1000
    max_connections: int = 1000
    #: Seconds a client may stay silent before it is disconnected (RFC 5321 4.5.3.2.7: 5 min).
    idle_timeout: float = 300.0
    auth_required: bool = False
    #: Offer AUTH without TLS (old printers cannot do STARTTLS). Off by default.
    auth_allow_plaintext: bool = False
    _networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "_networks", parse_networks(self.allowed_networks))

    def client_allowed(self, address: str) -> bool:
        """Is a client at *address* (IPv4, IPv6 or IPv4-mapped IPv6) allowed to connect?"""
        try:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self._networks)


def parse_networks(
    values: Iterable[str],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Parse CIDR networks (or single addresses); a bad entry raises ValueError naming it."""
    parsed = []
    for value in values:
        try:
            parsed.append(ipaddress.ip_network(value.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"{value!r} is not a network; write it like 192.168.1.0/24 or 10.0.0.7"
            ) from None
    return tuple(parsed)


# A mailbox as RFC 5321 4.1.2 writes it: a dot-atom or quoted local part, "@", a domain
# or address literal. Loose on purpose (devices are sloppy), strict on what breaks parsing.
_MAILBOX = re.compile(
    r'^(?:"(?:[^"\\\r\n]|\\.)*"|[^\s"@<>()\[\],;:\\]+)@(?:[^\s@<>"]+|\[[^\]\s]+\])$'
)


def valid_mailbox(address: str) -> bool:
    """Could *address* (without angle brackets) be a mailbox? Used for MAIL and RCPT."""
    return len(address) <= 320 and _MAILBOX.match(address) is not None


BAD_SENDER = "501 5.1.7 Bad sender address syntax"
BAD_RECIPIENT = "501 5.1.3 Bad recipient address syntax"

# Replies (RFC 5321 section 4.2, enhanced codes RFC 3463). Clients see these texts.
REFUSED_NETWORK = "554 5.7.1 Access denied: this gateway does not accept mail from your address"
TOO_MANY_CONNECTIONS = "421 4.7.0 Too many connections, try again later"
TOO_MANY_RECIPIENTS = "452 4.5.3 Too many recipients"
STORED = "250 2.0.0 OK: queued as {id}"
NOT_STORED = "451 4.3.0 Message not stored, please try again later"
INTERNAL_ERROR = "451 4.3.0 Temporary server error, please try again later"
AUTH_FAILED = "535 5.7.8 Authentication credentials invalid"


class AuthThrottle:
    """Device AUTH brute-force protection, per client address, with the clock passed in.

    Each failure is remembered for *window* seconds; after *max_failures* of them the
    address is locked out for *lockout* seconds (every AUTH attempt is refused without
    checking the password). A success forgets the address's failures.
    """

    def __init__(self, max_failures: int = 5, window: float = 600.0, lockout: float = 900.0):
        self.max_failures = max_failures
        self.window = window
        self.lockout = lockout
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}

    def locked(self, client: str, now: float) -> bool:
        until = self._locked_until.get(client)
        if until is None:
            return False
        if now >= until:
            del self._locked_until[client]
            return False
        return True

    def failed(self, client: str, now: float) -> None:
        recent = [t for t in self._failures.get(client, []) if now - t < self.window]
        recent.append(now)
        if len(recent) >= self.max_failures:
            self._locked_until[client] = now + self.lockout
            recent = []
        self._failures[client] = recent
        # Bounded memory under a spray from many addresses: forget the quiet ones.
        if len(self._failures) > 10_000:
            self._failures = {k: v for k, v in self._failures.items() if v}

    def succeeded(self, client: str) -> None:
        self._failures.pop(client, None)


AUTH_LOCKED = "454 4.7.0 Too many failed authentications from your address, try again later"
