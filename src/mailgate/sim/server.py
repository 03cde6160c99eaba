"""One simulated Microsoft cloud: identity platform (HTTPS) and Exchange SMTP, on one event loop.

:class:`Simulator` is the asyncio object `mailgate sim` runs; :class:`SimulatorThread` runs
the same thing on a background thread for synchronous callers (MSAL, smtplib, tests).
Both bind 127.0.0.1 by default and take port 0 to get free ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import uvicorn

from mailgate.sim.ca import CertificateFiles, create_certificates
from mailgate.sim.control import control_routes
from mailgate.sim.idp import approve_admin_consent, create_idp_app, sign_in
from mailgate.sim.profiles import get_profile
from mailgate.sim.smtp import ExchangeSmtpServer
from mailgate.sim.state import Scenario, SimState
from mailgate.transports import abort

log = logging.getLogger(__name__)
T = TypeVar("T")


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.setblocking(False)
    return sock


async def _abort_leftover_transports() -> None:
    """Close what this loop still owns after the servers stopped: connections uvicorn no
    longer tracks (a TLS handshake or shutdown cut short by a client that went away). Left
    alone they would outlive the loop and be reported as unclosed. The simulator is a test
    double; a production server would not need this sweep."""
    loop = asyncio.get_running_loop()
    for obj in gc.get_objects():
        mine = isinstance(obj, asyncio.BaseTransport) and getattr(obj, "_loop", None) is loop
        if mine and not obj.is_closing() and hasattr(obj, "abort"):
            abort(obj)
    await asyncio.sleep(0)


class Simulator:
    """The simulated cloud. ``await start()``, use, ``await stop()``."""

    def __init__(
        self,
        profile: str = "global",
        host: str = "127.0.0.1",
        idp_port: int = 0,
        smtp_port: int = 0,
        workdir: Path | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self._idp_port_wanted = idp_port
        self._smtp_port_wanted = smtp_port
        self.state = SimState.create(get_profile(profile), clock=clock)
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        if workdir is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="mailgate-sim-")
            workdir = Path(self._tmp.name)
        self.workdir = workdir
        self.certs: CertificateFiles = create_certificates(workdir)
        self.idp_port = 0
        self.smtp: ExchangeSmtpServer | None = None
        self._uvicorn: uvicorn.Server | None = None
        self._uvicorn_task: asyncio.Task[None] | None = None

    # -- addresses ------------------------------------------------------------------------
    @property
    def url_host(self) -> str:
        return f"[{self.host}]" if ":" in self.host else self.host

    @property
    def idp_url(self) -> str:
        """Base URL of the identity platform, e.g. https://127.0.0.1:40123."""
        return f"https://{self.url_host}:{self.idp_port}"

    @property
    def idp_hostport(self) -> str:
        """The "sign-in host" setting a client uses for this simulator (host:port)."""
        return f"{self.url_host}:{self.idp_port}"

    @property
    def smtp_port(self) -> int:
        assert self.smtp is not None
        return self.smtp.port

    @property
    def ca_path(self) -> Path:
        return self.certs.ca_cert

    @property
    def authority(self) -> str:
        return f"{self.idp_url}/{self.state.profile.default_tenant}"

    @property
    def devicelogin_url(self) -> str:
        return self.idp_url + self.state.profile.devicelogin_path

    def info(self) -> dict[str, Any]:
        """What `mailgate sim --json` prints: everything a client needs to use the simulator."""
        profile = self.state.profile
        return {
            "profile": profile.name,
            "identity_platform": self.idp_url,
            "sign_in_host": self.idp_hostport,
            "tenant": profile.default_tenant,
            "authority": self.authority,
            "devicelogin": self.devicelogin_url,
            "smtp_host": self.host,
            "smtp_port": self.smtp_port,
            "smtp_server": f"{self.url_host}:{self.smtp_port}",
            "scope": f"{profile.smtp_scope} offline_access openid email",
            "ca_file": str(self.ca_path),
            "mailbox_page": f"{self.idp_url}/_sim/mailbox",
            "control_api": f"{self.idp_url}/_sim/",
            "accounts": [
                {"upn": m.upn, "primary_address": m.primary_address} for m in self.state.directory
            ],
        }

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> None:
        self.smtp = ExchangeSmtpServer(self.state, self.certs.server_context(), host=self.host)
        await self.smtp.start(self._smtp_port_wanted)

        sock = _bind(self.host, self._idp_port_wanted)
        self.idp_port = sock.getsockname()[1]
        app = create_idp_app(self.state, lambda: self.idp_url, extra_routes=control_routes(self))
        config = uvicorn.Config(
            app,
            ssl_certfile=str(self.certs.server_cert),
            ssl_keyfile=str(self.certs.server_key),
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="h11",
            ws="none",
            # Clients (MSAL's requests sessions) keep connections open; do not let them
            # hold up a stop.
            timeout_keep_alive=2,
            timeout_graceful_shutdown=2,
        )
        self._uvicorn = uvicorn.Server(config)
        self._uvicorn_task = asyncio.create_task(self._uvicorn.serve(sockets=[sock]))
        while not self._uvicorn.started:
            if self._uvicorn_task.done():
                await self._uvicorn_task  # re-raise why it could not start
                raise RuntimeError("identity platform stopped during start-up")
            await asyncio.sleep(0.01)
        log.info(
            "simulator up: identity platform %s, SMTP %s:%s",
            self.idp_url,
            self.host,
            self.smtp_port,
        )

    async def stop(self) -> None:
        if self._uvicorn is not None and self._uvicorn_task is not None:
            self._uvicorn.should_exit = True
            await self._drop_idle_connections()
            try:
                await asyncio.wait_for(asyncio.shield(self._uvicorn_task), 5)
            except TimeoutError:
                self._uvicorn.force_exit = True
                self._uvicorn_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._uvicorn_task
        if self.smtp is not None:
            await self.smtp.stop()
        await _abort_leftover_transports()
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None

    async def _drop_idle_connections(self, grace: float = 0.3) -> None:
        """Keep-alive connections of clients that never close (requests sessions) would
        hold the TLS shutdown open long after the simulator stops; cut them after *grace*."""
        assert self._uvicorn is not None
        connections = self._uvicorn.server_state.connections
        deadline = asyncio.get_running_loop().time() + grace
        # uvicorn offers no event for "connections drained"; poll briefly.
        while connections and asyncio.get_running_loop().time() < deadline:  # noqa: ASYNC110
            await asyncio.sleep(0.05)
        for connection in list(connections):
            transport = getattr(connection, "transport", None)
            if transport is not None:
                abort(transport)

    async def serve_forever(self) -> None:
        assert self._uvicorn_task is not None
        await self._uvicorn_task

    # -- scenario -------------------------------------------------------------------------
    async def set_scenario(self, **changes: Any) -> Scenario:
        scenario = self.state.set_scenario(**changes)
        if "smtp_down" in changes and self.smtp is not None:
            await self.smtp.set_down(bool(changes["smtp_down"]))
        return scenario

    async def reset(self) -> None:
        """Back to a healthy tenant: switches off, tokens and messages kept."""
        was_down = self.state.scenario.smtp_down
        self.state.reset_scenario()
        if was_down and self.smtp is not None:
            await self.smtp.set_down(False)


class SimulatorThread:
    """Runs a :class:`Simulator` on its own event loop in a background thread.

    For synchronous callers: ``with SimulatorThread(profile="21vianet") as sim: ...``.
    Scenario changes go through the simulator's loop so they never race its servers.
    """

    def __init__(self, **kwargs: Any) -> None:
        self._kwargs = kwargs
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="mailgate-sim", daemon=True
        )
        self.sim: Simulator | None = None

    def __enter__(self) -> SimulatorThread:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> Simulator:
        self._thread.start()
        self.sim = self.call(self._create())
        return self.sim

    async def _create(self) -> Simulator:
        sim = Simulator(**self._kwargs)
        await sim.start()
        return sim

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 30) -> T:
        future: Future[T] = asyncio.run_coroutine_threadsafe(coro, self._loop)
        return future.result(timeout)

    # Read-only views of the running simulator, so sync callers need not reach into .sim.
    @property
    def running(self) -> Simulator:
        if self.sim is None:
            raise RuntimeError("the simulator is not running")
        return self.sim

    @property
    def state(self) -> SimState:
        return self.running.state

    @property
    def idp_url(self) -> str:
        return self.running.idp_url

    @property
    def idp_hostport(self) -> str:
        return self.running.idp_hostport

    @property
    def authority(self) -> str:
        return self.running.authority

    @property
    def devicelogin_url(self) -> str:
        return self.running.devicelogin_url

    @property
    def smtp_port(self) -> int:
        return self.running.smtp_port

    @property
    def ca_path(self) -> Path:
        return self.running.ca_path

    def info(self) -> dict[str, Any]:
        return self.running.info()

    def reset(self) -> None:
        self.call(self.running.reset())

    def set_scenario(self, **changes: Any) -> Scenario:
        assert self.sim is not None
        return self.call(self.sim.set_scenario(**changes))

    def sign_in(self, user_code: str, upn: str, approve: bool = True) -> Any:
        assert self.sim is not None
        return sign_in(self.sim.state, user_code, upn, approve)

    def approve_admin_consent(self, client_id: str) -> None:
        assert self.sim is not None
        approve_admin_consent(self.sim.state, client_id)

    def stop(self) -> None:
        if self.sim is not None:
            self.call(self.sim.stop())
            self.sim = None
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
