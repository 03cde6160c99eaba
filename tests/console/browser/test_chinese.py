"""The console in Simplified Chinese, with the manual's own terms (seed/…zh-CN.txt)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from playwright.sync_api import Page, expect

from mailgate.sim.server import SimulatorThread
from tests.console.browser.browsing import (
    JSMITH_PRIMARY,
    JSMITH_UPN,
    Served,
    configure_21vianet,
    create_admin,
    wait_for_state,
)
from tests.gateway.e2e_helpers import Mailgate

Shot = Callable[[Page, str], Path]
#: The manual's field labels on the SMTP server page ([服务提供商], [服务器地址], …).
SMTP_TERMS = ["SMTP服务器", "服务提供商", "服务器地址", "主机名", "客户端ID", "范围", "保存"]
#: Their English texts, which must not be left over anywhere on the page.
ENGLISH = ["Service provider", "Server address", "Host name", "Client ID", "Save"]


def _main_text(page: Page) -> str:
    return page.inner_text("body")


def test_chinese_console(
    mailgate: Mailgate,
    serve: Callable[[], Served],
    cloud: SimulatorThread,
    page: Page,
    screenshot: Shot,
) -> None:
    configure_21vianet(mailgate.data_dir, cloud)
    served = serve()
    create_admin(page, served)

    # The language switch in the page header.
    page.select_option("#lang-select", "zh-cn")
    page.click("#lang-submit")
    page.wait_for_url(served.url + "smtp")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")

    text = _main_text(page)
    for term in SMTP_TERMS:
        assert term in text, term
    for english in ENGLISH:
        assert english not in text, english
    expect(page.locator("#provider option[value=none]")).to_have_text("不指定")
    expect(page.locator("#admin-consent h2")).to_have_text("管理员同意")
    screenshot(page, "smtp-server")

    # Status: the provider and "nobody signed in" in Chinese.
    page.click("#nav-status")
    expect(page.locator("#account")).to_contain_text("服务提供商")
    expect(page.locator("h1")).to_have_text("状态")
    screenshot(page, "status")

    # The wizard: [输入身份验证代码] → [下一步] → the code → 登录成功.
    page.click("#nav-signin")
    expect(page.locator("#wizard-intro h2")).to_have_text("输入身份验证代码")
    expect(page.locator("#wizard-next")).to_have_text("下一步")
    screenshot(page, "enter-authentication-code")
    page.click("#wizard-next")
    code = page.locator("#user-code")
    expect(code).to_be_visible()
    screenshot(page, "code")
    assert cloud.sign_in(code.inner_text(), JSMITH_UPN).ok
    expect(page.locator("#wizard-success h2")).to_have_text("登录成功")
    expect(page.locator("#signed-in-address")).to_have_text(JSMITH_PRIMARY)
    screenshot(page, "signed-in")

    # Test send, the message page and the queue.
    page.click("#nav-test")
    expect(page.locator("h1")).to_have_text("测试发送")
    page.fill("#to", "someone@contoso.cn")
    page.click("#send")
    page.wait_for_url("**/queue/*")
    wait_for_state(page, "sent")
    screenshot(page, "message")
    page.click("#nav-queue")
    expect(page.locator("h1")).to_have_text("队列")
    screenshot(page, "queue")

    for nav, name in [("#nav-device", "device-details"), ("#nav-settings", "settings")]:
        page.click(nav)
        screenshot(page, name)
    page.click("#nav-device")
    expect(page.locator("main")).to_contain_text(JSMITH_UPN)

    # The choice sticks (a cookie), and switching back works.
    page.reload()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    page.select_option("#lang-select", "en")
    page.click("#lang-submit")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#nav-smtp")).to_have_text("SMTP server")
