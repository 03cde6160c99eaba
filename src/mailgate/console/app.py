"""The admin console: the vendor manual's web UI procedure as a Starlette app.

Theory of operation. ``create_console_app`` wires the pages (pages_*.py), the JSON API
(api.py), health and metrics around one shared :class:`~mailgate.console.state.Console`.
Two plain ASGI middlewares wrap everything: SecurityHeaders (CSP without inline script,
no caching of pages) outside SessionGate (no session: only health, login, setup, the
language switch and static files). ``start_console`` serves the app with uvicorn inside
`serve`'s event loop on its own port.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import ssl
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from mailgate import operations
from mailgate.console import api, pages_auth, pages_config, pages_queue, web
from mailgate.console.metrics import metrics_text
from mailgate.console.middleware import SecurityHeaders, SessionGate
from mailgate.console.security import SetupToken
from mailgate.console.state import Console
from mailgate.console.web import console_of

log = logging.getLogger(__name__)
STATIC = Path(__file__).parent / "static"


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    reason = await asyncio.to_thread(operations.readiness, console_of(request).gateway)
    if reason is None:
        return JSONResponse({"status": "ready"})
    return JSONResponse({"status": "not ready", "reason": reason}, 503)


async def metrics(request: Request) -> Response:
    console = console_of(request)
    body = await asyncio.to_thread(metrics_text, console.gateway.queue, console.store)
    return PlainTextResponse(body, media_type="text/plain; version=0.0.4; charset=utf-8")


def create_console_app(
    gateway: operations.GatewayHandle,
    setup_token: str,
    *,
    secure_cookies: bool = False,
    listeners: list[tuple[str, int, bool]] | None = None,
) -> Starlette:
    """The console for *gateway*; *setup_token* creates the admin password once."""
    console = Console(
        gateway, SetupToken(setup_token), secure_cookies, listeners=list(listeners or [])
    )
    routes = [
        Route("/healthz", healthz),
        Route("/readyz", readyz),
        Route("/metrics", metrics),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
        *pages_auth.routes,
        *pages_config.routes,
        *pages_queue.routes,
        *api.routes,
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(SecurityHeaders), Middleware(SessionGate, console=console)],
        exception_handlers={HTTPException: web.http_error},
    )
    app.state.console = console
    return app


def _tls(cert: Path | None, key: Path | None) -> ssl.SSLContext | None:
    if cert is None or key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


class ConsoleServer:
    """uvicorn on a socket we bind, inside the running loop, without uvicorn's signal
    handlers (serve has its own)."""

    def __init__(self, app: Starlette, host: str, port: int, tls: ssl.SSLContext | None):
        self.app, self.host, self.port, self.tls = app, host, port, tls
        self._server: uvicorn.Server | None = None
        self._socket: socket.socket | None = None
        #: The console's URL once started, and the one-time setup link while no admin
        #: password exists (set by whoever starts it).
        self.url = ""
        self.setup_url = ""

    async def start(self) -> tuple[str, int]:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(100)
        sock.setblocking(False)
        self._socket = sock
        # Browsers keep connections alive; do not let them hold up a stop.
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=3,
        )
        config.load()
        if self.tls is not None:
            config.ssl = self.tls
        server = uvicorn.Server(config)
        server.lifespan = config.lifespan_class(config)
        await server.startup(sockets=[sock])
        self._server = server
        bound = sock.getsockname()
        self.url = console_url(str(bound[0]), int(bound[1]), self.tls is not None)
        return str(bound[0]), int(bound[1])

    async def stop(self) -> None:
        if self._server is not None:
            await console_app_stop(self.app)
            await self._server.shutdown(sockets=[self._socket] if self._socket else None)
            self._server = None


async def console_app_stop(app: Starlette) -> None:
    """Stop a sign-in that is still polling, so its thread ends with the gateway."""
    console: Console = app.state.console
    await console.wizard.cancel()


def console_url(host: str, port: int, tls: bool) -> str:
    shown = f"[{host}]" if ":" in host else host
    if host in ("0.0.0.0", "::"):  # noqa: S104 - only for the printed URL
        shown = socket.getfqdn()
    return f"{'https' if tls else 'http'}://{shown}:{port}/"


def make_server(
    gateway: operations.GatewayHandle,
    setup_token: str,
    listeners: list[tuple[str, int, bool]],
    host: str | None = None,
    port: int | None = None,
) -> ConsoleServer:
    """The console server for `serve`; *host*/*port* override console.bind/console.port."""
    cfg = gateway.settings.console
    cert, key = cfg.tls_cert, cfg.tls_key
    if cfg.tls and (cert is None or key is None):
        from mailgate.certs import ensure_self_signed

        cert, key = ensure_self_signed(gateway.store.data_dir / "tls", "console")
    tls = _tls(cert, key)
    app = create_console_app(
        gateway, setup_token, secure_cookies=tls is not None, listeners=listeners
    )
    return ConsoleServer(app, host or cfg.bind, cfg.port if port is None else port, tls)
