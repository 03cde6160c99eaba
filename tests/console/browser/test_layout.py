"""The console at 1366 px and on a phone (390 px): no page wider than the screen, the
navigation one line instead of a column, tables scrolling inside their own box. Every page
is saved as a screenshot at both widths (test-artifacts/screenshots)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, ViewportSize, expect

from mailgate.sim.server import SimulatorThread
from tests.console.browser.browsing import (
    JSMITH_UPN,
    Served,
    configure_21vianet,
    create_admin,
    sign_in_through_wizard,
    wait_for_state,
)
from tests.console.conftest import PAGES
from tests.gateway.e2e_helpers import Mailgate

Shot = Callable[[Page, str], Path]
PHONE: ViewportSize = {"width": 390, "height": 844}
DESKTOP: ViewportSize = {"width": 1366, "height": 900}


def test_pages_fit_a_phone_and_a_desktop(
    mailgate: Mailgate,
    serve: Callable[[], Served],
    cloud: SimulatorThread,
    page: Page,
    screenshot: Shot,
) -> None:
    configure_21vianet(mailgate.data_dir, cloud)
    served = serve()
    create_admin(page, served)
    sign_in_through_wizard(page, served, cloud, JSMITH_UPN)
    page.goto(served.url + "test")
    page.fill("#to", "someone@contoso.cn")
    page.click("#send")
    page.wait_for_url("**/queue/*")
    wait_for_state(page, "sent")
    message = page.url.split("?")[0].removeprefix(served.url)

    for language in ("en", "zh-cn"):
        page.set_viewport_size(DESKTOP)
        page.goto(served.url)
        page.select_option("#lang-select", language)
        page.click("#lang-submit")
        page.wait_for_load_state()
        for name in [*PAGES, message]:
            label = (name or "status").replace("/", "-")
            page.set_viewport_size(DESKTOP)
            page.goto(served.url + name)
            screenshot(page, f"{language}-1366-{label}")
            page.set_viewport_size(PHONE)
            page.goto(served.url + name)
            expect(page.locator("main")).to_be_visible()
            width = page.evaluate("document.documentElement.scrollWidth")
            assert width <= PHONE["width"], f"{label} is {width} px wide on a phone"
            header = page.locator("header.top").bounding_box()
            assert header is not None
            assert header["height"] < PHONE["height"] * 0.2, f"{label}: header {header}"
            screenshot(page, f"{language}-390-{label}")
