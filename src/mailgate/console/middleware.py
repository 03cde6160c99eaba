"""Plain ASGI middleware: security headers on every response, and the session gate.

The gate lets through only the public paths (health, login, setup, static files); any other
request without a valid admin session gets 401 (API, metrics) or a redirect to /login
(pages). JSON API calls that change state must carry the session's CSRF token in
``X-CSRF-Token``; HTML forms are checked by ``web.read_form`` in each handler.
"""

from __future__ import annotations

import asyncio
import hmac
from http.cookies import SimpleCookie
from urllib.parse import quote

from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mailgate.console.security import SESSION_COOKIE, csrf_ok
from mailgate.console.state import Console

#: Secret setting: a bearer token that lets a scraper read /metrics without a session.
METRICS_TOKEN = "console.metrics_token"  # noqa: S105 - the setting's name
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/login", "/setup", "/lang"})
PUBLIC_PREFIXES = ("/static/",)
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
#: No inline script or style; images may be data: (none used yet) and our own QR SVG.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
SECURITY_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]


class SecurityHeaders:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        static = str(scope["path"]).startswith("/static/")

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.extend(SECURITY_HEADERS)
                if not static:  # pages show queue contents and account names
                    headers.append((b"cache-control", b"no-store"))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, with_headers)


def _cookie(scope: Scope, name: str) -> str | None:
    for key, value in scope.get("headers", []):
        if key == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            jar.load(value.decode("latin-1"))
            if name in jar:
                return jar[name].value
    return None


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def is_public(path: str) -> bool:
    return path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)


class SessionGate:
    def __init__(self, app: ASGIApp, console: Console) -> None:
        self.app = app
        self.console = console

    async def _scraper(self, scope: Scope) -> bool:
        """A Prometheus scraper with `Authorization: Bearer <console.metrics_token>`."""
        offered = _header(scope, b"authorization")
        if not offered or not offered.startswith("Bearer "):
            return False
        token = await asyncio.to_thread(self.console.store.secret, METRICS_TOKEN)
        return bool(token) and hmac.compare_digest(offered[7:].encode(), str(token).encode())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path, method = str(scope["path"]), str(scope["method"])
        session = self.console.sessions.get(_cookie(scope, SESSION_COOKIE))
        scope.setdefault("state", {})["session"] = session
        refusal: Response | None = None
        api = path.startswith("/api/") or path == "/metrics"
        if session is None and path == "/metrics" and await self._scraper(scope):
            await self.app(scope, receive, send)
            return
        if session is None and not is_public(path):
            if api:
                refusal = JSONResponse({"error": "sign in to the console first"}, 401)
            else:
                # Back to the page asked for after the login (a GET of a local path only).
                wanted = path + (
                    "?" + scope["query_string"].decode() if scope["query_string"] else ""
                )
                target = (
                    f"/login?next={quote(wanted, safe='')}"
                    if method == "GET" and path != "/"
                    else "/login"
                )
                refusal = RedirectResponse(target, 303)
        elif (
            session is not None
            and path.startswith("/api/")
            and method in UNSAFE_METHODS
            and not csrf_ok(session.csrf, _header(scope, b"x-csrf-token"))
        ):
            refusal = JSONResponse({"error": "missing or wrong X-CSRF-Token header"}, 403)
        if refusal is not None:
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)
