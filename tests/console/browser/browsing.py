"""What the browser tests do again and again: run `mailgate serve`, create the admin
password through the setup link, approve a sign-in on the simulated Microsoft page."""

from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from playwright.sync_api import BrowserContext, Page, expect

from mailgate.config.store import init_data_dir
from mailgate.sim.server import SimulatorThread
from tests.bounds import HANG, HANG_MS
from tests.gateway.e2e_helpers import Mailgate, environment, stop_process, wait_ready

#: A well-formed client ID: the simulator treats every GUID as a registered app.
CLIENT_ID = "5f1c3a2e-8d4b-4e6f-9a7c-2b1d0e3f4a5c"
PASSWORD = "correct horse battery staple"
#: The 21Vianet directory's mailbox whose UPN differs from its primary address (the XOAUTH2 user stays the UPN).
JSMITH_UPN = "jsmith@contoso.partner.onmschina.cn"
JSMITH_PRIMARY = "john.smith@contoso.cn"
#: Milliseconds Playwright waits for an element before a test fails.
WAIT_MS = HANG_MS
STOP_TIMEOUT = HANG

_SETUP_LINK = re.compile(r"create the admin password at (http\S+)")


@dataclass
class Served:
    """A running `mailgate serve` with its console."""

    process: subprocess.Popen[bytes]
    log_path: Path
    smtp_port: int
    url: str
    #: The first-run link with the one-time token; None once an admin password exists.
    setup_link: str | None

    @classmethod
    def start(cls, mailgate: Mailgate, workdir: Path) -> Served:
        ready = workdir / "serve.ready.json"
        ready.unlink(missing_ok=True)
        log_path = workdir / "serve.log"
        with log_path.open("ab") as log:
            offset = log.tell()
            process = subprocess.Popen(
                mailgate.argv(
                    "serve",
                    "--listen",
                    "127.0.0.1:0",
                    # console.bind is 127.0.0.1; "--console 127.0.0.1:0" is refused (port 0).
                    "--console",
                    "0",
                    "--ready-file",
                    str(ready),
                ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=environment(),
            )
        info = wait_ready(process, ready, log_path)
        (listening,) = info["smtp"]
        assert info["console"], info
        # The ready file is written after the console has logged the setup link.
        text = log_path.read_bytes()[offset:].decode(errors="replace")
        setup = _SETUP_LINK.search(text)
        return cls(
            process, log_path, int(listening["port"]), info["console"], setup and setup.group(1)
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self) -> int:
        return stop_process(self.process, STOP_TIMEOUT)


def configure_21vianet(data_dir: Path, cloud: SimulatorThread) -> None:
    """What the SMTP and Settings pages do, done before serve starts (in-process: quicker
    than three `mailgate config` commands): the 21Vianet preset pointed at the simulator."""
    with init_data_dir(data_dir) as store:
        store.apply_provider(
            "exchange-online-21vianet",
            client_id=CLIENT_ID,
            server=f"127.0.0.1:{cloud.smtp_port}",
            host=cloud.idp_hostport,
        )
        store.set("network.ca_bundle", str(cloud.ca_path))


def create_admin(page: Page, served: Served) -> None:
    """Open the setup link serve printed and create the admin password (signs in)."""
    assert served.setup_link is not None, served.log()
    page.goto(served.setup_link)
    page.fill("#password", PASSWORD)
    page.fill("#password2", PASSWORD)
    page.click("#setup-submit")
    page.wait_for_url(served.url + "smtp")


def approve_on_simulator(
    context: BrowserContext, cloud: SimulatorThread, verification_uri: str, code: str, upn: str
) -> Page:
    """The person's side: the simulated Microsoft page, code → account → Continue.

    The wizard shows Microsoft's own address (https://microsoft.com/devicelogin...); the
    simulator answers the same path on its address, which is where the person goes here.
    """
    path = urlsplit(verification_uri).path
    assert verification_uri == cloud.state.profile.verification_uri, verification_uri
    microsoft = context.new_page()
    microsoft.goto(cloud.idp_url + path)
    microsoft.fill("input[name=otc]", code)
    microsoft.click("button.primary")
    microsoft.check(f"input[name=upn][value='{upn}']")
    microsoft.click("button[value=approve]")
    expect(microsoft.locator("form")).to_have_count(0)  # the result page has none
    return microsoft


def wait_for_state(page: Page, state: str, timeout: float = HANG) -> None:
    """Reload a message page until #message-state says *state* (the page does not poll)."""
    deadline = time.monotonic() + timeout
    while page.get_attribute("#message-state", "data-state") != state:
        if time.monotonic() > deadline:
            raise AssertionError(
                f"message still {page.get_attribute('#message-state', 'data-state')}, "
                f"not {state}:\n{page.inner_text('main')}"
            )
        time.sleep(0.3)
        page.reload()


def sign_in_through_wizard(page: Page, served: Served, cloud: SimulatorThread, upn: str) -> None:
    """The wizard's Next, then the simulator's control API approves the code (the Microsoft
    page itself is driven in test_manual_procedure and test_signin_failures)."""
    page.goto(served.url + "signin")
    page.click("#wizard-next")
    code = page.locator("#user-code")
    expect(code).to_be_visible()
    assert cloud.sign_in(code.inner_text(), upn).ok
    expect(page.locator("#wizard-success")).to_be_visible()
