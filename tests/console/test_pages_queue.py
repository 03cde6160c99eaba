"""The queue pages and their API: actions on messages, and the test send."""

from __future__ import annotations

import html
import time

import pytest

from mailgate.config.store import Store
from mailgate.gateway.queue import State
from mailgate.gateway.queue_schema import Incoming
from mailgate.service import Gateway
from tests.console.conftest import Browser


async def test_queue_actions_from_pages_and_api(admin: Browser, gateway: Gateway) -> None:
    message = gateway.queue.accept(
        Incoming("a@x.com", ("b@x.com",), b"Subject: hi\r\n\r\nx"), time.time()
    )
    listing = await admin.get("/queue?state=queued")
    assert f'id="message-{message}"' in listing.text
    await admin.get(f"/queue/{message}")
    assert (await admin.post(f"/queue/{message}/hold")).status_code == 303
    info = gateway.queue.get(message)
    assert info is not None
    assert info.state is State.HELD
    response = await admin.api("POST", f"/api/queue/{message}/release")
    assert response.json() == {"changed": True}
    detail = (await admin.http.get(f"/api/queue/{message}")).json()
    assert detail["state"] == "queued"
    assert any("held" in h["text"] for h in detail["history"])
    assert (await admin.api("DELETE", f"/api/queue/{message}")).status_code == 200
    assert gateway.queue.get(message) is None


async def test_test_send_queues_a_message(admin: Browser, store: Store, gateway: Gateway) -> None:
    store.set("sender.address", "scanner@contoso.com")
    await admin.get("/test")
    response = await admin.post("/test", {"to": "b@contoso.com", "subject": "hi", "body": "x"})
    assert response.status_code == 303
    infos = gateway.queue.messages()
    assert infos[0].subject == "hi"
    assert infos[0].envelope_from == "scanner@contoso.com"


async def test_test_send_with_provider_none_and_no_sender_says_to_set_it(
    admin: Browser, store: Store, gateway: Gateway
) -> None:
    store.set("smtp.server", "relay.example.org:587")  # the control panel: provider none
    await admin.get("/test")
    response = await admin.post("/test", {"to": "b@contoso.com", "subject": "hi", "body": "x"})
    assert response.status_code == 400
    text = " ".join(html.unescape(response.text).split())
    assert "the provider is `none`, so there is no signed-in account to send as" in text
    assert "mailgate config set sender.address you@example.com" in text
    assert "Device details" in text
    assert gateway.queue.messages() == []


@pytest.mark.parametrize(
    ("field", "value", "named"),
    [
        ("subject", "Scan\r\nBcc: victim@fabrikam.test", "Subject"),
        ("to", "a@contoso.com\r\nBcc: victim@fabrikam.test", "To"),
        ("to", "Evil\nName <a@contoso.com>", "To"),
    ],
)
async def test_test_send_refuses_header_injection(
    admin: Browser, store: Store, gateway: Gateway, field: str, value: str, named: str
) -> None:
    store.set("sender.address", "scanner@contoso.com")
    fields = {"to": "a@contoso.com", "subject": "test", "body": "hi", field: value}
    response = await admin.api("POST", "/api/test-send", fields)
    assert response.status_code == 400
    assert named in response.json()["error"]
    assert gateway.queue.messages() == []
    bad = await admin.api("PATCH", "/api/settings", {"sender.address": "a@b.test\r\nBcc: x@y.test"})
    assert bad.status_code == 400


async def test_every_action_is_followed_by_a_flash(admin: Browser) -> None:
    """The redirect after an action names it; the page it lands on says what happened."""
    for done, text in [
        ("test", "The test message is queued"),
        ("hold", "The message is held"),
        ("none", "Nothing changed"),
        ("delete", "The message was deleted."),
    ]:
        page = await admin.get(f"/queue?done={done}")
        assert 'id="flash"' in page.text, done
        assert text in page.text, done
    assert 'id="flash"' not in (await admin.get("/queue?done=bogus")).text


async def test_only_fitting_actions_and_delete_asks_first(admin: Browser, gateway: Gateway) -> None:
    message = gateway.queue.accept(
        Incoming("a@x.com", ("b@x.com",), b"Subject: hi\r\n\r\nx"), time.time()
    )
    queued = (await admin.get(f"/queue/{message}")).text
    assert 'id="action-hold"' in queued
    assert 'id="action-release"' not in queued
    gateway.queue.hold(message, time.time(), "held by the administrator")
    held = (await admin.get(f"/queue/{message}")).text
    assert 'id="action-release"' in held
    assert 'id="action-hold"' not in held
    # Delete is a link to a confirmation, which alone posts the deletion.
    assert f'href="/queue/{message}?confirm=delete"' in held
    assert 'id="confirm-delete"' not in held
    confirm = (await admin.get(f"/queue/{message}?confirm=delete")).text
    assert 'id="confirm-delete-yes"' in confirm
    assert gateway.queue.get(message) is not None
    done = await admin.post(f"/queue/{message}/delete")
    assert done.headers["location"] == "/queue?done=delete"
    assert gateway.queue.get(message) is None
