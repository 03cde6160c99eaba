"""A sign-in the tenant refuses for lack of admin consent ends on the admin-consent link
(the tenant admin grants it once); following it, accepting, and trying again succeeds."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, expect

from mailgate.sim.server import SimulatorThread
from tests.console.browser.browsing import (
    CLIENT_ID,
    JSMITH_UPN,
    Served,
    approve_on_simulator,
    configure_21vianet,
    create_admin,
)
from tests.gateway.e2e_helpers import Mailgate

Shot = Callable[[Page, str], Path]


def _code(page: Page) -> tuple[str, str]:
    """The user code and verification link the wizard shows."""
    expect(page.locator("#user-code")).to_be_visible()
    uri = page.get_attribute("#verification-uri", "href")
    assert uri is not None
    return page.inner_text("#user-code"), uri


def test_consent_required_ends_on_the_admin_consent_link(
    mailgate: Mailgate,
    serve: Callable[[], Served],
    cloud: SimulatorThread,
    context: BrowserContext,
    page: Page,
    screenshot: Shot,
) -> None:
    cloud.set_scenario(consent_required="admin")
    configure_21vianet(mailgate.data_dir, cloud)
    served = serve()
    create_admin(page, served)
    consent_url = f"https://{cloud.idp_hostport}/common/adminconsent?client_id={CLIENT_ID}"

    # The SMTP server page shows the link with its explanation before anyone signs in.
    expect(page.locator("#admin-consent-link")).to_have_attribute("href", consent_url)

    page.click("#nav-signin")
    page.click("#wizard-next")
    code, uri = _code(page)
    approve_on_simulator(context, cloud, uri, code, JSMITH_UPN).close()

    failure = page.locator("#wizard-failure")
    expect(failure).to_be_visible()
    expect(failure).to_have_attribute("data-kind", "consent")
    expect(page.locator("#failure-code")).to_contain_text("AADSTS90094")
    link = page.locator("#failure-consent-link")
    expect(link).to_have_attribute("href", consent_url)
    screenshot(page, "consent-missing")

    # A Global Administrator follows the link (it opens in a new tab) and accepts.
    with context.expect_page() as opened:
        link.click()
    admin = opened.value
    admin.wait_for_load_state()
    expect(admin.locator("h1")).to_have_text("Permissions requested")
    expect(admin.locator("main")).to_contain_text(CLIENT_ID)
    screenshot(admin, "admin-consent-page")
    admin.click("button[value=accept]")
    expect(admin.locator("main")).to_contain_text("Admin consent succeeded")
    admin.close()

    # Try again: a new code, approved, and this time the sign-in succeeds.
    page.click("#wizard-retry")
    second, uri = _code(page)
    assert second != code
    approve_on_simulator(context, cloud, uri, second, JSMITH_UPN).close()
    expect(page.locator("#wizard-success")).to_be_visible()
    expect(page.locator("#signed-in-upn")).to_have_text(JSMITH_UPN)
    screenshot(page, "consent-then-signed-in")
