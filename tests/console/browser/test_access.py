"""Nothing of the console is reachable without signing in, seen from a fresh browser."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect

from mailgate.sim.server import SimulatorThread
from tests.console.browser.browsing import (
    PASSWORD,
    WAIT_MS,
    Served,
    configure_21vianet,
    create_admin,
)
from tests.gateway.e2e_helpers import Mailgate

Shot = Callable[[Page, str], Path]
PAGES = ["", "queue", "queue/1", "smtp", "signin", "settings", "test", "events"]
API = ["api/status", "api/settings", "api/signin", "api/queue", "api/openapi.json", "metrics"]


def _fresh_page(chromium: Browser) -> Page:
    context = chromium.new_context(locale="en-US")
    context.set_default_timeout(WAIT_MS)
    return context.new_page()


def _assert_gated(page: Page, served: Served, form: str) -> None:
    for path in PAGES:
        page.goto(served.url + path)
        # The login page, remembering the page asked for (it returns there afterwards).
        assert page.url.split("?next=")[0] == served.url + "login", (path, page.url)
        expect(page.locator(form)).to_be_visible()
        expect(page.locator("#nav")).to_have_count(0)
    for path in API:
        response = page.goto(served.url + path)
        assert response is not None
        assert response.status == 401, (path, response.status)
        assert "sign in" in page.inner_text("body"), path
    health = page.goto(served.url + "healthz")
    assert health is not None
    assert health.status == 200
    page.goto(served.url + "login")


@pytest.mark.usefixtures("cloud")
def test_nothing_without_signing_in(
    mailgate: Mailgate,
    serve: Callable[[], Served],
    cloud: SimulatorThread,
    chromium: Browser,
    page: Page,
    screenshot: Shot,
) -> None:
    configure_21vianet(mailgate.data_dir, cloud)
    served = serve()

    # First run: every page leads to the setup form, which needs the token serve printed.
    stranger = _fresh_page(chromium)
    _assert_gated(stranger, served, "#setup-form")
    stranger.goto(served.url + "setup")
    expect(stranger.locator("#token")).to_have_value("")
    stranger.fill("#token", "guessed-token")
    stranger.fill("#password", PASSWORD)
    stranger.fill("#password2", PASSWORD)
    stranger.click("#setup-submit")
    expect(stranger.locator("#error")).to_be_visible()
    _assert_gated(stranger, served, "#setup-form")

    # The token holder creates the password; a browser without the session still sees nothing.
    create_admin(page, served)
    stranger.context.close()
    stranger = _fresh_page(chromium)
    _assert_gated(stranger, served, "#login-form")
    stranger.fill("#password", "not the password")
    stranger.click("#login")
    expect(stranger.locator("#error")).to_be_visible()
    screenshot(stranger, "login-refused")
    _assert_gated(stranger, served, "#login-form")

    # The setup link cannot be used a second time.
    assert served.setup_link is not None
    stranger.goto(served.setup_link)
    assert stranger.url == served.url + "login"
    expect(stranger.locator("#login-form")).to_be_visible()

    # Logging out closes it again in the admin's own browser.
    page.goto(served.url)
    expect(page.locator("#nav")).to_be_visible()
    page.click("#logout")
    page.wait_for_url(served.url + "login")
    _assert_gated(page, served, "#login-form")
    stranger.context.close()
