"""An aiosmtpd server that keeps what it receives: the far end of relays in the tests.

Optionally it offers STARTTLS and requires AUTH PLAIN/LOGIN with one user name and
password after it (RFC 4954 over RFC 3207), as a generic provider-`none` server does.
127.0.0.1, port 0, on its own thread so subprocess-driven tests can use it.
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from dataclasses import dataclass, field

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from tests.bounds import HANG, SOCKET


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes


@dataclass
class Sink:
    """An SMTP server on 127.0.0.1 (port 0, own thread) that keeps what Dovecot relays."""

    #: STARTTLS with this context, required before MAIL (and before AUTH).
    tls_context: ssl.SSLContext | None = None
    #: (user name, password) that AUTH must present; None: no AUTH.
    credentials: tuple[str, str] | None = None
    messages: list[Received] = field(default_factory=list)
    #: User names that authenticated, in order (failed attempts as "!name").
    logins: list[str] = field(default_factory=list)
    port: int = 0
    _loop: asyncio.AbstractEventLoop | None = None
    _thread: threading.Thread | None = None
    _server: asyncio.Server | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        with self._lock:
            self.messages.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), bytes(content))
            )
        return "250 2.0.0 Ok: queued"

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: object
    ) -> AuthResult:
        if not isinstance(data, LoginPassword) or self.credentials is None:
            return AuthResult(success=False, handled=False)
        user, password = data.login.decode(), data.password.decode()
        ok = (user, password) == self.credentials
        with self._lock:
            self.logins.append(f"{mechanism}:{user}" if ok else f"!{mechanism}:{user}")
        return AuthResult(success=ok, handled=False)

    def _protocol(self) -> SMTP:
        if self.credentials is None:
            return SMTP(self, hostname="sink.test", tls_context=self.tls_context)
        return SMTP(
            self,
            hostname="sink.test",
            tls_context=self.tls_context,
            require_starttls=self.tls_context is not None,
            authenticator=self._authenticate,
            auth_required=True,
            auth_require_tls=self.tls_context is not None,
        )

    def start(self) -> int:
        ready = threading.Event()
        loop = self._loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            self._server = loop.run_until_complete(
                loop.create_server(self._protocol, "127.0.0.1", 0)
            )
            self.port = int(self._server.sockets[0].getsockname()[1])
            ready.set()
            loop.run_forever()

        self._thread = threading.Thread(target=run, name="smtp-sink", daemon=True)
        self._thread.start()
        if not ready.wait(SOCKET):
            raise RuntimeError("the SMTP sink did not start")
        return self.port

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return

        async def shutdown() -> None:
            if self._server is not None:
                self._server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=10)

        asyncio.run_coroutine_threadsafe(shutdown(), loop).result(HANG)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(HANG)
        loop.close()

    def subjects(self) -> list[str]:
        with self._lock:
            found = []
            for message in self.messages:
                for line in message.data.split(b"\r\n"):
                    if line.lower().startswith(b"subject:"):
                        found.append(line.split(b":", 1)[1].strip().decode())
            return found
