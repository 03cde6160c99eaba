"""Status, SMTP server, sign-in wizard, device details, sender policy, inbound, settings."""

from __future__ import annotations

import asyncio
import io

import segno
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailgate import operations as ops
from mailgate.config.errors import ConfigError
from mailgate.config.presets import PRESETS
from mailgate.console import texts
from mailgate.console.security import check_new_password
from mailgate.console.web import console_of, gettext, read_form, redirect, render


async def status_page(request: Request) -> Response:
    data = await asyncio.to_thread(console_of(request).status)
    return render(request, "status.html", active="status", s=data)


async def smtp_page(request: Request) -> Response:
    values = await asyncio.to_thread(ops.smtp_values, console_of(request).gateway)
    return render(request, "smtp.html", active="smtp", v=values, presets=PRESETS)


async def smtp_submit(request: Request) -> Response:
    console = console_of(request)
    form = await read_form(request)
    try:
        signs_in = await console.gateway.run(ops.save_smtp, console.gateway, form)
    except ConfigError as error:
        values = {**await asyncio.to_thread(ops.smtp_values, console.gateway), **form}
        values["smtp_password"] = ""  # write-only: never echoed back
        values["uses_oauth"] = PRESETS.get(form.get("provider", ""), PRESETS["none"]).uses_oauth
        return render(
            request,
            "smtp.html",
            400,
            active="smtp",
            v=values,
            presets=PRESETS,
            error=texts.error_text(error, gettext(request)),
            error_for=texts.error_input(error),
        )
    # The manual's step 6-7: Save leads to "Enter authentication code".
    return redirect("/signin" if signs_in else "/smtp?saved=1")


async def signin_page(request: Request) -> Response:
    console = console_of(request)
    settings = await asyncio.to_thread(ops.current_settings, console.gateway)
    oauth = settings.outbound.oauth if settings else None
    state = console.wizard.state.to_json(console.clock())
    status = await asyncio.to_thread(console.status)
    if state["status"] == "signed_in" and (status.get("needs_sign_in") or status["sign_in_needed"]):
        state["status"] = "idle"  # that sign-in has died since: explain and start again
    problem = console.wizard.state.problem
    if problem is not None:
        title, explanation, todo = texts.problem_texts(problem, gettext(request))
        state["problem"].update(title=title, explanation=explanation, what_to_do=todo)
    return render(
        request,
        "signin.html",
        active="signin",
        w=state,
        s=status,
        held=status["queue"].get("held", 0),
        oauth=oauth,
        consent_url=oauth.admin_consent_url if oauth else None,
    )


async def signin_start(request: Request) -> Response:
    console = console_of(request)
    form = await read_form(request)
    settings = await asyncio.to_thread(ops.current_settings, console.gateway)
    if settings is None or settings.outbound.oauth is None:
        return redirect("/smtp")
    gateway = console.gateway
    account = await asyncio.to_thread(gateway.store.account)
    previous = account.upn if account else None
    # Held mail and a previous account: the page asked what a different account may do.
    guarded = previous is not None and form.get("held_mail") != "send"
    if guarded:
        guarded = await gateway.run(ops.guard_held_mail, gateway, console.clock()) > 0
    await console.wizard.start(settings, previous, guarded)
    return redirect("/signin")


async def signin_cancel(request: Request) -> Response:
    await read_form(request)
    await console_of(request).wizard.cancel()
    return redirect("/signin")


async def signin_qr(request: Request) -> Response:
    """The verification link as an SVG image (an <img>, so no inline SVG or script)."""
    uri = console_of(request).wizard.state.verification_uri
    if not uri:
        return Response(status_code=404)
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=5, border=2)
    return Response(buffer.getvalue(), media_type="image/svg+xml")


async def _settings_form(request: Request, template: str, keys: list[str], active: str) -> Response:
    """A page that sets plain settings keys from same-named form fields (dots as '_')."""
    console = console_of(request)
    if request.method == "POST":
        form = await read_form(request)
        changes = {k: form.get(k.replace(".", "_"), "") for k in keys}
        try:
            await console.gateway.run(ops.set_values, console.gateway, changes)
        except ConfigError as error:
            values = await asyncio.to_thread(console.store.all_values)
            return render(
                request,
                template,
                400,
                active=active,
                v=values,
                error=texts.error_text(error, gettext(request)),
                error_for=texts.error_input(error),
            )
        return redirect(f"{request.url.path}?saved=1")
    values = await asyncio.to_thread(console.store.all_values)
    extra = await asyncio.to_thread(console.status) if active == "device" else {}
    devices = console.gateway.devices.list() if active == "inbound" else []
    return render(request, template, active=active, v=values, s=extra, devices=devices)


async def device_page(request: Request) -> Response:
    return await _settings_form(request, "device.html", ["sender.address"], "device")


async def sender_page(request: Request) -> Response:
    return await _settings_form(
        request, "sender.html", ["sender.policy", "sender.allowed"], "sender"
    )


INBOUND_KEYS = [
    "listener.bind",
    "listener.port",
    "listener.tls_port",
    "listener.networks",
    "listener.tls_cert",
    "listener.tls_key",
    "listener.auth_required",
    "listener.auth_plaintext",
    "listener.max_message_size",
]


async def inbound_page(request: Request) -> Response:
    return await _settings_form(request, "inbound.html", INBOUND_KEYS, "inbound")


async def device_add(request: Request) -> Response:
    console = console_of(request)
    form = await read_form(request)
    try:
        await asyncio.to_thread(
            ops.add_device,
            console.gateway,
            form.get("username", ""),
            form.get("password", ""),
            form.get("note", ""),
            console.clock(),
        )
    except ConfigError as error:
        values = await asyncio.to_thread(console.store.all_values)
        devices = console.gateway.devices.list()
        return render(
            request,
            "inbound.html",
            400,
            active="inbound",
            v=values,
            devices=devices,
            error=texts.error_text(error, gettext(request)),
            error_for=texts.error_input(error),
        )
    return redirect("/inbound?saved=1")


async def device_remove(request: Request) -> Response:
    await read_form(request)
    username = request.path_params["username"]
    await console_of(request).gateway.run(console_of(request).gateway.devices.remove, username)
    return redirect("/inbound?saved=1")


async def settings_page(request: Request) -> Response:
    keys = ["network.https_proxy", "network.ca_bundle", "console.language"]
    return await _settings_form(request, "settings.html", keys, "settings")


async def password_submit(request: Request) -> Response:
    console = console_of(request)
    form = await read_form(request)
    values = await asyncio.to_thread(console.store.all_values)
    if not await asyncio.to_thread(console.password.verify, form.get("current", "")):
        _ = gettext(request)
        error = _("The current password is wrong.")
        return render(request, "settings.html", 403, active="settings", v=values, error=error)
    try:
        check_new_password(form.get("password", ""), form.get("password2", ""))
    except ConfigError as error:
        return render(
            request,
            "settings.html",
            400,
            active="settings",
            v=values,
            error=texts.error_text(error, gettext(request)),
            error_for=texts.error_input(error),
        )
    await asyncio.to_thread(console.password.set, form["password"])
    console.sessions.end_all()  # every browser signs in again with the new password
    return redirect("/login")


routes = [
    Route("/", status_page, methods=["GET"]),
    Route("/smtp", smtp_page, methods=["GET"]),
    Route("/smtp", smtp_submit, methods=["POST"]),
    Route("/signin", signin_page, methods=["GET"]),
    Route("/signin/start", signin_start, methods=["POST"]),
    Route("/signin/cancel", signin_cancel, methods=["POST"]),
    Route("/signin/qr.svg", signin_qr, methods=["GET"]),
    Route("/device", device_page, methods=["GET", "POST"]),
    Route("/sender", sender_page, methods=["GET", "POST"]),
    Route("/inbound", inbound_page, methods=["GET", "POST"]),
    Route("/inbound/devices", device_add, methods=["POST"]),
    Route("/inbound/devices/{username}/remove", device_remove, methods=["POST"]),
    Route("/settings", settings_page, methods=["GET", "POST"]),
    Route("/settings/password", password_submit, methods=["POST"]),
]
