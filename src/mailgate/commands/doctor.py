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
certificate names and our own sentences only."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import click

from mailgate.account import token_manager
from mailgate.commands.common import EXIT_FAILED, emit_json
from mailgate.config.commands import open_store
from mailgate.config.errors import ConfigError
from mailgate.config.model import Settings
from mailgate.diagnostics import (
    _NO_SIGN_IN,
    ALL_CHECKS,
    CLOCK,
    DNS_PROXY,
    DNS_SIGN_IN,
    DNS_SMTP,
    IO_TIMEOUT,
    METADATA,
    REFRESH,
    SENDER,
    SETTINGS,
    SIGNED_IN,
    SMTP,
    TCP_PROXY,
    TCP_SIGN_IN,
    TCP_SMTP,
    TLS_SIGN_IN,
    CheckResult,
    Status,
    Target,
    _fail,
    _pass,
    check_clock,
    check_dns,
    check_metadata,
    check_refresh,
    check_sender,
    check_signed_in,
    check_smtp,
    check_tcp,
    check_tls,
    parse_proxy,
    sign_in_target,
)
from mailgate.identity.http import build_session
from mailgate.upstream import Upstream

if TYPE_CHECKING:
    from mailgate.config.store import Store


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
        report.run(SENDER, lambda: check_sender(SENDER, store, settings))
        report.skip(REFRESH, _NO_SIGN_IN)
        upstream = Upstream(store, settings, None)
        report.run(SMTP, lambda: asyncio.run(check_smtp(SMTP, upstream)), [TCP_SMTP])
        return
    report.run(SIGNED_IN, lambda: check_signed_in(SIGNED_IN, store, settings))
    report.run(SENDER, lambda: check_sender(SENDER, store, settings), [SIGNED_IN])
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
        first = " Fix the first one first: the checks after it depend on it." if failed[1:] else ""
        click.echo(f"{len(failed)} check(s) failed ({', '.join(failed)}).{first}")
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
