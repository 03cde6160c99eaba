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
import email.utils
import ipaddress
import socket
import ssl
import sys
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


def _smtp_success(upstream: Upstream, greeting: str, offered: frozenset[str]) -> str:
    outbound = upstream.settings.outbound
    server = greeting.split()[0] if greeting.split() else str(outbound.server)
    steps = {
        Security.NONE: ["no TLS (security none)"],
        Security.STARTTLS: ["STARTTLS"],
        Security.TLS: ["implicit TLS"],
    }[outbound.security]
    account = upstream.tokens.account() if upstream.tokens is not None else None
    if upstream.tokens is not None:
        steps.append(f"AUTH XOAUTH2 as {account.upn if account else '?'}")
    elif outbound.username:
        mechanism = "PLAIN" if "PLAIN" in offered else "LOGIN"
        steps.append(f"AUTH {mechanism} as {outbound.username}")
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
        return _pass(name, _smtp_success(upstream, greeting, client.extensions.auth_mechanisms))
    finally:
        await client.close()


# -- the runner -----------------------------------------------------------------------------------
SETTINGS = "settings"
DNS_SMTP, DNS_SIGN_IN, DNS_PROXY = "dns.smtp", "dns.sign-in", "dns.proxy"
TCP_SMTP, TCP_SIGN_IN, TCP_PROXY = "tcp.smtp", "tcp.sign-in", "tcp.proxy"
TLS_SIGN_IN, CLOCK, METADATA = "tls.sign-in", "clock", "metadata"
SIGNED_IN, REFRESH, SMTP = "signed-in", "token-refresh", "smtp"
#: The checks in report order, for a report that stops at the settings.
ALL_CHECKS: tuple[str, ...] = (SETTINGS, DNS_SMTP, DNS_SIGN_IN, TCP_SMTP, TCP_SIGN_IN)
ALL_CHECKS += (TLS_SIGN_IN, CLOCK, METADATA, SIGNED_IN, REFRESH, SMTP)
_NO_SIGN_IN = "Not run: the provider is `none`, which does not sign in to Microsoft."


class Report:
    """The results so far; a check whose prerequisite failed or was skipped is skipped."""

    def __init__(self) -> None:
        self.results: list[CheckResult] = []
        #: check name -> the root cause that stops its dependents ("dns.smtp failed").
        self._blocked: dict[str, str] = {}

    def add(self, result: CheckResult, cause: str | None = None) -> None:
        self.results.append(result)
        if result.status is Status.FAIL:
            self._blocked[result.name] = f"{result.name} failed"
        elif result.status is Status.SKIP:
            self._blocked[result.name] = cause or result.detail

    def blocked(self, *names: str) -> str | None:
        return next((self._blocked[n] for n in names if n in self._blocked), None)

    def run(self, name: str, check: Callable[[], CheckResult], needs: Sequence[str] = ()) -> None:
        cause = self.blocked(*needs)
        if cause is not None:
            self.skip(name, cause)
        else:
            self.add(check())

    def skip(self, name: str, cause: str) -> None:
        detail = cause if cause.startswith("Not run") else f"Not run because {cause}."
        self.add(CheckResult(name, Status.SKIP, detail), cause)

    @property
    def ok(self) -> bool:
        return not any(r.status is Status.FAIL for r in self.results)


def describe_settings(settings: Settings) -> str:
    outbound = settings.outbound
    text = f"Provider {outbound.provider}: SMTP server {outbound.server} ({outbound.security})"
    if outbound.oauth is not None:
        oauth = outbound.oauth
        text += f", sign-in host {oauth.login_host}, tenant {oauth.tenant}"
    elif outbound.username:
        text += f", AUTH as {outbound.username}"
    if settings.trust.https_proxy:
        text += f", HTTPS proxy {parse_proxy(settings.trust.https_proxy).target}"
    if settings.trust.ca_bundle is not None:
        text += f", extra CA bundle {settings.trust.ca_bundle}"
    return text + "."


def settings_failed(error: ConfigError) -> list[CheckResult]:
    """The report when the settings cannot be read: everything else depends on them."""
    report = Report()
    report.add(_fail(SETTINGS, "The settings cannot be used.", str(error)))
    for name in ALL_CHECKS[1:]:
        report.skip(name, f"{SETTINGS} failed")
    return report.results


def run_checks(store: Store) -> list[CheckResult]:
    """Every check in order, for the data directory of *store*."""
    try:
        settings = store.settings()
    except ConfigError as error:
        return settings_failed(error)
    report = Report()
    report.add(_pass(SETTINGS, describe_settings(settings)))
    route = _network_checks(report, settings)
    _identity_checks(report, store, settings, route)
    _account_checks(report, store, settings)
    return report.results


def _network_checks(report: Report, settings: Settings) -> str:
    """DNS and TCP; returns the check the way to the sign-in host depends on."""
    server = settings.outbound.server
    smtp = Target("SMTP server", server.host, server.port)
    oauth = settings.outbound.oauth
    sign_in = sign_in_target(oauth) if oauth is not None else None
    proxy_url = settings.trust.https_proxy
    proxy = parse_proxy(proxy_url) if proxy_url and sign_in is not None else None
    report.run(DNS_SMTP, lambda: check_dns(DNS_SMTP, smtp))
    if sign_in is None:
        report.skip(DNS_SIGN_IN, _NO_SIGN_IN)
    else:
        # Through a proxy, the proxy resolves the sign-in host; failing here is no proof.
        report.run(DNS_SIGN_IN, lambda: check_dns(DNS_SIGN_IN, sign_in, soft=proxy is not None))
    if proxy is not None:
        report.run(DNS_PROXY, lambda: check_dns(DNS_PROXY, proxy.target))
    report.run(TCP_SMTP, lambda: check_tcp(TCP_SMTP, smtp), [DNS_SMTP])
    if sign_in is None:
        report.skip(TCP_SIGN_IN, _NO_SIGN_IN)
        return TCP_SIGN_IN
    if proxy is not None:
        report.run(TCP_PROXY, lambda: check_tcp(TCP_PROXY, proxy.target), [DNS_PROXY])
        return TCP_PROXY
    report.run(TCP_SIGN_IN, lambda: check_tcp(TCP_SIGN_IN, sign_in), [DNS_SIGN_IN])
    return TCP_SIGN_IN


def _identity_checks(report: Report, store: Store, settings: Settings, route: str) -> None:
    oauth = settings.outbound.oauth
    if oauth is None:
        for name in (TLS_SIGN_IN, CLOCK, METADATA):
            report.skip(name, _NO_SIGN_IN)
        return
    target = sign_in_target(oauth)
    report.run(TLS_SIGN_IN, lambda: check_tls(TLS_SIGN_IN, target, settings.trust), [route])
    if report.blocked(TLS_SIGN_IN):
        report.run(CLOCK, lambda: _pass(CLOCK, ""), [TLS_SIGN_IN])
        report.run(METADATA, lambda: _pass(METADATA, ""), [TLS_SIGN_IN])
        return
    timeout = (IO_TIMEOUT, IO_TIMEOUT)
    with build_session(settings.trust, timeout=timeout, cache_dir=store.data_dir) as session:
        report.run(CLOCK, lambda: check_clock(CLOCK, oauth, session))
        report.run(METADATA, lambda: check_metadata(METADATA, oauth, session))


def _account_checks(report: Report, store: Store, settings: Settings) -> None:
    if settings.outbound.oauth is None:
        report.skip(SIGNED_IN, _NO_SIGN_IN)
        report.skip(REFRESH, _NO_SIGN_IN)
        upstream = Upstream(store, settings, None)
        report.run(SMTP, lambda: asyncio.run(check_smtp(SMTP, upstream)), [TCP_SMTP])
        return
    report.run(SIGNED_IN, lambda: check_signed_in(SIGNED_IN, store, settings))
    if report.blocked(SIGNED_IN, METADATA):
        report.run(REFRESH, lambda: _pass(REFRESH, ""), [SIGNED_IN, METADATA])
        report.run(SMTP, lambda: _pass(SMTP, ""), [TCP_SMTP, REFRESH])
        return
    tokens = token_manager(store, settings)
    report.run(REFRESH, lambda: asyncio.run(check_refresh(REFRESH, tokens)))
    account = store.account()
    upstream = Upstream(store, settings, tokens, account.primary_address if account else None)
    report.run(SMTP, lambda: asyncio.run(check_smtp(SMTP, upstream)), [TCP_SMTP, REFRESH])


# -- the command ----------------------------------------------------------------------------------
_STYLE: dict[Status, dict[str, Any]] = {
    Status.PASS: {"fg": "green"},
    Status.WARN: {"fg": "yellow"},
    Status.FAIL: {"fg": "red", "bold": True},
    Status.SKIP: {"dim": True},
}


def print_report(results: Sequence[CheckResult]) -> None:
    width = max(len(r.name) for r in results)
    for result in results:
        label = click.style(result.status.value.upper().ljust(4), **_STYLE[result.status])
        click.echo(f"{label}  {result.name.ljust(width)}  {result.detail}")
        if result.fix:
            click.echo(f"{'':4}  {'':{width}}  Fix: {result.fix}")
    failed = [r.name for r in results if r.status is Status.FAIL]
    warned = [r.name for r in results if r.status is Status.WARN]
    click.echo("")
    if failed:
        click.echo(
            f"{len(failed)} check(s) failed ({', '.join(failed)}). Fix the first one first: "
            "the checks after it depend on it."
        )
    elif warned:
        click.echo(f"No check failed; {len(warned)} warning(s) ({', '.join(warned)}).")
    else:
        click.echo("All checks passed.")


@click.command("doctor")
@click.option("--json", "as_json", is_flag=True, help='Print one JSON object {"checks", "ok"}.')
@click.pass_context
def doctor_command(ctx: click.Context, as_json: bool) -> None:
    """Check settings, DNS, network, TLS, clock, sign-in and SMTP step by step.

    Each check passes, warns, fails or is skipped (when one it depends on did not pass), and
    says what to fix. Nothing is sent. Exit status 0 when no check failed, 1 otherwise.
    """
    try:
        store = open_store(ctx)
    except ConfigError as error:
        results = settings_failed(error)
    else:
        with store:
            results = run_checks(store)
    ok = not any(r.status is Status.FAIL for r in results)
    if as_json:
        emit_json({"checks": [r.to_json() for r in results], "ok": ok})
    else:
        print_report(results)
    if not ok:
        sys.exit(EXIT_FAILED)
