"""English or 简体中文: switched on the page, defaulting to console.language."""

# Chinese sentences use the full-width comma, colon and full stop on purpose.
# ruff: noqa: RUF001

from __future__ import annotations

import re
from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.pofile import read_po

import mailgate.console
from mailgate.config.store import Store
from mailgate.console import i18n, texts
from mailgate.identity.errors import classify
from tests.console.conftest import PASSWORD, SETUP_TOKEN, Browser, set_up


@pytest.mark.parametrize(
    ("page", "chinese"),
    [
        ("/smtp", "服务提供商"),
        ("/smtp", "客户端ID"),
        ("/signin", "输入身份验证代码"),
        ("/device", "设备详细信息"),
        ("/", "状态"),
    ],
)
async def test_chinese_console(admin: Browser, page: str, chinese: str) -> None:
    await admin.get("/")
    switched = await admin.post("/lang", {"lang": "zh-CN", "next": page})
    assert switched.status_code == 303
    response = await admin.get(page)
    assert chinese in response.text
    assert 'lang="zh-CN"' in response.text


async def test_language_default_comes_from_the_setting(admin: Browser, store: Store) -> None:
    store.set("console.language", "zh-CN")
    assert "下一步" in (await admin.get("/signin")).text


# -- one catalog, complete in Chinese ------------------------------------------------------

CONSOLE = Path(mailgate.console.__file__).parent
_CJK = re.compile(r"[\u4e00-\u9fff]")


def _extracted() -> set[str]:
    """Every msgid the sources mark (console, templates, the identity catalog), as
    `pybabel extract -F console/babel.cfg -k N_` finds them."""
    with (CONSOLE / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)  # type: ignore[no-untyped-call]
    found = extract_from_dir(
        CONSOLE.parent, method_map, options_map, keywords={**DEFAULT_KEYWORDS, "N_": None}
    )
    return {message if isinstance(message, str) else message[0] for _, _, message, *_ in found}


def test_every_msgid_has_a_chinese_translation() -> None:
    with (CONSOLE / "locales" / "zh_CN" / "LC_MESSAGES" / "messages.po").open("rb") as po:
        catalog = read_po(po)
    extracted = _extracted()
    assert "Blocked by Conditional Access" in extracted  # the identity catalog is included
    missing = sorted(
        msgid
        for msgid in extracted
        if not (entry := catalog.get(msgid)) or not entry.string or entry.fuzzy
    )
    assert missing == []


def test_sign_in_problems_render_in_the_readers_language() -> None:
    problem = classify(
        {"error": "invalid_grant", "error_codes": [53003], "error_description": "AADSTS53003: x"}
    )
    zh = i18n.gettext_for("zh-cn").gettext
    title, explanation, todo = texts.problem_texts(problem, zh)
    assert (title, explanation) == ("被条件访问阻止", zh(problem.explanation))
    assert all(_CJK.search(text) for text in (title, explanation, todo))
    # The CLI and the English console keep the catalog's English.
    en = i18n.gettext_for("en").gettext
    assert texts.problem_texts(problem, en) == (
        problem.title,
        problem.explanation,
        problem.what_to_do,
    )


@pytest.mark.parametrize(
    ("stored", "chinese"),
    [
        ("accepted from 10.0.0.7 for 2 recipient(s)", "已从10.0.0.7接收，收件人 2 个"),
        ("sign-in needed", "需要登录 Microsoft"),
        ("held: sign-in needed", "已保留：需要登录 Microsoft"),
        ("retry requested", "已请求重试"),
        (
            "Signed in: delivery resumed, 3 message(s) released.",
            "已登录 Microsoft：投递已恢复，已放行 3 封邮件。",
        ),
        (
            "held: Sign-in expired or revoked. The stored refresh token has expired or was "
            "revoked.",
            "已保留：登录已过期或被撤销。保存的刷新令牌已过期或被撤销。",
        ),
        (
            "held: AADSTS50173 — Sign-in revoked. The stored refresh token has expired or was "
            "revoked.",
            "已保留：AADSTS50173 — 登录已被撤销。保存的刷新令牌已过期或被撤销。",
        ),
        ("accepted from console for 1 recipient(s)", "已从控制台接收，收件人 1 个"),
        ("something no catalog knows", "something no catalog knows"),
    ],
)
def test_stored_lines_render_in_chinese(stored: str, chinese: str) -> None:
    assert texts.stored_text(stored, i18n.gettext_for("zh-cn").gettext) == chinese
    assert texts.stored_text(stored, i18n.gettext_for("en").gettext) == stored


# -- first run -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("zh-CN,zh;q=0.9,en;q=0.8", "zh-cn"),
        ("en-US,en;q=0.9,zh-CN;q=0.8", "en"),
        ("fr-FR, zh;q=0.5", "zh-cn"),
        ("en;q=0.2, zh-TW;q=0.7", "zh-cn"),
        ("zh;q=0, de", None),
        ("", None),
    ],
)
def test_accept_language(header: str, language: str | None) -> None:
    assert i18n.from_accept_language(header) == language


async def test_a_chinese_browser_gets_chinese_and_the_switch_keeps_the_setup_token(
    anonymous: Browser,
) -> None:
    page = await anonymous.get(
        f"/setup?token={SETUP_TOKEN}", headers={"Accept-Language": "zh-CN,zh;q=0.9"}
    )
    assert 'lang="zh-CN"' in page.text
    assert f'name="next" value="/setup?token={SETUP_TOKEN}"' in page.text
    switched = await anonymous.post("/lang", {"lang": "en", "next": f"/setup?token={SETUP_TOKEN}"})
    assert switched.headers["location"] == f"/setup?token={SETUP_TOKEN}"


async def test_login_returns_to_the_page_asked_for(anonymous: Browser) -> None:
    assert (await set_up(anonymous)).status_code == 303
    await anonymous.get("/")
    assert (await anonymous.post("/logout")).status_code == 303
    asked = await anonymous.get("/queue?state=held")
    assert asked.headers["location"] == "/login?next=%2Fqueue%3Fstate%3Dheld"
    await anonymous.get(asked.headers["location"])
    done = await anonymous.post("/login", {"password": PASSWORD, "next": "/queue?state=held"})
    assert done.headers["location"] == "/queue?state=held"
    # Only local paths: no open redirect.
    await anonymous.get("/")
    assert (await anonymous.post("/logout")).status_code == 303
    await anonymous.get("/login")
    elsewhere = await anonymous.post("/login", {"password": PASSWORD, "next": "//evil.example"})
    assert elsewhere.headers["location"] == "/"


@pytest.mark.parametrize(
    ("size", "shown"),
    [(362, "362 B"), (4300, "4.2 KB"), (36700160, "35.0 MB"), (3 * 1024**3, "3.0 GB")],
)
def test_sizes_are_humanised(size: int, shown: str) -> None:
    assert i18n.filesize(size) == shown
