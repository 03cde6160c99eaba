"""The vendor manual's whole procedure, done in the console as a new administrator does it.

Fresh data directory, nothing configured: `serve` prints the setup link → admin password →
CA bundle (the simulator's CA stands for a TLS-inspecting proxy's) → SMTP server page with
the 21Vianet preset → Save → "Enter authentication code" → Next → the code → approved on the
simulated Microsoft page as a mailbox whose UPN differs from its primary address → success →
test send → the queue shows it sent → the simulator's mailbox has it from the primary address.
"""

from __future__ import annotations

import smtplib
from collections.abc import Callable
from email.message import EmailMessage
from pathlib import Path

from playwright.sync_api import BrowserContext, Page, expect

from mailgate.sim.server import SimulatorThread
from tests.bounds import SOCKET
from tests.console.browser.browsing import (
    CLIENT_ID,
    JSMITH_PRIMARY,
    JSMITH_UPN,
    Served,
    approve_on_simulator,
    create_admin,
    wait_for_state,
)
from tests.gateway.e2e_helpers import Mailgate, delivered, wait_until

Shot = Callable[[Page, str], Path]
RECIPIENT = "someone@contoso.cn"


def _printer_mail() -> EmailMessage:
    message = EmailMessage()
    message["From"] = "Office Printer <mfp@printer.local>"
    message["To"] = RECIPIENT
    message["Subject"] = "Scan from the printer"
    message.set_content("Scanned before mailgate was configured.\n")
    return message


def test_manual_procedure_in_english(
    mailgate: Mailgate,
    serve: Callable[[], Served],
    cloud: SimulatorThread,
    context: BrowserContext,
    page: Page,
    screenshot: Shot,
) -> None:
    mailgate.ok("init")
    served = serve()
    # A printer already points at mailgate: its mail waits until the console is done.
    with smtplib.SMTP("127.0.0.1", served.smtp_port, timeout=SOCKET) as printer:
        printer.send_message(_printer_mail(), "mfp@printer.local", ["someone@contoso.cn"])

    # The manual's step 2: the administrator logs in (here: creates the password first).
    assert served.setup_link is not None, served.log()
    page.goto(served.setup_link)
    expect(page.locator("#token")).not_to_have_value("")
    screenshot(page, "01-setup")
    create_admin(page, served)
    page.click("#nav-queue")
    waiting = page.locator("#queue-table tbody tr", has_text="Scan from the printer")
    expect(waiting).to_have_class("state-held")
    waiting.locator("a").click()
    expect(page.locator("#held-reason")).to_be_visible()
    screenshot(page, "02-held-until-configured")

    # Step 3: network settings; the extra CA bundle lets mailgate trust the simulator.
    page.click("#nav-settings")
    page.fill("#network_ca_bundle", str(cloud.ca_path))
    page.click("#save")
    expect(page.locator("#saved")).to_be_visible()
    screenshot(page, "03-settings")

    # Steps 4-6: SMTP server page, provider preset and the four fields.
    page.click("#nav-smtp")
    page.select_option("#provider", "exchange-online-21vianet")
    expect(page.locator("#oauth-fields")).to_be_visible()
    expect(page.locator("#plain-fields")).to_be_hidden()
    page.fill("#server", f"127.0.0.1:{cloud.smtp_port}")
    page.fill("#host", cloud.idp_hostport)
    page.fill("#client_id", CLIENT_ID)
    screenshot(page, "04-smtp-server")
    page.click("#save")

    # Step 7: Save leads to "Enter authentication code" → Next → a code is shown.
    page.wait_for_url(served.url + "signin")
    expect(page.locator("#wizard-intro")).to_be_visible()
    screenshot(page, "05-enter-authentication-code")
    page.click("#wizard-next")
    code = page.locator("#user-code")
    expect(code).to_be_visible()
    expect(page.locator("#qr")).to_be_visible()
    verification_uri = page.get_attribute("#verification-uri", "href")
    assert verification_uri is not None
    assert verification_uri == "https://microsoft.com/deviceloginchina", verification_uri
    screenshot(page, "06-code")

    # The person signs in at "Microsoft" with the sending account and approves.
    microsoft = approve_on_simulator(
        context, cloud, verification_uri, code.inner_text(), JSMITH_UPN
    )
    screenshot(microsoft, "07-microsoft-approved")
    microsoft.close()

    # The wizard follows the sign-in by itself and ends on success (UPN and primary address shown apart).
    expect(page.locator("#wizard-success")).to_be_visible()
    expect(page.locator("#signed-in-upn")).to_have_text(JSMITH_UPN)
    expect(page.locator("#signed-in-address")).to_have_text(JSMITH_PRIMARY)
    screenshot(page, "08-signed-in")

    # Test send → the message page → sent.
    page.click("#to-test")
    page.fill("#to", RECIPIENT)
    page.fill("#subject", "mailgate console test")
    page.click("#send")
    page.wait_for_url("**/queue/*")
    wait_for_state(page, "sent")
    screenshot(page, "09-message-sent")
    wait_until(lambda: len(delivered(cloud)) == 2, 15, "both messages at the simulator")

    page.click("#nav-queue")
    row = page.locator("#queue-table tbody tr", has_text=RECIPIENT)
    expect(row).to_have_count(2)
    for state in row.all():
        expect(state).to_have_class("state-sent")
    screenshot(page, "10-queue")

    page.click("#nav-status")
    expect(page.locator("#restart-needed")).to_have_count(0)
    expect(page.locator("#upn")).to_have_text(JSMITH_UPN)
    expect(page.locator("#sender-address")).to_have_text(JSMITH_PRIMARY)
    screenshot(page, "11-status")

    # In the simulated Exchange mailbox: sent by the UPN, from the primary address; the
    # printer's message, held while nothing was configured, went out after the sign-in.
    by_subject = {m.summary()["subject"]: m.summary() for m in delivered(cloud)}
    test = by_subject["mailgate console test"]
    assert test["upn"] == JSMITH_UPN
    assert test["rcpt_tos"] == [RECIPIENT]
    assert test["mail_from"] == JSMITH_PRIMARY
    assert JSMITH_PRIMARY in test["from"], test
    printed = by_subject["Scan from the printer"]
    assert printed["upn"] == JSMITH_UPN
    assert printed["mail_from"] == JSMITH_PRIMARY  # sender policy "rewrite" (the default)
    assert JSMITH_PRIMARY in printed["from"], printed
