"""Held mail after a dead sign-in: the banner on every page, a sign-in page that explains
why and names the previous account, and an explicit choice before a different account
sends what was held. The same account sends it by itself; a different one does not."""

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
    sign_in_through_wizard,
    wait_for_state,
)
from tests.gateway.e2e_helpers import Mailgate, delivered_by_subject

Shot = Callable[[Page, str], Path]
RECEPTION_UPN = "reception@contoso.cn"


def _held_test_message(page: Page, served: Served, cloud: SimulatorThread, subject: str) -> str:
    """The sign-in dies (refresh revoked); a test message is then held. Its page's URL."""
    cloud.set_scenario(refresh_revoked=True)
    page.goto(served.url + "test")
    page.fill("#to", "someone@contoso.cn")
    page.fill("#subject", subject)
    page.click("#send")
    page.wait_for_url("**/queue/*")
    wait_for_state(page, "held")
    return page.url.split("?")[0]


def _sign_in_again(page: Page, cloud: SimulatorThread, upn: str) -> None:
    """From the banner to the explained sign-in page; Next keeps the safe default."""
    cloud.set_scenario(refresh_revoked=False)
    page.click("#banner-action-sign_in_needed")
    expect(page.locator("#signin-reason")).to_be_visible()
    expect(page.locator("#previous-upn")).to_have_text(JSMITH_UPN)
    expect(page.locator("#held-count")).to_be_visible()
    expect(page.locator("#held-keep")).to_be_checked()
    page.click("#wizard-next")
    code = page.locator("#user-code")
    expect(code).to_be_visible()
    assert cloud.sign_in(code.inner_text(), upn).ok
    expect(page.locator("#wizard-success")).to_be_visible()


def test_held_mail_waits_for_the_same_account_or_an_explicit_release(
    mailgate: Mailgate,
    serve: Callable[[], Served],
    cloud: SimulatorThread,
    page: Page,
    screenshot: Shot,
) -> None:
    configure_21vianet(mailgate.data_dir, cloud)
    cloud.set_scenario(access_token_lifetime=1)
    served = serve()
    create_admin(page, served)
    sign_in_through_wizard(page, served, cloud, JSMITH_UPN)

    # The same account signs in again: what was held goes out by itself.
    first = _held_test_message(page, served, cloud, "held, same account")
    page.goto(served.url + "events")
    expect(page.locator("#banner-sign_in_needed")).to_contain_text(JSMITH_UPN)
    screenshot(page, "banner")
    _sign_in_again(page, cloud, JSMITH_UPN)
    screenshot(page, "explained-signin-done")
    expect(page.locator("#account-changed")).to_have_count(0)
    page.goto(first)
    wait_for_state(page, "sent")

    # A different account signs in: the held message stays held, a new one is sent.
    second = _held_test_message(page, served, cloud, "held, other account")
    page.goto(served.url)
    screenshot(page, "status-held")
    _sign_in_again(page, cloud, RECEPTION_UPN)
    expect(page.locator("#account-changed")).to_contain_text(JSMITH_UPN)
    screenshot(page, "different-account-warning")
    page.goto(served.url + "test")
    page.fill("#to", "someone@contoso.cn")
    page.fill("#subject", "after the change")
    page.click("#send")
    page.wait_for_url("**/queue/*")
    wait_for_state(page, "sent")  # the engine ran with the new account
    page.goto(second)
    expect(page.locator("#message-state")).to_have_attribute("data-state", "held")
    expect(page.locator("#held-reason")).to_contain_text("account is confirmed")
    expect(page.locator("#banner-held")).to_be_visible()
    assert delivered_by_subject(cloud, {"held, other account"}) == {"held, other account": []}

    # The administrator's explicit choice sends it, as the new account.
    page.click("#action-release")
    wait_for_state(page, "sent")
    (sent,) = delivered_by_subject(cloud, {"held, other account"})["held, other account"]
    assert sent["upn"] == RECEPTION_UPN
