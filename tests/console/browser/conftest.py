"""The console in a real browser: Debian's Chromium, headless, driven by Playwright's sync API.

Theory of operation. Every test runs `mailgate serve` as a subprocess, exactly as an
administrator starts it: SMTP listener and console on 127.0.0.1, port 0. Their addresses
come from the ready file, the one-time setup link from serve's log. One Chromium runs for
the whole package; each test gets a fresh context (no cookies), which trusts any
certificate because the simulated Microsoft pages on 127.0.0.1 use the simulator's own CA.
Chromium's flags keep the browser itself quiet; a route refuses pages' requests elsewhere.

Playwright's own browser download does not work on these machines: the browser is
/usr/bin/chromium (Debian package `chromium`, installed by dev.py). Without it they fail.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Browser, BrowserContext, Page, Route, expect, sync_playwright

from mailgate.sim.server import SimulatorThread
from tests.console.browser.browsing import WAIT_MS, Served
from tests.gateway.e2e_helpers import Mailgate

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # root in a container
    "--disable-gpu",
    # Only 127.0.0.1 traffic: no updates, safe browsing, sync or QUIC probes.
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-quic",
    "--disable-sync",
]
#: Kept for people to look at (the directory is in .gitignore).
SCREENSHOTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "screenshots"


expect.set_options(timeout=WAIT_MS)


@pytest.fixture(scope="package")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (python3 dev.py test does)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        browser.close()


@pytest.fixture
def context(chromium: Browser) -> Iterator[BrowserContext]:
    """A browser profile of its own: no cookies, English, a desktop-sized window. A request
    for anything but 127.0.0.1 (a CDN, a real Microsoft page) is refused and fails the test."""
    made = chromium.new_context(
        ignore_https_errors=True,  # only the simulator's pages on 127.0.0.1
        locale="en-US",
        viewport={"width": 1280, "height": 900},
    )
    made.set_default_timeout(WAIT_MS)
    elsewhere: list[str] = []

    def local_only(route: Route) -> None:
        if urlsplit(route.request.url).hostname == "127.0.0.1":
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort()

    made.route("**/*", local_only)
    yield made
    made.close()
    assert not elsewhere, f"the pages asked for more than 127.0.0.1: {elsewhere}"


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def screenshot(request: pytest.FixtureRequest) -> Callable[[Page, str], Path]:
    """``screenshot(page, "name")`` saves test-artifacts/screenshots/<test>-<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    prefix = request.node.name.removeprefix("test_")

    def take(page: Page, name: str) -> Path:
        path = SCREENSHOTS / f"{prefix}-{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take


@pytest.fixture
def cloud(sim_21vianet: SimulatorThread) -> SimulatorThread:
    """The 21Vianet cloud of the manual, polling every second so the wizard ends quickly."""
    sim_21vianet.set_scenario(poll_interval=1)
    return sim_21vianet


@pytest.fixture
def mailgate(tmp_path: Path) -> Mailgate:
    """`python -m mailgate --data-dir <tmp>/data ...` (not yet initialised)."""
    return Mailgate(tmp_path / "data")


@pytest.fixture
def serve(mailgate: Mailgate, tmp_path: Path) -> Iterator[Callable[[], Served]]:
    """``serve()`` starts `mailgate serve` on the data directory; stopped after the test."""
    running: list[Served] = []

    def start() -> Served:
        served = Served.start(mailgate, tmp_path)
        running.append(served)
        return served

    yield start
    for served in running:
        assert served.stop() == 0, served.log()
