"""Bytes to and from the upstream SMTP server over asyncio streams; no SMTP decisions.

Why not aiosmtplib (5.x): its DATA writes the whole message in one call with no progress,
flow control is only reachable through private members, and its reader drops bytes that
arrive while no command waits, so an early reply during DATA is lost. Streams give a
public ``drain()`` per chunk, and parsing replies into our own buffer (``ReplyReader``)
lets us see plaintext that arrived after "220" before a STARTTLS upgrade.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl

from mailgate.submission.replies import Reply, ReplyReader

_READ_SIZE = 64 * 1024


class ConnectionClosed(ConnectionError):
    """The server closed the connection where a reply was expected."""


class StartTlsInjection(ConnectionError):
    """Bytes followed the 220 reply to STARTTLS before the TLS handshake (RFC 3207 section 4.2)."""


class SmtpWire:
    """One TCP (or TLS) connection to an SMTP server, read in whole replies."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._replies = ReplyReader()
        self._closed = False

    @classmethod
    async def open(
        cls, host: str, port: int, context: ssl.SSLContext | None, within: float
    ) -> SmtpWire:
        """Connect (with TLS from the first byte when *context* is given: implicit TLS)."""
        async with asyncio.timeout(within):
            reader, writer = await asyncio.open_connection(
                host,
                port,
                ssl=context,
                server_hostname=host if context is not None else None,
                ssl_handshake_timeout=within if context is not None else None,
            )
        return cls(reader, writer)

    @property
    def closed(self) -> bool:
        return self._closed or self._writer.is_closing()

    @property
    def encrypted(self) -> bool:
        return self._writer.get_extra_info("sslcontext") is not None

    def local_address_literal(self) -> str:
        """Our address as an EHLO address literal, "[192.0.2.1]" / "[IPv6:...]" (RFC 5321 4.1.3)."""
        sockname = self._writer.get_extra_info("sockname")
        host = str(sockname[0]) if sockname else "127.0.0.1"
        return f"[IPv6:{host}]" if ":" in host else f"[{host}]"

    async def read_reply(self, within: float) -> Reply:
        async with asyncio.timeout(within):
            while True:
                reply = self._replies.next_reply()
                if reply is not None:
                    return reply
                data = await self._reader.read(_READ_SIZE)
                if not data:
                    self._closed = True
                    raise ConnectionClosed("the server closed the connection")
                self._replies.feed(data)

    async def write(self, data: bytes | memoryview, within: float) -> None:
        """Write and wait until the transport's buffer drains (flow control)."""
        if self.closed:
            raise ConnectionClosed("the connection is closed")
        async with asyncio.timeout(within):
            self._writer.write(data)
            await self._writer.drain()

    async def command(self, line: str, within: float) -> Reply:
        """Send one command line (CRLF added) and read its reply.

        Lines are UTF-8 (only meaningful after SMTPUTF8, RFC 6531); CR or LF inside a line
        would start a second command, so they are refused.
        """
        if "\r" in line or "\n" in line:
            raise ValueError("an SMTP command line cannot contain CR or LF")
        await self.write(line.encode("utf-8") + b"\r\n", within)
        return await self.read_reply(within)

    async def write_commands(self, lines: list[str], within: float) -> None:
        """Several command lines in one write, for a PIPELINING group (RFC 2920); the
        caller reads one reply per line."""
        if any("\r" in line or "\n" in line for line in lines):
            raise ValueError("an SMTP command line cannot contain CR or LF")
        await self.write("".join(f"{line}\r\n" for line in lines).encode("utf-8"), within)

    async def starttls(self, context: ssl.SSLContext, server_hostname: str, within: float) -> None:
        if self._replies.buffered:
            raise StartTlsInjection("the server sent data after agreeing to STARTTLS")
        await self._writer.start_tls(
            context, server_hostname=server_hostname, ssl_handshake_timeout=within
        )

    async def close(self) -> None:
        self._closed = True
        if not self._writer.is_closing():
            self._writer.close()
        # A TLS close_notify or a reset peer must not turn a close into an error.
        with contextlib.suppress(OSError, ssl.SSLError, TimeoutError):
            async with asyncio.timeout(5):
                await self._writer.wait_closed()
