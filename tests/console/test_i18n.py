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
from tests.console.conftest import Browser


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
