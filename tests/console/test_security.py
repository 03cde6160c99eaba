"""Nothing without a session; CSRF everywhere; the setup token once; throttled logins."""

from __future__ import annotations

import pytest
from starlette.routing import Route

from mailgate.config.store import Store
from mailgate.console.app import create_console_app
from mailgate.console.middleware import is_public
from mailgate.console.security import LoginThrottle
from mailgate.service import Gateway
from tests.console.conftest import PASSWORD, SETUP_TOKEN, Browser, set_up

PUBLIC = {"/healthz", "/readyz", "/login", "/setup", "/lang"}


def _routes(gateway: Gateway) -> list[tuple[str, str]]:
    app = create_console_app(gateway, SETUP_TOKEN)
    found = []
    for route in app.routes:
        if isinstance(route, Route):
            path = route.path.replace("{message_id:int}", "1").replace("{action}", "retry")
            path = path.replace("{username}", "printer")
            for method in sorted(route.methods or {"GET"}):
                if method != "HEAD":
                    found.append((method, path))
    return found


async def test_every_private_route_refuses_without_a_session(
    anonymous: Browser, gateway: Gateway
) -> None:
    checked = 0
    for method, path in _routes(gateway):
        if path in PUBLIC:
            continue
        response = await anonymous.http.request(method, path)
        if path.startswith("/api/") or path == "/metrics":
            assert response.status_code == 401, (method, path)
        else:
            assert response.status_code == 303, (method, path)
            # A page asked for comes back after the login; never anything but the login page.
            assert response.headers["location"].split("?next=")[0] == "/login", (method, path)
        checked += 1
    assert checked > 30


async def test_public_routes_are_the_documented_ones(gateway: Gateway) -> None:
    public = {p for _, p in _routes(gateway) if is_public(p)}
    assert public == PUBLIC


async def test_every_form_post_needs_the_csrf_token(admin: Browser, gateway: Gateway) -> None:
    for method, path in _routes(gateway):
        if method != "POST" or path.startswith("/api/"):
            continue
        response = await admin.http.post(path, data={"csrf": "forged"})
        assert response.status_code == 403, path
        response = await admin.http.post(path, data={})
        assert response.status_code == 403, path


async def test_every_api_change_needs_the_csrf_header(admin: Browser, gateway: Gateway) -> None:
    for method, path in _routes(gateway):
        if method == "GET" or not path.startswith("/api/"):
            continue
        response = await admin.http.request(method, path, headers={"X-CSRF-Token": "forged"})
        assert response.status_code == 403, (method, path)
        response = await admin.http.request(method, path)
        assert response.status_code == 403, (method, path)


async def test_setup_token_is_single_use(anonymous: Browser) -> None:
    first = await set_up(anonymous)
    assert first.status_code == 303
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie or "samesite=strict" in cookie.lower()
    anonymous.http.cookies.clear()
    again = await set_up(anonymous)
    # A password exists now: /setup sends the visitor to /login and refuses the token.
    assert again.status_code in (303, 403)
    assert "mailgate_session" not in again.headers.get("set-cookie", "")


async def test_wrong_setup_token_is_refused(anonymous: Browser) -> None:
    await anonymous.get("/setup")
    response = await anonymous.post(
        "/setup", {"token": "guess", "password": PASSWORD, "password2": PASSWORD}
    )
    assert response.status_code == 403
    assert "mailgate_session" not in response.headers.get("set-cookie", "")


async def test_login_logout_and_throttle(admin: Browser) -> None:
    await admin.post("/logout")
    assert (await admin.http.get("/")).status_code == 303
    await admin.get("/login")
    for _ in range(5):
        assert (await admin.post("/login", {"password": "wrong"})).status_code == 401
    locked = await admin.post("/login", {"password": PASSWORD})
    assert locked.status_code == 429  # even the right password waits out the lockout


async def test_right_password_logs_in(admin: Browser) -> None:
    await admin.post("/logout")
    await admin.get("/login")
    response = await admin.post("/login", {"password": PASSWORD})
    assert response.status_code == 303
    assert (await admin.http.get("/")).status_code == 200


async def test_security_headers(anonymous: Browser) -> None:
    response = await anonymous.http.get("/login")
    csp = response.headers["content-security-policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert "<script>" not in response.text  # no inline script anywhere


@pytest.mark.parametrize(
    ("failures", "at", "expect_wait"),
    [
        ([0, 1, 2, 3], 4, 0.0),  # four wrong: still allowed
        ([0, 1, 2, 3, 4], 5, 59.0),  # fifth: locked 60 s from the fifth
        ([0, 1, 2, 3, 4], 64, 0.0),  # lockout over
        ([0, 1, 2, 3, 400], 401, 0.0),  # the first four fell out of the window
    ],
)
def test_throttle_table(failures: list[float], at: float, expect_wait: float) -> None:
    throttle = LoginThrottle(max_failures=5, window=300, lockout=60)
    for when in failures:
        throttle.failed("10.0.0.1", when)
    assert throttle.wait("10.0.0.1", at) == expect_wait
    assert throttle.wait("10.0.0.2", at) == 0.0


def test_throttle_lockout_doubles_and_success_resets() -> None:
    throttle = LoginThrottle(max_failures=2, window=300, lockout=10)
    for when in (0, 1):
        throttle.failed("c", when)
    assert throttle.wait("c", 1) == 10
    for when in (20, 21):
        throttle.failed("c", when)
    assert throttle.wait("c", 21) == 20
    throttle.succeeded("c")
    assert throttle.wait("c", 21) == 0


async def test_metrics_bearer_token_for_a_scraper(anonymous: Browser, store: Store) -> None:
    assert (await anonymous.http.get("/metrics")).status_code == 401
    store.set("console.metrics_token", "s3cret-scrape-token")
    wrong = await anonymous.http.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401
    right = await anonymous.http.get(
        "/metrics", headers={"Authorization": "Bearer s3cret-scrape-token"}
    )
    assert right.status_code == 200
    assert "mailgate_" in right.text
    # The token opens /metrics only.
    other = await anonymous.http.get(
        "/api/status", headers={"Authorization": "Bearer s3cret-scrape-token"}
    )
    assert other.status_code == 401
