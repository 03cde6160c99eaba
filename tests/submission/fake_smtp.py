"""A small scripted SMTP server for client edge cases the simulator does not cover.

Configurable where other servers differ from Exchange: line limits, AUTH PLAIN/LOGIN,
implicit TLS, canned replies per command. It records every line it reads so tests can
check what the client sent. 127.0.0.1, port 0.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ssl
from dataclasses import dataclass, field


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    #: The DATA payload as sent, dot-stuffed, without the final ".\r\n".
    raw: bytes


@dataclass
class FakeSmtp:
    ehlo_keywords: list[str] = field(
        default_factory=lambda: ["SIZE 1000000", "8BITMIME", "SMTPUTF8", "AUTH PLAIN LOGIN"]
    )
    #: Keywords after STARTTLS; None: the same as before.
    ehlo_keywords_tls: list[str] | None = None
    starttls_context: ssl.SSLContext | None = None
    implicit_tls: ssl.SSLContext | None = None
    #: Refuse lines longer than this (CRLF included) with 500 5.5.2, like Dovecot.
    max_line: int | None = None
    tokens: dict[str, str] = field(default_factory=dict)  # token -> user
    passwords: dict[str, str] = field(default_factory=dict)
    error_challenge: str | None = None
    #: Canned replies by verb ("MAIL", "RCPT", "DATA", "END", "RSET"), first match used once each.
    script: dict[str, list[str]] = field(default_factory=dict)
    banner: str = "220 fake.example ESMTP ready"
    #: Extra bytes sent right after "220 Ready to start TLS" (STARTTLS injection test).
    after_starttls: bytes = b""
    silent: bool = False
    #: False: an old server that only knows HELO (EHLO gets 502).
    esmtp: bool = True

    lines: list[str] = field(default_factory=list)
    messages: list[Received] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> FakeSmtp:
        self._server = await asyncio.start_server(
            self._serve, "127.0.0.1", 0, ssl=self.implicit_tls, limit=1 << 20
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
        # Python 3.11's wait_closed() does not wait for handlers; end them here so no
        # transport is left for the garbage collector (ResourceWarning is an error).
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.wait(list(self._tasks))

    def _canned(self, verb: str) -> str | None:
        queue = self.script.get(verb)
        return queue.pop(0) if queue else None

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        session = _Session(self, reader, writer)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
                await session.run()
        finally:
            writer.transport.abort()
            self._tasks.discard(task)


class _Session:
    def __init__(self, fake: FakeSmtp, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.fake, self.reader, self.writer = fake, reader, writer
        self.tls = fake.implicit_tls is not None
        self.mail_from: str | None = None
        self.rcpts: list[str] = []

    async def send(self, *lines: str) -> None:
        self.writer.write("".join(f"{line}\r\n" for line in lines).encode())
        await self.writer.drain()

    async def read_line(self, command: bool = True) -> str | None:
        """A line; *command* lines are subject to ``max_line``, SASL responses are not
        (RFC 4954 section 4: that is why the two-step form exists)."""
        raw = await self.reader.readline()
        if not raw:
            return None
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        self.fake.lines.append(line)
        if command and self.fake.max_line is not None and len(raw) > self.fake.max_line:
            await self.send("500 5.5.2 Line too long")
            return ""
        return line

    async def run(self) -> None:
        if self.fake.silent:
            await asyncio.sleep(30)
            return
        await self.send(self.fake.banner)
        while (line := await self.read_line()) is not None:
            if line == "":  # too long, already answered
                continue
            verb, _, arg = line.partition(" ")
            handler = getattr(self, f"do_{verb.upper()}", None)
            if handler is None:
                await self.send("502 5.5.1 Unrecognized command")
            elif await handler(arg) == "quit":
                return

    async def do_HELO(self, arg: str) -> None:
        await self.send("250 fake.example")

    async def do_EHLO(self, arg: str) -> None:
        if not self.fake.esmtp:
            await self.send("502 5.5.1 Unrecognized command")
            return
        keywords = self.fake.ehlo_keywords
        if self.tls and self.fake.ehlo_keywords_tls is not None:
            keywords = self.fake.ehlo_keywords_tls
        if self.fake.starttls_context and not self.tls:
            keywords = [*keywords, "STARTTLS"]
        lines = [f"fake.example Hello {arg}", *keywords]
        await self.send(*(f"250-{x}" for x in lines[:-1]), f"250 {lines[-1]}")

    async def do_STARTTLS(self, arg: str) -> None:
        assert self.fake.starttls_context is not None
        self.writer.write(b"220 2.0.0 Ready to start TLS\r\n" + self.fake.after_starttls)
        await self.writer.drain()
        if self.fake.after_starttls:
            return
        await self.writer.start_tls(self.fake.starttls_context)
        self.tls = True

    async def do_AUTH(self, arg: str) -> None:
        mechanism, _, initial = arg.partition(" ")
        if mechanism.upper() == "LOGIN":
            await self._login()
            return
        if not initial:
            await self.send("334 ")
            initial = await self.read_line(command=False) or ""
        decoded = base64.b64decode(initial).decode()
        ok = False
        if mechanism.upper() == "PLAIN":
            _, user, password = decoded.split("\0")
            ok = self.fake.passwords.get(user) == password
        elif mechanism.upper() in {"XOAUTH2", "OAUTHBEARER"}:
            gs2, _, rest = decoded.partition("\x01")
            if mechanism.upper() == "XOAUTH2":
                rest = decoded
            fields = dict(p.split("=", 1) for p in rest.split("\x01") if p)
            user = fields.get("user") or gs2.partition(",a=")[2].rstrip(",")
            token = fields.get("auth", "").removeprefix("Bearer ")
            ok = self.fake.tokens.get(token) == user
            if not ok and self.fake.error_challenge is not None:
                await self.send(f"334 {self.fake.error_challenge}")
                await self.read_line()
        await self._auth_result(ok)

    async def _login(self) -> None:
        await self.send("334 VXNlcm5hbWU6")
        user = base64.b64decode(await self.read_line() or "").decode()
        await self.send("334 UGFzc3dvcmQ6")
        password = base64.b64decode(await self.read_line() or "").decode()
        await self._auth_result(self.fake.passwords.get(user) == password)

    async def _auth_result(self, ok: bool) -> None:
        if ok:
            await self.send("235 2.7.0 Authentication successful")
        else:
            await self.send("535 5.7.3 Authentication unsuccessful [fake 2026-06-01T12:00:00Z]")

    async def do_MAIL(self, arg: str) -> None:
        canned = self.fake._canned("MAIL")
        if canned:
            await self.send(canned)
            return
        self.mail_from = arg.split("<", 1)[1].split(">", 1)[0]
        await self.send("250 2.1.0 Sender OK")

    async def do_RCPT(self, arg: str) -> None:
        canned = self.fake._canned("RCPT")
        if canned:
            await self.send(canned)
            return
        self.rcpts.append(arg.split("<", 1)[1].split(">", 1)[0])
        await self.send("250 2.1.5 Recipient OK")

    async def do_DATA(self, arg: str) -> None:
        canned = self.fake._canned("DATA")
        if canned:
            await self.send(canned)
            return
        await self.send("354 Start mail input; end with <CRLF>.<CRLF>")
        raw = bytearray()
        while (chunk := await self.reader.readuntil(b"\r\n")) != b".\r\n":
            raw += chunk
        self.fake.messages.append(Received(self.mail_from or "", list(self.rcpts), bytes(raw)))
        self.mail_from, self.rcpts = None, []
        end = self.fake._canned("END")
        await self.send(end or "250 2.0.0 OK <abc@fake.example> [Hostname=FAKE01.PROD]")

    async def do_RSET(self, arg: str) -> None:
        self.mail_from, self.rcpts = None, []
        canned = self.fake._canned("RSET")
        if canned:
            await self.send(canned)
            return
        await self.send("250 2.0.0 Resetting")

    async def do_NOOP(self, arg: str) -> None:
        await self.send("250 2.0.0 OK")

    async def do_QUIT(self, arg: str) -> str:
        await self.send("221 2.0.0 Bye")
        return "quit"
