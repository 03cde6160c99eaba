"""The JSON API: the console's operations for scripts, described at /api/openapi.json.

Authentication is the console session (cookie); state-changing calls also need the
session's CSRF token in ``X-CSRF-Token`` (checked by middleware.SessionGate), which
``GET /api/session`` returns.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from mailgate import operations as ops
from mailgate.config.errors import ConfigError
from mailgate.console.security import check_new_password
from mailgate.console.web import console_of, session_of

Handler = Callable[[Request], Awaitable[Response]]


def _problem(error: ConfigError, status: int = 400) -> JSONResponse:
    return JSONResponse({"error": str(error)}, status)


async def _body(request: Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except ValueError:
        data = None
    return data if isinstance(data, dict) else {}


async def session_info(request: Request) -> Response:
    session = session_of(request)
    assert session is not None  # the gate let us in
    return JSONResponse({"csrf_token": session.csrf})


async def status(request: Request) -> Response:
    return JSONResponse(await asyncio.to_thread(console_of(request).status))


async def smtp_get(request: Request) -> Response:
    return JSONResponse(await asyncio.to_thread(ops.smtp_values, console_of(request).gateway))


async def smtp_put(request: Request) -> Response:
    body = {k: str(v) for k, v in (await _body(request)).items() if v is not None}
    try:
        signs_in = await console_of(request).gateway.run(
            ops.save_smtp, console_of(request).gateway, body
        )
    except ConfigError as error:
        return _problem(error)
    return JSONResponse({"saved": True, "sign_in_next": signs_in})


async def settings_get(request: Request) -> Response:
    return JSONResponse(await asyncio.to_thread(console_of(request).store.all_values))


async def settings_patch(request: Request) -> Response:
    try:
        changed = await console_of(request).gateway.run(
            ops.set_values, console_of(request).gateway, await _body(request)
        )
    except ConfigError as error:
        return _problem(error)
    return JSONResponse({"changed": changed})


async def signin_get(request: Request) -> Response:
    console = console_of(request)
    return JSONResponse(console.wizard.state.to_json(console.clock()))


async def signin_start(request: Request) -> Response:
    console = console_of(request)
    settings = await asyncio.to_thread(ops.current_settings, console.gateway)
    if settings is None or settings.outbound.oauth is None:
        return JSONResponse({"error": "choose an OAuth provider and save it first"}, 409)
    await console.wizard.start(settings)
    return JSONResponse(console.wizard.state.to_json(console.clock()), 202)


async def signin_cancel(request: Request) -> Response:
    await console_of(request).wizard.cancel()
    return JSONResponse({"cancelled": True})


async def queue_list(request: Request) -> Response:
    console = console_of(request)
    try:
        states = ops.parse_states(request.query_params.get("state"))
    except ConfigError as error:
        return _problem(error)
    infos = await asyncio.to_thread(console.gateway.queue.messages, states, 500)
    return JSONResponse([i.to_json() for i in infos])


async def queue_get(request: Request) -> Response:
    queue = console_of(request).gateway.queue
    message_id = int(request.path_params["message_id"])
    info = await asyncio.to_thread(queue.get, message_id)
    if info is None:
        return JSONResponse({"error": "no such message"}, 404)
    history = await asyncio.to_thread(queue.history, message_id)
    return JSONResponse({**info.to_json(), "history": [{"at": a, "text": t} for a, t in history]})


async def queue_action(request: Request) -> Response:
    message_id = int(request.path_params["message_id"])
    action = request.path_params.get("action", "delete")
    try:
        console = console_of(request)
        handle = console.gateway
        changed = bool(
            await handle.run(ops.queue_action, handle, message_id, action, console.clock())
        )
    except ConfigError as error:
        return _problem(error, 404)
    return JSONResponse({"changed": changed}, 200 if changed else 409)


async def events(request: Request) -> Response:
    items = await asyncio.to_thread(console_of(request).gateway.queue.events, 200)
    return JSONResponse([dataclasses.asdict(e) for e in items])


async def devices_get(request: Request) -> Response:
    accounts = await asyncio.to_thread(console_of(request).gateway.devices.list)
    return JSONResponse([dataclasses.asdict(a) for a in accounts])


async def devices_post(request: Request) -> Response:
    body = await _body(request)
    try:
        await asyncio.to_thread(
            ops.add_device,
            console_of(request).gateway,
            str(body.get("username", "")),
            str(body.get("password", "")),
            str(body.get("note", "")),
            console_of(request).clock(),
        )
    except ConfigError as error:
        return _problem(error)
    return JSONResponse({"added": body.get("username")}, 201)


async def devices_delete(request: Request) -> Response:
    devices = console_of(request).gateway.devices
    removed = await console_of(request).gateway.run(devices.remove, request.path_params["username"])
    return JSONResponse({"removed": removed}, 200 if removed else 404)


async def test_send(request: Request) -> Response:
    body = await _body(request)
    try:
        message_id = await ops.test_send(
            console_of(request).gateway,
            str(body.get("to", "")),
            str(body.get("subject", "mailgate test")),
            str(body.get("body", "")),
        )
    except ConfigError as error:
        return _problem(error)
    return JSONResponse({"queued": message_id}, 202)


async def password_post(request: Request) -> Response:
    console, body = console_of(request), await _body(request)
    if not await asyncio.to_thread(console.password.verify, str(body.get("current", ""))):
        return JSONResponse({"error": "the current password is wrong"}, 403)
    new = str(body.get("password", ""))
    try:
        check_new_password(new, new)
    except ConfigError as error:
        return _problem(error)
    await asyncio.to_thread(console.password.set, new)
    console.sessions.end_all()
    return JSONResponse({"changed": True})


#: (method, path, handler, summary): the routes and their OpenAPI description in one table.
ENDPOINTS: list[tuple[str, str, Handler, str]] = [
    ("GET", "/api/session", session_info, "The CSRF token to send in X-CSRF-Token."),
    ("GET", "/api/status", status, "Account, token health, queue counts, listeners, events."),
    ("GET", "/api/smtp", smtp_get, "The SMTP server settings (password only as (set))."),
    ("PUT", "/api/smtp", smtp_put, "Save provider and fields; validated like mailgate config."),
    ("GET", "/api/settings", settings_get, "Every setting; secrets as (set)/(not set)."),
    ("PATCH", "/api/settings", settings_patch, "Set settings (not provider/oauth/smtp)."),
    ("GET", "/api/signin", signin_get, "The sign-in wizard's state (polled by the page)."),
    ("POST", "/api/signin", signin_start, "Start a device code sign-in."),
    ("DELETE", "/api/signin", signin_cancel, "Cancel the running sign-in."),
    ("GET", "/api/queue", queue_list, "Messages, newest first; ?state=held,deferred filters."),
    ("GET", "/api/queue/{message_id:int}", queue_get, "One message with its history."),
    ("DELETE", "/api/queue/{message_id:int}", queue_action, "Delete a message for good."),
    ("POST", "/api/queue/{message_id:int}/{action}", queue_action, "retry, hold or release."),
    ("GET", "/api/events", events, "The last gateway events."),
    ("GET", "/api/devices", devices_get, "Device accounts (never passwords)."),
    ("POST", "/api/devices", devices_post, "Add a device account."),
    ("DELETE", "/api/devices/{username}", devices_delete, "Remove a device account."),
    ("POST", "/api/test-send", test_send, "Queue a test message from the sender address."),
    ("POST", "/api/password", password_post, "Change the admin password."),
]


def openapi_schema() -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path, _handler, summary in ENDPOINTS:
        clean = path.replace(":int}", "}")
        operation: dict[str, Any] = {
            "summary": summary,
            "responses": {"200": {"description": "OK"}},
        }
        if method != "GET":
            operation["parameters"] = [
                {
                    "name": "X-CSRF-Token",
                    "in": "header",
                    "required": True,
                    "schema": {"type": "string"},
                }
            ]
        paths.setdefault(clean, {})[method.lower()] = operation
    return {
        "openapi": "3.0.3",
        "info": {"title": "mailgate console API", "version": "1"},
        "components": {
            "securitySchemes": {
                "session": {"type": "apiKey", "in": "cookie", "name": "mailgate_session"}
            }
        },
        "security": [{"session": []}],
        "paths": paths,
    }


async def openapi(request: Request) -> Response:
    return JSONResponse(openapi_schema())


routes = [Route(path, handler, methods=[method]) for method, path, handler, _ in ENDPOINTS]
routes.append(Route("/api/openapi.json", openapi, methods=["GET"]))
