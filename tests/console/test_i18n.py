"""English or 简体中文: switched on the page, defaulting to console.language."""

from __future__ import annotations

import pytest

from mailgate.config.store import Store
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
