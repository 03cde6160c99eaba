"""Login, logout, first-run setup and the language switch: the only pages without a session."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailgate.config.errors import ValidationError
from mailgate.console import i18n, texts
from mailgate.console.security import SESSION_COOKIE, check_new_password
from mailgate.console.web import (
    client_address,
    console_of,
    gettext,
    read_form,
    redirect,
    render,
    safe_next,
    session_of,
)


def _signed_in_response(request: Request, target: str = "/") -> Response:
    console = console_of(request)
    session = console.sessions.create()
    response = redirect(target)
    response.set_cookie(
        SESSION_COOKIE,
        session.id,
        httponly=True,
        samesite="strict",
        secure=console.secure_cookies,
    )
    return response


async def login_page(request: Request) -> Response:
    console = console_of(request)
    if not await asyncio.to_thread(console.password.exists):
        return render(request, "setup.html", token=request.query_params.get("token", ""))
    if session_of(request) is not None:
        return redirect("/")
    return render(request, "login.html", next=safe_next(request.query_params.get("next")))


async def login_submit(request: Request) -> Response:
    console = console_of(request)
    form = await read_form(request)
    _ = gettext(request)
    client, now = client_address(request), console.clock()
    wait = console.throttle.wait(client, now)
    if wait > 0:
        error = _("Too many wrong passwords. Try again in %(seconds)d seconds.") % {
            "seconds": int(wait) + 1
        }
        return render(request, "login.html", 429, error=error)
    # argon2 is slow on purpose: off the event loop.
    if await asyncio.to_thread(console.password.verify, form.get("password", "")):
        console.throttle.succeeded(client)
        return _signed_in_response(request, safe_next(form.get("next")))
    console.throttle.failed(client, now)
    return render(request, "login.html", 401, error=_("Wrong password."))


async def logout(request: Request) -> Response:
    await read_form(request)
    console_of(request).sessions.end(request.cookies.get(SESSION_COOKIE))
    response = redirect("/login")
    response.delete_cookie(SESSION_COOKIE)
    return response


async def setup_page(request: Request) -> Response:
    if await asyncio.to_thread(console_of(request).password.exists):
        return redirect("/login")
    return render(request, "setup.html", token=request.query_params.get("token", ""))


async def setup_submit(request: Request) -> Response:
    console = console_of(request)
    form = await read_form(request)
    _ = gettext(request)
    token = form.get("token", "")
    if await asyncio.to_thread(console.password.exists) or not console.setup.active:
        return render(request, "setup.html", 403, error=_("The setup token was already used."))
    client, now = client_address(request), console.clock()
    if console.throttle.wait(client, now) > 0 or not console.setup.matches(token):
        console.throttle.failed(client, now)
        error = _("Wrong setup token. Copy it from the output of mailgate serve.")
        return render(request, "setup.html", 403, error=error, token="")
    try:
        check_new_password(form.get("password", ""), form.get("password2", ""))
    except ValidationError as problem:
        return render(
            request,
            "setup.html",
            400,
            error=texts.error_text(problem, gettext(request)),
            error_for=texts.error_input(problem),
            token=token,
        )
    console.setup.consume()  # single use, before the slow hash
    await asyncio.to_thread(console.password.set, form["password"])
    return _signed_in_response(request, "/smtp")


async def switch_language(request: Request) -> Response:
    form = await read_form(request)
    response = redirect(safe_next(form.get("next")))
    response.set_cookie(
        i18n.LANGUAGE_COOKIE,
        i18n.normalize(form.get("lang")),
        max_age=365 * 86400,
        samesite="strict",
        secure=console_of(request).secure_cookies,
    )
    return response


routes = [
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login_submit, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
    Route("/setup", setup_page, methods=["GET"]),
    Route("/setup", setup_submit, methods=["POST"]),
    Route("/lang", switch_language, methods=["POST"]),
]
