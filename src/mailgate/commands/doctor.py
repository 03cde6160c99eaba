"""`mailgate doctor`: the checks an administrator would otherwise do by hand, in order.

Theory of operation. Each check is a small function that does one piece of I/O (a DNS
lookup, a TCP connect, a TLS handshake, one HTTPS request, a token refresh, an SMTP
session) and returns a :class:`CheckResult`: pass, warn, fail or skip, what was seen, and
the fix in plain words. :func:`run_checks` only orders them and skips a check whose
prerequisite did not pass, saying which one, so the first failure is the one to fix.
The order follows the path a message takes: settings, name resolution, TCP, TLS to the
sign-in host, its clock, its OpenID metadata, the sign-in and a token refresh, and finally
an SMTP session up to a successful AUTH and QUIT, without sending anything.

Nothing here prints a token or a password: details are built from host names, replies,
certificate names and our own sentences only.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import email.utils
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import unquote, urlsplit

import click
import requests

from mailgate.account import sender_address, token_manager
from mailgate.commands.common import EXIT_FAILED, duration, emit_json, when
from mailgate.config.commands import open_store
from mailgate.config.errors import ConfigError
from mailgate.config.model import OAuthConfig, Settings, TrustConfig
from mailgate.config.presets import Security
from mailgate.config.store import Store
from mailgate.identity.errors import IdentityError, SignInProblem, classify, network_problem
from mailgate.identity.http import build_session
from mailgate.identity.tokens import TokenManager
from mailgate.submission.errors import SubmissionError
from mailgate.trust import CaBundleError, ssl_context
from mailgate.upstream import Upstream

#: Seconds for each network step (connect, handshake, one request).
IO_TIMEOUT = 10.0
#: The SMTP session has several steps (greeting, EHLO, STARTTLS, EHLO, AUTH); cap it whole.
SMTP_DEADLINE = 3 * IO_TIMEOUT
#: Tokens carry nbf/exp; Entra ID tolerates about 5 minutes of skew, so warn well before.
CLOCK_WARN_AFTER = 120.0
CLOCK_FAIL_AFTER = 300.0
#: Warn when the sign-in host's certificate expires this soon (a proxy's, usually).
CERT_WARN_DAYS = 7

_CA_FIX = (
    "TLS-inspecting proxy? set network.ca_bundle to its CA (PEM): "
    "`mailgate config set network.ca_bundle /path/to/proxy-ca.pem`. "
    "Otherwise check the sign-in host setting."
)
_CLOCK_FIX = (
    "Set this machine's clock right and keep it synchronised (`timedatectl set-ntp true`, or "
    "the Windows Time service): tokens carry not-before and expiry times."
)


class Status(StrEnum):
    PASS = "pass"  # noqa: S105 - a status, not a password
    WARN = "warn"
    FAIL = "fail"
    SKIP = "skip"


@dataclass(frozen=True)
class CheckResult:
    """One line of the doctor's report. ``name`` is a stable id such as "tcp.smtp"."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


def _pass(name: str, detail: str) -> CheckResult:
    return CheckResult(name, Status.PASS, detail)


def _fail(name: str, detail: str, fix: str) -> CheckResult:
    return CheckResult(name, Status.FAIL, detail, fix)


def _problem(name: str, problem: SignInProblem) -> CheckResult:
    detail = f"{problem.code}: {problem.title}. {problem.explanation}".strip()
    return _fail(name, detail, problem.what_to_do)


# -- hosts ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Target:
    """A host and port the doctor reaches, with what to say when it cannot."""

    role: str  # "SMTP server", "sign-in host", "HTTPS proxy"
    host: str
    port: int

    def __str__(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"


def sign_in_target(oauth: OAuthConfig) -> Target:
    """The sign-in host setting may carry a port (the simulator's does)."""
    parts = urlsplit(f"https://{oauth.login_host}")
    return Target("sign-in host", parts.hostname or oauth.login_host, parts.port or 443)


@dataclass(frozen=True)
class Proxy:
    target: Target
    scheme: str
    #: "user:password" for Proxy-Authorization, never shown.
    credentials: str | None = field(default=None, repr=False)


def parse_proxy(url: str) -> Proxy:
    parts = urlsplit(url if "://" in url else f"http://{url}")
    default_port = 443 if parts.scheme == "https" else 80
    credentials = None
    if parts.username is not None:
        credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
    target = Target("HTTPS proxy", parts.hostname or "", parts.port or default_port)
    return Proxy(target, parts.scheme, credentials)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def resolve(host: str, port: int, timeout: float = IO_TIMEOUT) -> list[str]:
    """The addresses of *host*; raises socket.gaierror or TimeoutError."""
    # RFC 6761 section 6.4: names under .invalid never resolve; answer without asking DNS.
    if host.lower().rstrip(".").endswith(".invalid") or host.lower() == "invalid":
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known (.invalid)")
    box: dict[str, Any] = {}

    def lookup() -> None:
        try:
            box["infos"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except OSError as exc:
            box["error"] = exc

    # getaddrinfo has no timeout of its own; a daemon thread lets us stop waiting.
    worker = threading.Thread(target=lookup, daemon=True)
    worker.start()
    worker.join(timeout)
    if "error" in box:
        raise box["error"]
    if "infos" not in box:
        raise TimeoutError(f"no answer within {timeout:.0f} s")
    return list(dict.fromkeys(str(info[4][0]) for info in box["infos"]))


def check_dns(name: str, target: Target, *, soft: bool = False) -> CheckResult:
    """*soft*: a failure is only a warning (the HTTPS proxy resolves the name, not us)."""
    if _is_ip(target.host):
        return _pass(name, f"{target.role} {target.host} is an IP address; nothing to resolve.")
    try:
        addresses = resolve(target.host, target.port)
    except (OSError, TimeoutError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        detail = f"The {target.role} {target.host} does not resolve: {reason}."
        if soft:
            return CheckResult(
                name,
                Status.WARN,
                detail + " The HTTPS proxy resolves it instead, so this may be fine.",
                "If the checks below fail, check the sign-in host setting.",
            )
        return _fail(
            name,
            detail,
            f"Check the {target.role} name in the settings (`mailgate config show`) and this "
            "machine's DNS servers (/etc/resolv.conf).",
        )
    shown = ", ".join(addresses[:3]) + (" ..." if len(addresses) > 3 else "")
    return _pass(name, f"{target.role} {target.host} resolves to {shown}.")


def check_tcp(name: str, target: Target) -> CheckResult:
    started = time.monotonic()
    try:
        with socket.create_connection((target.host, target.port), timeout=IO_TIMEOUT):
            pass
    except TimeoutError:
        return _fail(
            name,
            f"No answer from the {target.role} {target} within {IO_TIMEOUT:.0f} s.",
            f"A firewall probably drops the connection: allow this machine to reach {target} "
            f"(TCP port {target.port}).",
        )
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        return _fail(
            name,
            f"Cannot connect to the {target.role} {target}: {reason}.",
            _tcp_fix(target),
        )
    took = (time.monotonic() - started) * 1000
    return _pass(name, f"Connected to the {target.role} {target} in {took:.0f} ms.")


def _tcp_fix(target: Target) -> str:
    if target.role == "SMTP server":
        return (
            f"Check that the SMTP server address and port are right (`mailgate config show`; "
            f"Exchange Online takes submissions on port 587), that the server is up, and that "
            f"no firewall blocks outbound TCP port {target.port}."
        )
    if target.role == "HTTPS proxy":
        return "Check the network.https_proxy setting and that the proxy is running."
    return (
        f"Allow outbound HTTPS (TCP port {target.port}) to {target.host}, or set "
        "network.https_proxy if this network reaches the internet through a proxy."
    )
