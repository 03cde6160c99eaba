"""Helpers of the HTML pages: the language, rendering, forms with CSRF, redirects."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response

from mailgate import operations
from mailgate.console import i18n
from mailgate.console.security import PRE_SESSION_COOKIE, Session, csrf_ok
from mailgate.console.state import Console
from mailgate.texts import N_

NAV = [
    ("status", "/"),
    ("smtp", "/smtp"),
    ("signin", "/signin"),
    ("device", "/device"),
    ("sender", "/sender"),
    ("inbound", "/inbound"),
    ("queue", "/queue"),
    ("events", "/events"),
    ("test", "/test"),
    ("settings", "/settings"),
]


def console_of(request: Request) -> Console:
    console: Console = request.app.state.console
    return console


def session_of(request: Request) -> Session | None:
    session: Session | None = request.scope.get("state", {}).get("session")
    return session


def language(request: Request) -> str:
    """The cookie the switch sets, else the console.language setting."""
    chosen = request.cookies.get(i18n.LANGUAGE_COOKIE)
    if chosen:
        return i18n.normalize(chosen)
    browser = i18n.from_accept_language(request.headers.get("accept-language", ""))
    if browser:
        return browser
    return i18n.normalize(str(console_of(request).store.values().get("console.language")))


def gettext(request: Request) -> Any:
    return i18n.gettext_for(language(request)).gettext


def _pre_session(request: Request) -> tuple[str, bool]:
    token = request.cookies.get(PRE_SESSION_COOKIE)
    return (token, False) if token else (secrets.token_urlsafe(32), True)


def render(request: Request, template: str, status: int = 200, **context: Any) -> Response:
    lang = language(request)
    session = session_of(request)
    pre, new_pre = _pre_session(request)
    page = i18n.environment(lang).get_template(template)
    console = console_of(request)
    # The status banner: what needs the admin, on every page once logged in.
    banners = operations.attention(console.gateway, console.clock()) if session else []
    html = page.render(
        lang=lang,
        html_lang="zh-CN" if lang == "zh-cn" else "en",
        languages=i18n.LANGUAGE_NAMES,
        signed_in=session is not None,
        csrf=session.csrf if session else pre,
        nav=NAV if session else [],
        path=request.url.path,
        # The language switch returns here, query included (the setup link's token).
        full_path=request.url.path + (f"?{request.url.query}" if request.url.query else ""),
        request_saved=request.query_params.get("saved") == "1",
        banners=banners,
        flash=FLASHES.get(request.query_params.get("done", "")),
        **context,
    )
    response = HTMLResponse(html, status)
    if session is None and new_pre:
        response.set_cookie(
            PRE_SESSION_COOKIE,
            pre,
            httponly=True,
            samesite="strict",
            secure=console_of(request).secure_cookies,
        )
    return response


async def read_form(request: Request) -> dict[str, str]:
    """The submitted form, after checking its CSRF token (403 when missing or wrong).

    Signed in: the session's token. Before that (login, setup, language): the double-submit
    cookie, so a cross-site form cannot log a browser in or out.
    """
    form = await request.form()
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    session = session_of(request)
    expected = session.csrf if session else request.cookies.get(PRE_SESSION_COOKIE, "")
    if not expected or not csrf_ok(expected, fields.get("csrf")):
        raise HTTPException(
            403, N_("The form was stale or came from another site; reload the page.")
        )
    return fields


#: The flash after an action (``?done=`` of the redirect that follows it): (class, text).
FLASHES = {
    "test": ("ok", N_("The test message is queued; this page shows how its delivery goes.")),
    "retry": ("ok", N_("Retry requested: the message is due now.")),
    "hold": ("ok", N_("The message is held; it is not sent until you release it.")),
    "release": ("ok", N_("The message is released and queued for delivery.")),
    "delete": ("ok", N_("The message was deleted.")),
    "none": ("warn", N_("Nothing changed: that action does not fit the message's state.")),
}

#: What an error page says when the error carries no sentence of its own.
_ERROR_TEXTS = {
    401: N_("Log in to the console first."),
    403: N_("This action is not allowed."),
    404: N_("There is no such page."),
    405: N_("This page cannot be used that way."),
}


async def http_error(request: Request, exc: Exception) -> Response:
    """Error pages in the reader's language, with the way back; JSON for the API."""
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        raise exc
    default = _ERROR_TEXTS.get(exc.status_code, N_("Something went wrong."))
    detail = exc.detail if exc.detail and exc.detail in _KNOWN_DETAILS else default
    if request.url.path.startswith("/api/"):
        return JSONResponse({"error": detail}, exc.status_code, headers=exc.headers)
    return render(request, "error.html", exc.status_code, message=gettext(request)(detail))


#: HTTPException details that are catalog sentences (others, e.g. Starlette's "Not Found",
#: are replaced by the status's own sentence).
_KNOWN_DETAILS = frozenset(
    {
        N_("There is no such message."),
        N_("The form was stale or came from another site; reload the page."),
    }
)


def redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, 303)


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


def safe_next(url: str | None) -> str:
    """Only local paths: the language switch must not become an open redirect."""
    if url and url.startswith("/") and not url.startswith("//"):
        return url
    return "/"
