"""The app as a whole: every page renders; health, readiness and /metrics."""

from __future__ import annotations

import time

from mailgate.gateway.queue_schema import Incoming
from mailgate.service import Gateway
from tests.console.conftest import PAGES, Browser


async def test_every_page_renders(admin: Browser) -> None:
    for page in (f"/{name}" for name in PAGES):
        response = await admin.get(page)
        assert response.status_code == 200, (page, response.text[:500])


async def test_health_ready_and_metrics(admin: Browser, gateway: Gateway) -> None:
    assert (await admin.http.get("/healthz")).json() == {"status": "ok"}
    ready = await admin.http.get("/readyz")
    assert ready.status_code == 503  # nobody signed in yet
    assert "signed in" in ready.json()["reason"]
    gateway.queue.accept(
        Incoming("a@contoso.com", ("b@contoso.com",), b"Subject: x\r\n\r\nx"), time.time()
    )
    metrics = (await admin.http.get("/metrics")).text
    assert 'mailgate_queue_depth{state="queued"} 1.0' in metrics
    assert "mailgate_queue_oldest_age_seconds" in metrics
    assert "mailgate_messages_accepted_total 1.0" in metrics
