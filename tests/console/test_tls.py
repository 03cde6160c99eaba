"""The console over HTTPS with a generated certificate (`console.tls yes`)."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx

from mailgate.config.store import init_data_dir
from mailgate.service import Gateway, ListenOverride, start_console


async def test_console_tls_with_a_generated_certificate(tmp_path: Path) -> None:
    store = init_data_dir(tmp_path / "data")
    store.set("console.tls", "yes")
    override = ListenOverride("127.0.0.1", 0, console_host="127.0.0.1", console_port=0)
    gateway = Gateway(store, store.settings(allow_incomplete=True), override)
    bound = await gateway.start()
    console = await start_console(gateway, override, bound)
    try:
        assert console.url.startswith("https://127.0.0.1:")
        cert = store.data_dir / "tls" / "console.pem"
        context = ssl.create_default_context(cafile=str(cert))
        async with httpx.AsyncClient(verify=context) as client:
            health = await client.get(console.url + "healthz")
            setup = await client.get(console.setup_url)
        assert health.status_code == 200
        cookies = setup.headers.get_list("set-cookie")
        assert cookies
        assert all("Secure" in c for c in cookies)
    finally:
        await console.stop()
        await gateway.stop(grace=1)
        store.close()
