"""The SMTP listener devices talk to: aiosmtpd, adapted.

Theory of operation: aiosmtpd parses SMTP; :class:`GatewayHandler` answers with the
decisions of :mod:`mailgate.gateway.inbound` and stores each message through the queue
before it says 250 (the message is on disk by then). :class:`GatewaySMTP` refuses clients
from networks that are not allowed, and connections over the limit, before the greeting
(RFC 5321 section 3.1 allows 554 in place of 220). Internal errors never reach a client:
they are logged, and the client gets a 451 to try again later.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from mailgate.gateway import inbound
from mailgate.gateway.headers import decoded, first_value
from mailgate.gateway.inbound import InboundPolicy
from mailgate.gateway.queue_schema import Incoming

log = logging.getLogger(__name__)

#: store(envelope_from, rcpt_tos, data, client, helo, auth_user, subject) -> message id
#: Stores a received message; returns its queue id once it is on disk.
StoreFunc = Callable[[Incoming], Awaitable[int]]
#: verify(username, password) -> ok
VerifyFunc = Callable[[str, str], Awaitable[bool]]


@dataclass
class ListenerStats:
    active: int = 0
    accepted: int = 0
    refused_network: int = 0
    refused_busy: int = 0
    store_failures: int = 0


class GatewayHandler:
    def __init__(
        self,
        policy: InboundPolicy,
        store: StoreFunc,
        verify: VerifyFunc | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.store = store
        self.verify = verify
        self.stats = ListenerStats()
        self.clock = clock
        self.throttle = inbound.AuthThrottle()

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        # The null sender (<>) is legitimate: delivery reports use it (RFC 5321 4.5.5).
        # aiosmtpd hands the null sender over as "<>" and needs it non-empty to accept RCPT.
        if address != "<>" and not inbound.valid_mailbox(address):
            return inbound.BAD_SENDER
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 2.1.0 OK"

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if not inbound.valid_mailbox(address):
            return inbound.BAD_RECIPIENT
        if len(envelope.rcpt_tos) >= self.policy.max_recipients:
            return inbound.TOO_MANY_RECIPIENTS
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        peer = session.peer[0] if isinstance(session.peer, tuple) else str(session.peer)
        auth = session.auth_data
        user = auth.login.decode("utf-8", "replace") if isinstance(auth, LoginPassword) else None
        subject = decoded(first_value(data, "Subject") or "")
        try:
            message_id = await self.store(
                Incoming(
                    envelope_from=_reverse_path(envelope.mail_from),
                    rcpt_tos=tuple(envelope.rcpt_tos),
                    data=data,
                    client=peer,
                    helo=session.host_name or "",
                    auth_user=user,
                    subject=subject,
                )
            )
        except Exception:
            # Nothing half-written: the store commits in one transaction or not at all.
            self.stats.store_failures += 1
            log.exception("could not store a message from %s; the client was told to retry", peer)
            return inbound.NOT_STORED
        self.stats.accepted += 1
        # DEBUG, not INFO: one line per message cost 3.5 % of the event loop under load
        # (docs/PERFORMANCE.md); the queue and the console's counters keep the record.
        log.debug(
            "accepted message %s from %s for %d recipient(s)",
            message_id,
            peer,
            len(envelope.rcpt_tos),
        )
        return inbound.STORED.format(id=message_id)

    async def handle_exception(self, error: Exception) -> str:
        log.error("SMTP session error", exc_info=error)
        return inbound.INTERNAL_ERROR

    # -- AUTH for local device accounts (RFC 4616 PLAIN, and the de-facto LOGIN) ----------
    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 1:
            answer = await server.challenge_auth("", encode_to_b64=False)
            if not isinstance(answer, bytes):  # the client cancelled with "*"
                return AuthResult(success=False, handled=True)
            raw = answer
        else:
            try:
                raw = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                return AuthResult(
                    success=False, handled=False, message="501 5.5.2 Can't decode base64"
                )
        parts = raw.split(b"\x00")
        if len(parts) != 3:
            return AuthResult(
                success=False, handled=False, message="501 5.5.2 Malformed AUTH PLAIN response"
            )
        return await self._check(server, parts[1], parts[2])

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        if len(args) == 2:
            try:
                username = base64.b64decode(args[1], validate=True)
            except binascii.Error:
                return AuthResult(
                    success=False, handled=False, message="501 5.5.2 Can't decode base64"
                )
        else:
            answer = await server.challenge_auth(server.AuthLoginUsernameChallenge)
            if not isinstance(answer, bytes):
                return AuthResult(success=False, handled=True)
            username = answer
        password = await server.challenge_auth(server.AuthLoginPasswordChallenge)
        if not isinstance(password, bytes):
            return AuthResult(success=False, handled=True)
        return await self._check(server, username, password)

    async def _check(self, server: SMTP, username: bytes, password: bytes) -> AuthResult:
        user = username.decode("utf-8", "replace")
        peer = server.session.peer if server.session is not None else None
        client = peer[0] if isinstance(peer, tuple) else str(peer)
        if self.throttle.locked(client, self.clock()):
            log.warning("refused AUTH from %s: locked out after repeated failures", client)
            return AuthResult(success=False, handled=False, message=inbound.AUTH_LOCKED)
        if self.verify is not None and await self.verify(user, password.decode("utf-8", "replace")):
            self.throttle.succeeded(client)
            return AuthResult(success=True, auth_data=LoginPassword(username, b""))
        self.throttle.failed(client, self.clock())
        log.warning("device authentication failed for user %r from %s", user, client)
        # A fixed pause slows guessing without locking a device out (RFC 4954 section 4).
        await asyncio.sleep(1.0)
        return AuthResult(success=False, handled=False, message=inbound.AUTH_FAILED)


def _reverse_path(mail_from: str | None) -> str:
    """The envelope sender as the queue keeps it: aiosmtpd reports the null reverse-path
    (MAIL FROM:<>, RFC 5321 section 4.5.5) as "<>"; the queue and the upstream client
    know it as ""."""
    if mail_from is None or mail_from == "<>":
        return ""
    return mail_from


class GatewaySMTP(SMTP):
    """aiosmtpd's SMTP with a gate in front: allowed networks and a connection limit."""

    def __init__(self, handler: GatewayHandler, **kwargs: Any) -> None:
        super().__init__(handler, **kwargs)
        self._gate_handler = handler
        self._refused = False
        self._counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._original_transport is None and not self._counted:
            peer = transport.get_extra_info("peername")
            address = peer[0] if isinstance(peer, tuple) else ""
            stats = self._gate_handler.stats
            refusal = None
            if not self._gate_handler.policy.client_allowed(address):
                refusal, stats.refused_network = inbound.REFUSED_NETWORK, stats.refused_network + 1
                log.warning("refused a connection from %s: not in the allowed networks", address)
            elif stats.active >= self._gate_handler.policy.max_connections:
                refusal, stats.refused_busy = inbound.TOO_MANY_CONNECTIONS, stats.refused_busy + 1
            if refusal is not None:
                self._refused = True
                assert isinstance(transport, asyncio.WriteTransport)
                transport.write(refusal.encode() + b"\r\n")
                transport.close()
                return
            self._counted = True
            stats.active += 1
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        if self._refused:
            return
        if self._counted:
            self._counted = False
            self._gate_handler.stats.active -= 1
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def eof_received(self) -> bool | None:
        if self._refused:
            return None
        return super().eof_received()


@dataclass(frozen=True)
class ListenSpec:
    host: str
    port: int
    #: Implicit TLS (SMTPS, RFC 8314) on this port instead of plain + STARTTLS.
    implicit_tls: bool = False


class Listener:
    """One or more listening sockets sharing a handler."""

    def __init__(
        self,
        handler: GatewayHandler,
        specs: list[ListenSpec],
        tls_context: ssl.SSLContext | None,
        hostname: str,
    ) -> None:
        self.handler = handler
        self.specs = specs
        self.tls_context = tls_context
        self.hostname = hostname
        self.servers: list[asyncio.Server] = []
        self.bound: list[tuple[str, int, bool]] = []

    def _factory(self, implicit_tls: bool) -> Callable[[], GatewaySMTP]:
        policy = self.handler.policy

        def make() -> GatewaySMTP:
            return GatewaySMTP(
                self.handler,
                hostname=self.hostname,
                ident="mailgate ESMTP",
                data_size_limit=policy.max_message_size,
                enable_SMTPUTF8=True,
                decode_data=False,
                tls_context=None if implicit_tls else self.tls_context,
                auth_required=policy.auth_required,
                auth_require_tls=not policy.auth_allow_plaintext,
                auth_exclude_mechanism=[] if self.handler.verify else ["PLAIN", "LOGIN"],
                timeout=policy.idle_timeout,
            )

        return make

    async def start(self) -> list[tuple[str, int, bool]]:
        loop = asyncio.get_running_loop()
        for spec in self.specs:
            if spec.implicit_tls and self.tls_context is None:
                raise ValueError(
                    "implicit TLS needs a certificate: set listener.tls_cert and listener.tls_key"
                )
            server = await loop.create_server(
                self._factory(spec.implicit_tls),
                host=spec.host,
                port=spec.port,
                ssl=self.tls_context if spec.implicit_tls else None,
                reuse_address=True,
                # A burst of devices (a whole floor of scanners at 9:00) must not overflow
                # the accept queue: the default backlog is 100.
                backlog=1024,
            )
            self.servers.append(server)
            for sock in server.sockets:
                name = sock.getsockname()
                self.bound.append((str(name[0]), int(name[1]), spec.implicit_tls))
                log.info(
                    "listening for SMTP on %s:%s%s",
                    name[0],
                    name[1],
                    " (implicit TLS)" if spec.implicit_tls else "",
                )
        return self.bound

    async def stop(self) -> None:
        """Stop accepting connections; sessions in progress end on their own or time out."""
        for server in self.servers:
            server.close()
        for server in self.servers:
            await server.wait_closed()
        self.servers.clear()
