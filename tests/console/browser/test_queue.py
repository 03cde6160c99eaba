"""The Queue pages of a running, signed-in gateway: mail deferred while Exchange is down,
one message held by the administrator, then retried and released from the message page."""

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
from tests.gateway.e2e_helpers import Mailgate, assert_delivered_once, delivered_by_subject

Shot = Callable[[Page, str], Path]


def _test_send(page: Page, served: Served, subject: str) -> str:
    """Queue a message from the Test send page; the URL of its message page."""
    page.goto(served.url + "test")
    page.fill("#to", "someone@contoso.cn")
    page.fill("#subject", subject)
    page.click("#send")
    page.wait_for_url("**/queue/*")
    return page.url.split("?")[0]


def test_retry_and_release_from_the_message_page(
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

    # Exchange cannot be reached: both messages are deferred (the next try is a minute away).
    cloud.set_scenario(smtp_down=True)
    to_hold = _test_send(page, served, "to be held")
    wait_for_state(page, "deferred")
    to_retry = _test_send(page, served, "to be retried")
    wait_for_state(page, "deferred")
    expect(page.locator("#history")).to_contain_text("refused the connection")

    page.goto(to_hold)
    page.click("#action-hold")
    wait_for_state(page, "held")
    expect(page.locator("#held-reason")).to_contain_text("held by the administrator")
    screenshot(page, "message-held")

    page.goto(served.url + "queue")
    expect(page.locator("#filter-held")).to_contain_text("(1)")
    expect(page.locator("#filter-deferred")).to_contain_text("(1)")
    page.click("#filter-held")
    expect(page.locator("#queue-table tbody tr")).to_have_count(1)
    expect(page.locator("#queue-table tbody tr")).to_contain_text("to be held")
    screenshot(page, "queue-held")

    # Exchange is back; nothing moves until the administrator acts (backoff is 60 s).
    cloud.set_scenario(smtp_down=False)
    page.goto(to_retry)
    page.click("#action-retry")
    wait_for_state(page, "sent")
    screenshot(page, "message-retried")
    page.goto(to_hold)
    expect(page.locator("#message-state")).to_have_attribute("data-state", "held")
    page.click("#action-release")
    wait_for_state(page, "sent")
    expect(page.locator("#history")).to_contain_text("released by the administrator")
    screenshot(page, "message-released")

    subjects = {"to be held", "to be retried"}
    assert all(delivered_by_subject(cloud, subjects).values())
    assert_delivered_once(cloud, subjects, JSMITH_UPN)
    page.goto(served.url + "queue?state=sent")
    expect(page.locator("#queue-table tbody tr")).to_have_count(2)
