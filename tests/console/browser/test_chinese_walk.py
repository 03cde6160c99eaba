"""Every page and every failure path in 简体中文, read in Chromium: no English sentence.

A line of the page's text without one Chinese character fails the walk unless all it holds
is an address, a code, a number or a product name (tests/console/cjk.py).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from mailgate.sim.server import SimulatorThread
from tests.console.browser.browsing import (
    JSMITH_UPN,
    Served,
    configure_21vianet,
    create_admin,
    wait_for_state,
)
from tests.console.cjk import english_lines
from tests.console.conftest import PAGES
from tests.gateway.e2e_helpers import Mailgate

Shot = Callable[[Page, str], Path]


def _chinese_only(page: Page, where: str) -> None:
    left = english_lines(page.inner_text("body"))
    assert left == [], f"English on {where}: {left}"


def test_every_page_and_failure_in_chinese(
    mailgate: Mailgate,
    serve: Callable[[], Served],
    cloud: SimulatorThread,
    page: Page,
    screenshot: Shot,
) -> None:
    configure_21vianet(mailgate.data_dir, cloud)
    served = serve()
    create_admin(page, served)
    page.select_option("#lang-select", "zh-cn")
    page.click("#lang-submit")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")

    for name in PAGES:
        page.goto(served.url + name)
        _chinese_only(page, name or "status")
    for missing in ("queue/999999", "no-such-page"):
        page.goto(served.url + missing)
        _chinese_only(page, missing)

    # The sign-in's failure paths, each explained in Chinese.
    def approve(code: str) -> None:
        cloud.sign_in(code, JSMITH_UPN)

    def decline(code: str) -> None:
        cloud.sign_in(code, JSMITH_UPN, approve=False)

    failures: list[tuple[dict[str, object], str, Callable[[str], None]]] = [
        ({}, "declined", decline),
        ({"consent_required": "admin"}, "consent", approve),
        ({"consent_required": None, "conditional_access_block": True}, "policy", approve),
        ({"conditional_access_block": False, "device_code_lifetime": 2}, "expired", approve),
    ]
    for scenario, kind, act in failures:
        cloud.set_scenario(**scenario)
        page.goto(served.url + "signin")
        page.click("#wizard-retry" if page.locator("#wizard-retry").count() else "#wizard-next")
        if kind != "expired":  # a 2-second code may be gone before the page shows it
            expect(page.locator("#user-code")).to_be_visible()
            act(page.inner_text("#user-code"))
        expect(page.locator("#wizard-failure")).to_have_attribute("data-kind", kind)
        _chinese_only(page, f"sign-in {kind}")
        screenshot(page, f"signin-{kind}")

    # Signed in with short-lived tokens; then the sign-in is revoked: mail is held.
    cloud.set_scenario(device_code_lifetime=900, access_token_lifetime=1)
    page.goto(served.url + "signin")
    page.click("#wizard-retry")
    expect(page.locator("#user-code")).to_be_visible()
    assert cloud.sign_in(page.inner_text("#user-code"), JSMITH_UPN).ok
    expect(page.locator("#wizard-success")).to_be_visible()
    _chinese_only(page, "signed in")
    cloud.set_scenario(refresh_revoked=True)
    page.goto(served.url + "test")
    page.fill("#to", "someone@contoso.cn")
    page.click("#send")
    page.wait_for_url("**/queue/*")
    wait_for_state(page, "held")
    _chinese_only(page, "held message")
    screenshot(page, "held-message")
    for name in ("", "queue", "events", "signin"):
        page.goto(served.url + name)
        _chinese_only(page, f"{name or 'status'} with held mail")
    screenshot(page, "held-signin")
