"""The checks of `mailgate doctor`, each a small function returning a CheckResult.

See mailgate.commands.doctor for the order they run in and why.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import requests

from mailgate.account import missing_sender_advice, sender_address
from mailgate.commands.common import duration, when
from mailgate.config.model import OAuthConfig, Settings, TrustConfig
from mailgate.config.presets import Security
from mailgate.identity.errors import (
    IdentityError,
    SignInProblem,
    classify,
    network_problem,
)
from mailgate.identity.tokens import TokenManager
from mailgate.submission.errors import SubmissionError
from mailgate.trust import CaBundleError, ssl_context
from mailgate.upstream import Upstream

if TYPE_CHECKING:
    from mailgate.config.store import Store

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
        return _pass(name, f"The {target.role} {target.host} is an IP address; nothing to resolve.")
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
    return _pass(name, f"The {target.role} {target.host} resolves to {shown}.")


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


# -- TLS to the sign-in host --------------------------------------------------------------------
class ProxyRefusedError(Exception):
    """The HTTPS proxy did not open a tunnel."""


def _tunnel(sock: socket.socket, target: Target, proxy: Proxy) -> None:
    # RFC 9110 section 9.3.6: CONNECT host:port; a 2xx reply turns the connection into a tunnel.
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if proxy.credentials:
        basic = base64.b64encode(proxy.credentials.encode()).decode()
        lines.append(f"Proxy-Authorization: Basic {basic}")
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        if not chunk or len(head) > 65536:
            raise ProxyRefusedError("it closed the connection without a proper answer")
        head += chunk
    status_line = head.split(b"\r\n", 1)[0].decode("latin-1").strip()
    parts = status_line.split(" ", 2)
    if len(parts) < 2 or not parts[1].startswith("2"):
        raise ProxyRefusedError(f"it answered {status_line!r}")


@contextmanager
def _connection(target: Target, proxy: Proxy | None) -> Iterator[socket.socket]:
    """A TCP connection to *target*, through an HTTP CONNECT tunnel when a proxy is set."""
    first_hop = proxy.target if proxy is not None else target
    sock = socket.create_connection((first_hop.host, first_hop.port), timeout=IO_TIMEOUT)
    try:
        if proxy is not None:
            _tunnel(sock, target, proxy)
        yield sock
    finally:
        sock.close()


def _dn_name(rdns: Any) -> str:
    """The CN (else O) of a certificate name as ssl.getpeercert() gives it."""
    attributes = dict(pair for rdn in rdns for pair in rdn)
    return str(attributes.get("commonName") or attributes.get("organizationName") or "?")


def _describe_certificate(
    name: str, target: Target, cert: dict[str, Any], version: str | None, via: str
) -> CheckResult:
    subject, issuer = _dn_name(cert.get("subject", ())), _dn_name(cert.get("issuer", ()))
    expires = float(ssl.cert_time_to_seconds(str(cert["notAfter"])))
    detail = (
        f"{version or 'TLS'} with {target}{via}; certificate for {subject}, issued by {issuer}, "
        f"valid until {when(expires)}."
    )
    left = expires - time.time()
    if left < CERT_WARN_DAYS * 86_400:
        return CheckResult(
            name,
            Status.WARN,
            detail + f" It expires in {duration(left)}.",
            "If this is a TLS-inspecting proxy's certificate, have its administrator renew it.",
        )
    return _pass(name, detail)


def check_tls(name: str, target: Target, trust: TrustConfig) -> CheckResult:
    """A TLS handshake with the sign-in host, verified through the configured CA bundle."""
    proxy = parse_proxy(trust.https_proxy) if trust.https_proxy else None
    if proxy is not None and proxy.scheme != "http":
        return CheckResult(
            name,
            Status.WARN,
            f"The HTTPS proxy is an {proxy.scheme}:// proxy; doctor opens tunnels through "
            "http:// proxies only, so the certificate was not checked here.",
            "The metadata check below goes through the proxy; look at its result.",
        )
    try:
        context = ssl_context(trust)
    except CaBundleError as exc:
        return _fail(name, f"The CA bundle cannot be used: {exc}.", _CA_FIX)
    via = f" via the HTTPS proxy {proxy.target}" if proxy is not None else ""
    try:
        with (
            _connection(target, proxy) as raw,
            context.wrap_socket(raw, server_hostname=target.host) as tls,
        ):
            cert, version = tls.getpeercert() or {}, tls.version()
    except ssl.SSLCertVerificationError as exc:
        reason = exc.verify_message or exc.reason or str(exc)
        return _fail(name, f"The certificate of {target}{via} is not trusted: {reason}.", _CA_FIX)
    except ProxyRefusedError as exc:
        return _fail(
            name,
            f"The HTTPS proxy {proxy.target if proxy else ''} did not open a tunnel to {target}: "
            f"{exc}.",
            "Check network.https_proxy, that the proxy allows CONNECT to the sign-in host on "
            "port 443, and its user name and password if it needs them.",
        )
    except ssl.SSLError as exc:
        return _fail(
            name,
            f"The TLS handshake with {target}{via} failed: {exc.reason or exc}.",
            "Something between here and the sign-in host does not speak TLS properly (a proxy "
            "or firewall?). Check the sign-in host setting and network.https_proxy.",
        )
    except OSError as exc:
        hop = proxy.target if proxy is not None else target
        reason = "no answer" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        return _fail(name, f"Cannot connect to the {hop.role} {hop}: {reason}.", _tcp_fix(hop))
    return _describe_certificate(name, target, dict(cert), version, via)


# -- the identity platform over HTTPS ------------------------------------------------------------


def metadata_url(oauth: OAuthConfig) -> str:
    return f"https://{oauth.login_host}/{oauth.tenant}/v2.0/.well-known/openid-configuration"


def clock_verdict(skew: float) -> tuple[Status, str]:
    """*skew*: this machine's clock minus the server's, in seconds."""
    size = abs(skew)
    if size <= CLOCK_WARN_AFTER:
        return (
            Status.PASS,
            f"This machine's clock is within {duration(size)} of the sign-in host's.",
        )
    side = "ahead of" if skew > 0 else "behind"
    status = Status.FAIL if size > CLOCK_FAIL_AFTER else Status.WARN
    return status, f"This machine's clock is {duration(size)} {side} the sign-in host's."


def check_clock(
    name: str,
    oauth: OAuthConfig,
    session: requests.Session,
    clock: Callable[[], float] = time.time,
) -> CheckResult:
    """Our clock against the sign-in host's HTTP Date header (RFC 9110 section 6.6.1)."""
    before = clock()
    try:
        response = session.get(metadata_url(oauth))
    except requests.RequestException as exc:
        return _problem(name, network_problem(exc, oauth.login_host))
    after = clock()
    date = response.headers.get("Date")
    try:
        server_time = email.utils.parsedate_to_datetime(date or "").timestamp()
    except (TypeError, ValueError):
        return CheckResult(
            name,
            Status.WARN,
            f"{oauth.login_host} sent no usable Date header, so the clocks were not compared.",
            "Compare this machine's clock with an accurate time source by hand.",
        )
    # The Date header has whole seconds; the middle of the request is the best guess of "now".
    status, detail = clock_verdict((before + after) / 2 - server_time)
    return CheckResult(name, status, detail, "" if status is Status.PASS else _CLOCK_FIX)


def _json_object(response: requests.Response) -> dict[str, Any] | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body if isinstance(body, dict) else None


def check_metadata(name: str, oauth: OAuthConfig, session: requests.Session) -> CheckResult:
    """The tenant's OpenID configuration: it exists and offers the device code flow."""
    url = metadata_url(oauth)
    try:
        response = session.get(url)
    except requests.RequestException as exc:
        return _problem(name, network_problem(exc, oauth.login_host))
    body = _json_object(response)
    if response.status_code == 200 and body is not None:
        wanted = ("token_endpoint", "device_authorization_endpoint")
        missing = [key for key in wanted if not body.get(key)]
        if not missing:
            return _pass(
                name,
                f"Tenant {oauth.tenant} at {oauth.login_host} offers the device code flow; "
                f"token endpoint {body['token_endpoint']}.",
            )
        return _fail(
            name,
            f"The metadata at {url} has no {' and no '.join(missing)}.",
            "Check the sign-in host setting: it must be the identity platform of your "
            "Microsoft cloud (the provider presets set it).",
        )
    if body is not None and "error" in body:
        return _problem(name, classify(body, oauth))  # e.g. AADSTS90002: tenant not found
    return _fail(
        name,
        f"{url} answered HTTP {response.status_code}, not the identity platform's metadata.",
        "Check the sign-in host and tenant settings, and network.https_proxy.",
    )


# -- the sign-in and SMTP -----------------------------------------------------------------------
def check_signed_in(name: str, store: Store, settings: Settings) -> CheckResult:
    account = store.account()
    if account is None:
        return _fail(
            name,
            "Nobody is signed in, so mailgate has no token to send mail with.",
            "Sign in with `mailgate login` and approve the code with the mailbox that sends.",
        )
    detail = (
        f"Signed in as {account.upn} since {when(account.signed_in_at)}; sender address "
        f"{sender_address(settings, account)}."
    )
    if account.last_error:
        detail += f" The last refresh failed ({account.last_error}); the next check retries."
    return _pass(name, detail)


def check_sender(name: str, store: Store, settings: Settings) -> CheckResult:
    """Who mail goes out as; nobody, with provider `none` and no sender.address set."""
    sender = sender_address(settings, store.account())
    if sender is None:
        return _fail(
            name,
            "There is no sender address: mail has no account to go out as.",
            missing_sender_advice(settings),
        )
    return _pass(name, f"Mail goes out as {sender}.")


async def check_refresh(name: str, tokens: TokenManager) -> CheckResult:
    """A forced refresh: proves the stored refresh token, consent and policies still work."""
    try:
        token = await tokens.refresh()
    except IdentityError as exc:
        return _problem(name, exc.problem)
    left = token.expires_at - time.time()
    return _pass(
        name,
        f"Refreshed the sign-in of {token.upn}: a new access token, valid for {duration(left)} "
        f"(until {when(token.expires_at)}).",
    )


def _smtp_success(upstream: Upstream, greeting: str, mechanism: str | None) -> str:
    outbound = upstream.settings.outbound
    server = greeting.split()[0] if greeting.split() else str(outbound.server)
    steps = {
        Security.NONE: ["no TLS (security none)"],
        Security.STARTTLS: ["STARTTLS"],
        Security.TLS: ["implicit TLS"],
    }[outbound.security]
    account = upstream.tokens.account() if upstream.tokens is not None else None
    if upstream.tokens is not None:
        steps.append(f"AUTH {mechanism or 'XOAUTH2'} as {account.upn if account else '?'}")
    elif outbound.username:
        steps.append(f"AUTH {mechanism or 'PLAIN'} as {outbound.username}")
    else:
        steps.append("no AUTH (none configured, not needed to connect)")
    return (
        f"{outbound.server} ({server}) greeted; {' and '.join(steps)} succeeded; "
        "QUIT without sending."
    )


async def check_smtp(name: str, upstream: Upstream) -> CheckResult:
    """An SMTP session up to a successful AUTH, then QUIT; nothing is sent."""
    try:
        async with asyncio.timeout(SMTP_DEADLINE):
            client = await upstream.open()
    except TimeoutError:
        return _fail(
            name,
            f"The SMTP session with {upstream.settings.outbound.server} did not complete "
            f"within {SMTP_DEADLINE:.0f} s.",
            "Check that the server address, port and security setting match what the server "
            "speaks, and that nothing in between holds the connection.",
        )
    except SubmissionError as exc:
        cls = exc.classification
        detail = cls.summary
        if exc.reply is not None:
            detail += f" Server reply to {exc.stage}: {exc.reply}"
        return _fail(name, detail, cls.advice)
    except IdentityError as exc:
        return _problem(name, exc.problem)
    try:
        greeting = client.greeting.detail if client.greeting is not None else ""
        return _pass(name, _smtp_success(upstream, greeting, client.auth_mechanism))
    finally:
        await client.close()


# -- the runner -----------------------------------------------------------------------------------
SETTINGS = "settings"
DNS_SMTP, DNS_SIGN_IN, DNS_PROXY = "dns.smtp", "dns.sign-in", "dns.proxy"
TCP_SMTP, TCP_SIGN_IN, TCP_PROXY = "tcp.smtp", "tcp.sign-in", "tcp.proxy"
TLS_SIGN_IN, CLOCK, METADATA = "tls.sign-in", "clock", "metadata"
SIGNED_IN, SENDER, REFRESH, SMTP = "signed-in", "sender", "token-refresh", "smtp"
#: The checks in report order, for a report that stops at the settings.
ALL_CHECKS: tuple[str, ...] = (SETTINGS, DNS_SMTP, DNS_SIGN_IN, TCP_SMTP, TCP_SIGN_IN)
ALL_CHECKS += (TLS_SIGN_IN, CLOCK, METADATA, SIGNED_IN, SENDER, REFRESH, SMTP)
_NO_SIGN_IN = "Not run: the provider is `none`, which does not sign in to Microsoft."
