"""`mailgate serve`: the SMTP listener and the delivery engine in one event loop.

Theory of operation: the listener stores each message through the queue (one writer
thread) and wakes the engine; the engine delivers through the provider as the signed-in
mailbox. Sign-ins happen in other processes (`mailgate login`, later the console); the
engine notices a new sign-in through the account's `signed_in_at` and resumes held mail.
On SIGTERM/SIGINT the listener stops accepting, deliveries in flight get a grace period
and whatever is left goes back to the queue; the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import signal
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mailgate.account import sender_address, token_manager
from mailgate.certs import ensure_self_signed
from mailgate.config.errors import NotConfiguredError
from mailgate.config.model import Settings
from mailgate.config.store import Store
from mailgate.db.writer import Writer
from mailgate.errors import MailgateError
from mailgate.gateway.delivery import (
    DeliveryEngine,
    DeliverySettings,
    SenderIdentity,
)
from mailgate.gateway.devices import DeviceAccounts
from mailgate.gateway.inbound import InboundPolicy
from mailgate.gateway.intake import Intake
from mailgate.gateway.listener import GatewayHandler, Listener, ListenSpec
from mailgate.gateway.pacing import Limits
from mailgate.gateway.queue import Incoming, QueueStore
from mailgate.identity.tokens import TokenManager
from mailgate.notify import Notifier, ready_status
from mailgate.submission.client import SubmissionClient
from mailgate.upstream import Upstream as UpstreamSession

if TYPE_CHECKING:
    from mailgate.console.app import ConsoleServer

log = logging.getLogger(__name__)
T = TypeVar("T")

#: How often to let the token manager keep the refresh token alive (it decides if due).
KEEPALIVE_CHECK = 3600.0
#: How often to look for settings changed by the console or `mailgate config` (one read).
SETTINGS_CHECK = 5.0


@dataclass
class ListenOverride:
    host: str | None = None
    port: int | None = None
    #: The admin console's address (None: console.bind / console.port); enabled False: off.
    console_host: str | None = None
    console_port: int | None = None
    console_enabled: bool = True


@dataclass
class Gateway:
    store: Store
    settings: Settings
    override: ListenOverride = field(default_factory=ListenOverride)
    queue: QueueStore = field(init=False)
    devices: DeviceAccounts = field(init=False)
    db: Writer = field(init=False)
    tokens: TokenManager | None = field(init=False, default=None)
    listener: Listener = field(init=False)
    engine: DeliveryEngine = field(init=False)
    intake: Intake = field(init=False)
    _generation: float | None = field(init=False, default=None)
    _tasks: list[asyncio.Task[None]] = field(init=False, default_factory=list)
    #: The settings the listener and workers were started with (changes need a restart).
    _started: Settings = field(init=False)

    def __post_init__(self) -> None:
        self.queue = QueueStore(self.store.engine)
        self.devices = DeviceAccounts(self.store.engine)
        self.db = Writer()
        self._started = self.settings
        self.tokens = self._make_tokens(self.settings)
        self.listener = self._make_listener()
        self.intake = Intake(self.queue, self.db, on_stored=lambda: self.engine.wake())
        self.engine = DeliveryEngine(
            self.queue,
            self.db,
            self._open_upstream,
            self._identity,
            self._delivery_settings(),
            owner=delivery_owner(self.store.data_dir),
        )

    # -- wiring ---------------------------------------------------------------------------
    def _make_tokens(self, settings: Settings) -> TokenManager | None:
        if not settings.configured or settings.outbound.oauth is None:
            return None
        return token_manager(self.store, settings)

    def _tls_context(self) -> ssl.SSLContext:
        cfg = self.settings.listener
        if cfg.tls_cert is not None and cfg.tls_key is not None:
            cert, key = cfg.tls_cert, cfg.tls_key
        else:
            cert, key = ensure_self_signed(self.store.data_dir / "tls", "smtp-listener")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        return context

    def _make_listener(self) -> Listener:
        cfg = self.settings.listener
        policy = InboundPolicy(
            allowed_networks=cfg.networks,
            max_message_size=cfg.max_message_size,
            max_recipients=cfg.max_recipients,
            max_connections=cfg.max_connections,
            auth_required=cfg.auth_required,
            auth_allow_plaintext=cfg.auth_plaintext,
        )
        handler = GatewayHandler(policy, self._store_message, self._verify_device)
        host = self.override.host or cfg.bind
        port = cfg.port if self.override.port is None else self.override.port
        specs = [ListenSpec(host, port)]
        if cfg.tls_port is not None:
            specs.append(ListenSpec(host, cfg.tls_port, implicit_tls=True))
        return Listener(handler, specs, self._tls_context(), socket.getfqdn())

    def _delivery_settings(self) -> DeliverySettings:
        cfg = self.settings.delivery
        return DeliverySettings(
            connections=cfg.connections,
            limits=Limits(cfg.messages_per_minute, cfg.recipients_per_day),
            max_lifetime=cfg.max_queue_lifetime,
            policy=self.settings.sender_policy,
            remote_host=self.settings.outbound.server.host,
        )

    async def _store_message(self, incoming: Incoming) -> int:
        return await self.intake.store(incoming)

    async def _verify_device(self, username: str, password: str) -> bool:
        # argon2 is deliberately slow: off the event loop, but not on the writer thread.
        return await asyncio.to_thread(self.devices.verify, username, password)

    async def _identity(self) -> SenderIdentity | None:
        if not self.settings.configured:
            return None
        account = await self.db(self.store.account)
        if self.tokens is not None and account is None:
            return None
        generation = account.signed_in_at if account is not None else 0.0
        if self.tokens is not None and generation != self._generation:
            # A new sign-in in another process replaced the account: drop our token.
            self.tokens.invalidate()
            self._generation = generation
        address = sender_address(self.settings, account)
        if address is None:
            return None
        return SenderIdentity(address, self.settings.sender_allowed, generation)

    async def _open_upstream(self) -> SubmissionClient:
        if not self.settings.configured:
            raise NotConfiguredError(  # not met: _identity() holds mail first
                "No provider is configured: choose one with `mailgate config provider` or on "
                "the console's SMTP server page."
            )
        account = await self.db(self.store.account)
        primary = account.primary_address if account is not None else None
        return await UpstreamSession(self.store, self.settings, self.tokens, primary).open()

    # -- the console's handle (mailgate.operations.GatewayHandle) ---------------------------
    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return await self.db(fn, *args)

    def wake(self) -> None:
        self.engine.wake()

    def sign_in_needed(self) -> bool:
        return self.engine.signin_needed

    def signed_in(self) -> None:
        # A new sign-in (the console's wizard): drop the old access token and let mail held
        # for the sign-in go now, instead of at the engine's next housekeeping pass.
        if self.tokens is not None:
            self.tokens.invalidate()
        self.engine.wake()

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> list[tuple[str, int, bool]]:
        await self.engine.start()
        self.intake.start()
        bound = await self.listener.start()
        self._tasks.append(asyncio.create_task(self._keep_alive(), name="token-keepalive"))
        self._tasks.append(asyncio.create_task(self._watch_settings(), name="settings-watch"))
        return bound

    async def _keep_alive(self) -> None:
        while True:
            await asyncio.sleep(KEEPALIVE_CHECK)
            try:
                if self.tokens is not None and await self.tokens.keep_alive():
                    log.info("refreshed the sign-in to keep it alive")
            except Exception as error:  # logged; the next delivery reports it as an event
                log.warning("keep-alive refresh failed: %s", error)

    async def _watch_settings(self) -> None:
        while True:
            await asyncio.sleep(SETTINGS_CHECK)
            try:
                await self.reload()
            except Exception:
                log.exception("could not apply changed settings; still using the previous ones")

    async def reload(self) -> bool:
        """Apply settings changed since start (console, `mailgate config`). Listener and
        console addresses and the number of connections apply at the next restart
        (:meth:`restart_needed`); everything else applies now. True when anything changed."""
        new = await self.db(self.store.settings, None, True)
        old = self.settings
        if new == old:
            return False
        self.settings = new
        if (new.outbound, new.trust, new.configured) != (old.outbound, old.trust, old.configured):
            previous, self.tokens = self.tokens, self._make_tokens(new)
            self._generation = None
            if previous is not None:
                await previous.aclose()
        self.engine.apply(self._delivery_settings())
        log.info("settings changed: applied")
        self.engine.wake()
        return True

    def restart_needed(self) -> bool:
        """Settings saved that only a restart of `serve` applies."""
        now, then = self.settings, self._started
        return (now.listener, now.console, now.delivery.connections) != (
            then.listener,
            then.console,
            then.delivery.connections,
        )

    async def stop(self, grace: float = 30.0) -> None:
        await self.listener.stop()
        await self.intake.stop()
        await self.engine.stop(grace)
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.tokens is not None:
            await self.tokens.aclose()
        self.db.close()


def delivery_owner(data_dir: Path) -> str:
    """The name on this gateway's delivery leases, the same in every life of the gateway:
    after a crash (kill -9, power loss) the restarted gateway takes back the messages it
    was sending at once, instead of waiting for their leases to run out (15 minutes).
    Only one `serve` may run per data directory (:func:`serving_lock`)."""
    return f"{socket.gethostname()}:{data_dir.resolve()}"


class AlreadyServing(MailgateError):
    """Another `mailgate serve` runs with this data directory."""


@contextlib.contextmanager
def serving_lock(data_dir: Path) -> Iterator[None]:
    """Hold the data directory's serve lock; the kernel drops it if the process dies."""
    fd = os.open(data_dir / "serve.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise AlreadyServing(
                f"another `mailgate serve` is already running with {data_dir}; stop it first "
                "(two gateways on one data directory would take each other's messages)."
            ) from None
        yield
    finally:
        os.close(fd)


@contextlib.contextmanager
def ready_file_written(
    path: Path | None, bound: list[tuple[str, int, bool]], console: str | None = None
) -> Iterator[None]:
    """Tell a supervisor (or a test) where serve listens while it does. Written whole through
    a rename, so a reader never sees half a file; removed when serve stops accepting."""
    if path is None:
        yield
        return
    smtp = [{"host": h, "port": p, "implicit_tls": tls} for h, p, tls in bound]
    partial = path.with_name(path.name + ".partial")
    info = {"pid": os.getpid(), "smtp": smtp, "console": console}
    partial.write_text(json.dumps(info) + "\n", encoding="utf-8")
    partial.replace(path)
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


async def serve(
    store: Store, settings: Settings, override: ListenOverride, ready_file: Path | None = None
) -> None:
    """Run until SIGTERM/SIGINT. *settings* may be incomplete (``configured`` False): mail is
    then accepted and held, and the console is where the administrator completes them."""
    gateway = Gateway(store, settings, override)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    bound = await gateway.start()
    for host, port, implicit in bound:
        kind = "implicit TLS" if implicit else "STARTTLS offered"
        log.warning("mailgate: listening for SMTP on %s:%s (%s)", host, port, kind)
    outbound = settings.outbound
    if settings.configured:
        log.warning("mailgate: delivering through %s (%s)", outbound.server, outbound.provider)
    else:
        log.warning(
            "mailgate: no provider is configured yet; mail is accepted and held. %s",
            settings.missing,
        )
    console = await start_console(gateway, override, bound) if override.console_enabled else None
    notifier = Notifier.from_environ()  # systemd Type=notify; nothing without $NOTIFY_SOCKET
    watchdog = asyncio.create_task(notifier.keep_watchdog(), name="sd-watchdog")
    with ready_file_written(ready_file, bound, console.url if console is not None else None):
        notifier.ready(ready_status(bound, settings.configured))
        await stop.wait()
    notifier.stopping()
    watchdog.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watchdog
    log.warning("mailgate: stopping; messages in flight get 30 s, the rest stay queued")
    if console is not None:
        await console.stop()
    await gateway.stop()


async def start_console(
    gateway: Gateway, override: ListenOverride, bound: list[tuple[str, int, bool]]
) -> ConsoleServer:
    """The admin console on its own port; until an admin password exists, print the
    one-time setup token (only whoever reads this output can create the password)."""
    import secrets

    from mailgate.console.app import console_url, make_server
    from mailgate.console.security import AdminPassword

    first_run = not AdminPassword(gateway.store).exists()
    token = secrets.token_urlsafe(18) if first_run else ""
    server = make_server(gateway, token, bound, override.console_host, override.console_port)
    host, port = await server.start()
    url = console_url(host, port, server.tls is not None)
    log.warning("mailgate: admin console at %s", url)
    if first_run:
        server.setup_url = f"{url}setup?token={token}"
        log.warning("mailgate: create the admin password at %s", server.setup_url)
    return server
