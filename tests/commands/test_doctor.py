"""`mailgate doctor` against the simulator: each failure is found by its own check, the
checks after it are skipped with the reason, and the fix says what to do (issue 3, item 8).

Data directories are set up with the CLI itself; the sign-in runs the device code flow
programmatically. All traffic stays on 127.0.0.1 (the one unresolvable name is under the
reserved .invalid TLD, which the doctor answers without asking DNS).
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msal
import pytest
from click.testing import CliRunner, Result

from mailgate.account import TOKEN_CACHE_SECRET, device_sign_in
from mailgate.certs import ensure_self_signed
from mailgate.cli import main
from mailgate.config.store import Store
from mailgate.diagnostics import Status, clock_verdict, resolve
from mailgate.sim.server import SimulatorThread
from tests.bounds import SOCKET

CLIENT_ID = "9e5f94bc-e8a4-4e73-b8be-63364c29d753"
UPN = "scanner@contoso.com"
ORDER = [
    "settings",
    "dns.smtp",
    "dns.sign-in",
    "tcp.smtp",
    "tcp.sign-in",
    "tls.sign-in",
    "clock",
    "metadata",
    "signed-in",
    "sender",
    "token-refresh",
    "smtp",
]


# -- helpers ----------------------------------------------------------------------------------
def cli(data_dir: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["--data-dir", str(data_dir), *args])


def ok(data_dir: Path, *args: str) -> Result:
    result = cli(data_dir, *args)
    assert result.exit_code == 0, result.output
    return result


def configure(data_dir: Path, sim: SimulatorThread, host: str | None = None) -> Path:
    ok(data_dir, "init")
    ok(
        data_dir,
        *("config", "provider", "exchange-online", "--client-id", CLIENT_ID),
        *("--server", f"127.0.0.1:{sim.smtp_port}", "--host", host or sim.idp_hostport),
    )
    ok(data_dir, "config", "set", "network.ca_bundle", str(sim.ca_path))
    return data_dir


def sign_in(data_dir: Path, sim: SimulatorThread) -> None:
    sim.set_scenario(poll_interval=1)
    with Store.open(data_dir) as store:
        flow = device_sign_in(store, store.settings())
        try:
            code = flow.start()
            # The person at the verification page, on another thread as in real life.
            person = threading.Thread(target=sim.sign_in, args=(code.user_code, UPN, True))
            person.start()
            flow.wait(code)
            person.join()
        finally:
            flow.close()


def doctor(data_dir: Path) -> tuple[int, dict[str, dict[str, str]], dict[str, Any]]:
    """Exit code, the checks by name, and the whole JSON object."""
    result = cli(data_dir, "doctor", "--json")
    report = json.loads(result.output)
    return result.exit_code, {c["name"]: c for c in report["checks"]}, report


def statuses(checks: dict[str, dict[str, str]]) -> dict[str, str]:
    return {name: check["status"] for name, check in checks.items()}


@pytest.fixture
def configured(sim: SimulatorThread, tmp_path: Path) -> Path:
    return configure(tmp_path / "data", sim)


@pytest.fixture
def signed_in(sim: SimulatorThread, configured: Path) -> Path:
    sign_in(configured, sim)
    return configured


# -- a CONNECT proxy on 127.0.0.1 ------------------------------------------------------------------
class ConnectProxy:
    """Just enough of an HTTP proxy for HTTPS: CONNECT to 127.0.0.1, then relay bytes."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = int(self.listener.getsockname()[1])
        self.connects: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._accept)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            worker = threading.Thread(target=self._serve, args=(client,))
            self._threads.append(worker)
            worker.start()

    def _serve(self, client: socket.socket) -> None:
        # A client that resets its side (requests closing a pooled tunnel) is no error here.
        with contextlib.suppress(OSError), client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            method, authority, _ = head.split(b"\r\n", 1)[0].decode().split(" ", 2)
            host, port = authority.rsplit(":", 1)
            self.connects.append(authority)
            if method != "CONNECT" or host != "127.0.0.1":  # never leave this machine
                client.sendall(b"HTTP/1.1 403 Forbidden\r\n\r\n")
                return
            with socket.create_connection((host, int(port)), timeout=SOCKET) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                self._relay(client, upstream)

    def _relay(self, client: socket.socket, upstream: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(client, selectors.EVENT_READ, upstream)
            selector.register(upstream, selectors.EVENT_READ, client)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=0.1):
                    source, target = key.fileobj, key.data
                    assert isinstance(source, socket.socket)
                    data = source.recv(65536)
                    if not data:
                        return
                    target.sendall(data)

    def close(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(5)
        self.listener.close()


@pytest.fixture
def proxy() -> Iterator[ConnectProxy]:
    running = ConnectProxy()
    yield running
    running.close()


# -- everything works ------------------------------------------------------------------------------
def test_all_checks_pass_and_no_secret_is_printed(signed_in: Path, sim: SimulatorThread) -> None:
    code, checks, report = doctor(signed_in)

    assert code == 0
    assert report["ok"] is True
    assert list(checks) == ORDER
    assert set(statuses(checks).values()) == {"pass"}, checks
    assert "is an IP address" in checks["dns.sign-in"]["detail"]
    assert "issued by" in checks["tls.sign-in"]["detail"]
    assert "valid until" in checks["tls.sign-in"]["detail"]
    assert "token endpoint" in checks["metadata"]["detail"]
    assert "valid for" in checks["token-refresh"]["detail"]
    smtp = checks["smtp"]["detail"]
    assert "STARTTLS and AUTH XOAUTH2 as scanner@contoso.com succeeded" in smtp
    assert "QUIT without sending" in smtp
    assert sim.state.messages == []  # nothing was sent

    text = cli(signed_in, "doctor")
    assert text.exit_code == 0
    assert "All checks passed." in text.output
    _assert_no_secrets(signed_in, json.dumps(report) + text.output)


def _assert_no_secrets(data_dir: Path, output: str) -> None:
    with Store.open(data_dir) as store:
        cache = json.loads(store.secret(TOKEN_CACHE_SECRET) or "{}")
    kinds = [msal.SerializableTokenCache.CredentialType.ACCESS_TOKEN, "RefreshToken"]
    secrets = [entry["secret"] for kind in kinds for entry in cache.get(kind, {}).values()]
    assert secrets, "the sign-in left no tokens to look for"
    for secret in secrets:
        assert secret not in output


def test_through_an_https_proxy(signed_in: Path, proxy: ConnectProxy) -> None:
    ok(signed_in, "config", "set", "network.https_proxy", f"http://127.0.0.1:{proxy.port}")

    code, checks, _ = doctor(signed_in)

    assert code == 0, checks
    assert "tcp.proxy" in checks
    assert "tcp.sign-in" not in checks
    assert set(statuses(checks).values()) == {"pass"}, checks
    assert f"via the HTTPS proxy 127.0.0.1:{proxy.port}" in checks["tls.sign-in"]["detail"]
    assert len(proxy.connects) >= 3  # TLS check, clock, metadata (and the token refresh)


# -- each failure, found where it is ---------------------------------------------------------------
def test_not_signed_in_fails_with_login_fix_and_skips_smtp(configured: Path) -> None:
    code, checks, report = doctor(configured)

    assert code == 1
    assert report["ok"] is False
    assert checks["metadata"]["status"] == "pass"
    assert checks["signed-in"]["status"] == "fail"
    assert "mailgate login" in checks["signed-in"]["fix"]
    for name in ("token-refresh", "smtp"):
        assert checks[name]["status"] == "skip"
        assert "signed-in failed" in checks[name]["detail"]

    text = cli(configured, "doctor")
    assert text.exit_code == 1
    assert "FAIL  signed-in" in text.output
    assert "Fix: Sign in with `mailgate login`" in text.output
    assert "1 check(s) failed (signed-in)" in text.output


def test_revoked_refresh_token_fails_the_refresh(signed_in: Path, sim: SimulatorThread) -> None:
    sim.set_scenario(refresh_revoked=True)

    code, checks, _ = doctor(signed_in)

    assert code == 1
    assert checks["signed-in"]["status"] == "pass"
    refresh = checks["token-refresh"]
    assert refresh["status"] == "fail"
    assert "AADSTS50173" in refresh["detail"]
    assert "sign-in again" in refresh["fix"]
    assert "mailgate login" in refresh["fix"]
    assert checks["smtp"]["status"] == "skip"
    assert "token-refresh failed" in checks["smtp"]["detail"]


def test_smtp_auth_disabled_for_the_tenant(signed_in: Path, sim: SimulatorThread) -> None:
    sim.set_scenario(smtp_auth_disabled_tenant=True)

    code, checks, _ = doctor(signed_in)

    assert code == 1
    assert checks["token-refresh"]["status"] == "pass"
    smtp = checks["smtp"]
    assert smtp["status"] == "fail"
    assert "SMTP AUTH is turned off for the whole Microsoft 365 tenant" in smtp["detail"]
    assert "535 5.7.139" in smtp["detail"]
    assert (
        f"Set-CASMailbox -Identity {UPN} -SmtpClientAuthenticationDisabled $false" in (smtp["fix"])
    )
    assert "Set-TransportConfig -SmtpClientAuthenticationDisabled $false" in smtp["fix"]


def test_smtp_server_down_fails_tcp_and_skips_smtp(signed_in: Path, sim: SimulatorThread) -> None:
    sim.set_scenario(smtp_down=True)

    code, checks, _ = doctor(signed_in)

    assert code == 1
    tcp = checks["tcp.smtp"]
    assert tcp["status"] == "fail"
    assert f"127.0.0.1:{sim.smtp_port}" in tcp["detail"]
    assert "port 587" in tcp["fix"]
    assert checks["token-refresh"]["status"] == "pass"  # the identity side is fine
    assert checks["smtp"]["status"] == "skip"
    assert "tcp.smtp failed" in checks["smtp"]["detail"]


def test_wrong_ca_bundle_fails_tls_with_the_ca_advice(configured: Path, tmp_path: Path) -> None:
    other_ca, _ = ensure_self_signed(tmp_path / "other", "other-ca", "localhost")
    ok(configured, "config", "set", "network.ca_bundle", str(other_ca))

    code, checks, _ = doctor(configured)

    assert code == 1
    tls = checks["tls.sign-in"]
    assert tls["status"] == "fail"
    assert "not trusted" in tls["detail"]
    assert "TLS-inspecting proxy? set network.ca_bundle to its CA (PEM)" in tls["fix"]
    for name in ("clock", "metadata"):
        assert checks[name]["status"] == "skip"
        assert "tls.sign-in failed" in checks[name]["detail"]


def test_unresolvable_sign_in_host_skips_what_needs_it(
    sim: SimulatorThread, tmp_path: Path
) -> None:
    data_dir = configure(tmp_path / "data", sim, host="login.doctor-check.invalid")

    code, checks, _ = doctor(data_dir)

    assert code == 1
    dns = checks["dns.sign-in"]
    assert dns["status"] == "fail"
    assert "login.doctor-check.invalid does not resolve" in dns["detail"]
    assert "DNS" in dns["fix"]
    assert statuses(checks)["dns.smtp"] == statuses(checks)["tcp.smtp"] == "pass"
    for name in ("tcp.sign-in", "tls.sign-in", "clock", "metadata", "token-refresh", "smtp"):
        assert checks[name]["status"] == "skip", name
    assert "dns.sign-in failed" in checks["metadata"]["detail"]


def test_unknown_tenant_is_explained(configured: Path) -> None:
    ok(configured, "config", "set", "oauth.tenant", "0b5c1a9e-1111-4222-8333-444455556666")

    code, checks, _ = doctor(configured)

    assert code == 1
    metadata = checks["metadata"]
    assert metadata["status"] == "fail"
    assert metadata["detail"].startswith("AADSTS90002: Tenant not found")
    assert "tenant setting" in metadata["fix"]


def test_provider_none_without_auth(sim: SimulatorThread, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ok(data_dir, "init")
    ok(data_dir, "config", "set", "smtp.server", f"127.0.0.1:{sim.smtp_port}")
    ok(data_dir, "config", "set", "network.ca_bundle", str(sim.ca_path))
    ok(data_dir, "config", "set", "sender.address", "printer@example.org")

    code, checks, _ = doctor(data_dir)

    assert code == 0, checks
    assert list(checks) == ORDER
    for name in ("dns.sign-in", "tcp.sign-in", "clock", "metadata", "signed-in", "token-refresh"):
        assert checks[name]["status"] == "skip"
        assert "provider is `none`" in checks[name]["detail"]
    assert checks["sender"]["status"] == "pass"
    assert checks["sender"]["detail"] == "Mail goes out as printer@example.org."
    smtp = checks["smtp"]
    assert smtp["status"] == "pass"
    assert "STARTTLS and no AUTH (none configured, not needed to connect)" in smtp["detail"]


def test_provider_none_without_a_sender_address_says_to_set_it(
    sim: SimulatorThread, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    ok(data_dir, "init")
    ok(data_dir, "config", "set", "smtp.server", f"127.0.0.1:{sim.smtp_port}")
    ok(data_dir, "config", "set", "network.ca_bundle", str(sim.ca_path))

    code, checks, _ = doctor(data_dir)

    assert code == 1
    sender = checks["sender"]
    assert sender["status"] == "fail"
    assert "no account to go out as" in sender["detail"]
    assert "`mailgate config set sender.address you@example.com`" in sender["fix"]
    assert "provider is `none`" in sender["fix"]
    assert checks["smtp"]["status"] == "pass"  # the rest still runs


def test_uninitialised_data_dir_fails_settings_and_skips_the_rest(tmp_path: Path) -> None:
    code, checks, _ = doctor(tmp_path / "nothing")

    assert code == 1
    assert list(checks) == ORDER
    assert checks["settings"]["status"] == "fail"
    assert "mailgate init" in checks["settings"]["fix"]
    assert {checks[n]["status"] for n in ORDER[1:]} == {"skip"}


# -- pure parts ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("skew", "status"),
    [
        (0.0, Status.PASS),
        (-119.0, Status.PASS),
        (121.0, Status.WARN),
        (-299.0, Status.WARN),
        (301.0, Status.FAIL),
        (-3600.0, Status.FAIL),
    ],
)
def test_clock_verdict(skew: float, status: Status) -> None:
    verdict, detail = clock_verdict(skew)
    assert verdict is status
    if status is not Status.PASS:
        assert ("ahead of" if skew > 0 else "behind") in detail


def test_invalid_names_fail_without_asking_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> None:
        raise AssertionError("getaddrinfo must not be called for .invalid names")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    with pytest.raises(socket.gaierror):
        resolve("smtp.example.invalid", 587)
