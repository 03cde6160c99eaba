"""The simulator's control API and mailbox pages, mounted under ``/_sim/`` on the HTTPS server.

Tests and the demo use it to flip scenario switches, approve sign-ins without a browser,
and read what Exchange accepted. It is a test double's back door: it exists only in the
simulator, never in the gateway.
"""

from __future__ import annotations

import html
import time
from typing import Any, Protocol

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Route

from mailgate.sim.idp import approve_admin_consent, sign_in
from mailgate.sim.state import Scenario, SimState


class Simulator(Protocol):
    """What the control API drives: sim/server.py's Simulator (a Protocol here, so this
    module does not import the server that imports it)."""

    state: SimState

    def info(self) -> dict[str, Any]: ...
    async def set_scenario(self, **changes: Any) -> Scenario: ...
    async def reset(self) -> None: ...


_MAILBOX_FLAGS = {"smtp_auth_enabled", "account_enabled", "locked", "mfa_required"}


async def _json_body(request: Request) -> dict[str, Any]:
    if not await request.body():
        return {}
    body = await request.json()
    if not isinstance(body, dict):
        raise ValueError("the request body must be a JSON object")
    return body


def _problem(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def control_routes(sim: Simulator) -> list[BaseRoute]:
    state = sim.state

    async def index(request: Request) -> Response:
        return JSONResponse({**sim.info(), "scenario": state.scenario_json()})

    async def scenario(request: Request) -> Response:
        if request.method == "POST":
            try:
                await sim.set_scenario(**await _json_body(request))
            except (ValueError, TypeError) as exc:
                return _problem(400, str(exc))
        return JSONResponse(state.scenario_json())

    async def reset(request: Request) -> Response:
        await sim.reset()
        return JSONResponse(state.scenario_json())

    async def messages(request: Request) -> Response:
        if request.method == "DELETE":
            with state.lock:
                state.messages.clear()
            return JSONResponse([])
        with state.lock:
            listed = [m.summary() for m in state.messages]
        return JSONResponse(listed)

    async def message_raw(request: Request) -> Response:
        wanted = int(request.path_params["id"])
        with state.lock:
            found = next((m for m in state.messages if m.id == wanted), None)
        if found is None:
            return _problem(404, f"no message {wanted}; GET /_sim/messages lists them")
        return Response(found.data, media_type="message/rfc822")

    async def directory(request: Request) -> Response:
        return JSONResponse([m.to_json() for m in state.directory])

    async def mailbox_flags(request: Request) -> Response:
        mailbox = state.directory.get(request.path_params["upn"])
        if mailbox is None:
            return _problem(404, "no such mailbox; GET /_sim/directory lists them")
        changes = await _json_body(request)
        unknown = set(changes) - _MAILBOX_FLAGS
        if unknown:
            return _problem(400, f"unknown mailbox flag(s): {', '.join(sorted(unknown))}")
        with state.lock:
            for key, value in changes.items():
                setattr(mailbox, key, bool(value))
        return JSONResponse(mailbox.to_json())

    async def approve(request: Request) -> Response:
        body = await _json_body(request)
        outcome = sign_in(
            state,
            str(body.get("user_code", "")),
            str(body.get("upn", "")),
            bool(body.get("approve", True)),
        )
        return JSONResponse(
            {"ok": outcome.ok, "message": outcome.message}, status_code=200 if outcome.ok else 400
        )

    async def consent(request: Request) -> Response:
        body = await _json_body(request)
        approve_admin_consent(state, str(body.get("client_id", "")))
        return JSONResponse({"ok": True})

    async def revoke(request: Request) -> Response:
        body = await _json_body(request)
        upn = body.get("upn")
        count = state.revoke_all_tokens(str(upn) if upn else None)
        return JSONResponse({"revoked": count})

    async def expire_access(request: Request) -> Response:
        body = await _json_body(request)
        upn = body.get("upn")
        return JSONResponse({"expired": state.expire_access_tokens(str(upn) if upn else None)})

    async def counters(request: Request) -> Response:
        return JSONResponse(vars(state.counters))

    async def mailbox_page(request: Request) -> Response:
        return HTMLResponse(_render_mailbox(sim))

    return [
        Route("/_sim/", index),
        Route("/_sim/scenario", scenario, methods=["GET", "POST"]),
        Route("/_sim/reset", reset, methods=["POST"]),
        Route("/_sim/messages", messages, methods=["GET", "DELETE"]),
        Route("/_sim/messages/{id:int}", message_raw),
        Route("/_sim/directory", directory),
        Route("/_sim/directory/{upn}", mailbox_flags, methods=["POST"]),
        Route("/_sim/sign-in", approve, methods=["POST"]),
        Route("/_sim/admin-consent", consent, methods=["POST"]),
        Route("/_sim/revoke", revoke, methods=["POST"]),
        Route("/_sim/expire-access-tokens", expire_access, methods=["POST"]),
        Route("/_sim/counters", counters),
        Route("/_sim/mailbox", mailbox_page),
    ]


def _local_time(timestamp: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(timestamp))


def _render_mailbox(sim: Simulator) -> str:
    state = sim.state
    with state.lock:
        rows = [m.summary() for m in reversed(state.messages)]
    body = "".join(
        "<tr>"
        f'<td><a href="/_sim/messages/{r["id"]}">{r["id"]}</a></td>'
        f"<td>{html.escape(_local_time(r['received_at']))}</td>"
        f"<td>{html.escape(r['upn'])}</td>"
        f"<td>{html.escape(r['mail_from'])}</td>"
        f"<td>{html.escape(r['from'])}</td>"
        f"<td>{html.escape(', '.join(r['rcpt_tos']))}</td>"
        f"<td>{html.escape(r['subject'])}</td>"
        f"<td>{r['size']}</td>"
        f"<td>{'delayed' if r['delayed'] else ''}</td>"
        "</tr>"
        for r in rows
    )
    empty = "" if rows else '<tr><td colspan="9">No messages yet.</td></tr>'
    profile = html.escape(state.profile.name)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Simulated Exchange mailbox</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:.3em .6em;text-align:left}}</style></head>
<body><h1>Simulated Exchange Online ({profile}): accepted messages</h1>
<p>Every message the simulated SMTP server accepted. Raw messages open from the id.
JSON: <a href="/_sim/messages">/_sim/messages</a>.</p>
<table><thead><tr><th>id</th><th>received</th><th>sent by (UPN)</th><th>envelope from</th>
<th>From</th><th>recipients</th><th>subject</th><th>bytes</th><th></th></tr></thead>
<tbody>{body}{empty}</tbody></table></body></html>"""
