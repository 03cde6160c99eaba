"""Queue (list, message view, actions), events and test send."""

from __future__ import annotations

import asyncio

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from mailgate import operations as ops
from mailgate.config.errors import ConfigError
from mailgate.console import texts
from mailgate.console.web import console_of, gettext, read_form, redirect, render
from mailgate.gateway.queue import State
from mailgate.gateway.queue_states import Move, can
from mailgate.texts import N_


async def queue_page(request: Request) -> Response:
    console = console_of(request)
    wanted = request.query_params.get("state", "")
    try:
        states = ops.parse_states(wanted)
    except ConfigError:
        states, wanted = None, ""
    infos = await asyncio.to_thread(console.gateway.queue.messages, states, 200)
    counts = await asyncio.to_thread(console.gateway.queue.counts)
    return render(
        request,
        "queue.html",
        active="queue",
        messages=infos,
        counts=counts,
        states=[s.value for s in State],
        wanted=wanted,
    )


async def message_page(request: Request) -> Response:
    console = console_of(request)
    message_id = int(request.path_params["message_id"])
    info = await asyncio.to_thread(console.gateway.queue.get, message_id)
    if info is None:
        raise HTTPException(404, N_("There is no such message."))
    history = await asyncio.to_thread(console.gateway.queue.history, message_id)
    # Only the actions the state table allows for this message's state.
    actions = [a for a, move in _MOVES.items() if can(move, info.state)]
    confirm = request.query_params.get("confirm") == "delete" and "delete" in actions
    return render(
        request,
        "message.html",
        active="queue",
        m=info,
        history=history,
        actions=actions,
        confirm_delete=confirm,
    )


_MOVES = {"retry": Move.RETRY, "hold": Move.HOLD, "release": Move.RELEASE, "delete": Move.DELETE}


async def message_action(request: Request) -> Response:
    console = console_of(request)
    await read_form(request)
    message_id = int(request.path_params["message_id"])
    action = request.path_params["action"]
    if action not in ops.QUEUE_ACTIONS:
        raise HTTPException(404)
    handle = console.gateway
    changed = await handle.run(ops.queue_action, handle, message_id, action, console.clock())
    if action == "delete" and changed:
        return redirect("/queue?done=delete")
    return redirect(f"/queue/{message_id}?done={action if changed else 'none'}")


async def events_page(request: Request) -> Response:
    items = await asyncio.to_thread(console_of(request).gateway.queue.events, 200)
    return render(request, "events.html", active="events", events=items)


async def test_page(request: Request) -> Response:
    return render(request, "test.html", active="test", v={})


async def test_submit(request: Request) -> Response:
    console = console_of(request)
    form = await read_form(request)
    try:
        message_id = await ops.test_send(
            console.gateway, form.get("to", ""), form.get("subject", ""), form.get("body", "")
        )
    except ConfigError as error:
        return render(
            request,
            "test.html",
            400,
            active="test",
            v=form,
            error=texts.error_text(error, gettext(request)),
            error_for=texts.error_input(error),
        )
    return redirect(f"/queue/{message_id}?done=test")


routes = [
    Route("/queue", queue_page, methods=["GET"]),
    Route("/queue/{message_id:int}", message_page, methods=["GET"]),
    Route("/queue/{message_id:int}/{action}", message_action, methods=["POST"]),
    Route("/events", events_page, methods=["GET"]),
    Route("/test", test_page, methods=["GET"]),
    Route("/test", test_submit, methods=["POST"]),
]
