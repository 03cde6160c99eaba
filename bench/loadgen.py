"""Load generators: a plain asyncio SMTP client, a burst of connections, and Postfix's
smtp-source.

Every message is its own SMTP session (connect, EHLO, MAIL, RCPT, DATA, QUIT), as a
scanner or an ERP job sends it. *Time to the 250* is measured from the connect to the
reply after the final "." -- what the device waits for. Nothing here pipelines or
reuses sessions, so every system under test gets exactly the same conversation.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import shutil
import subprocess
import time
from collections import Counter
from dataclasses import dataclass, field

SENDER = "scanner@printer.bench"
RECIPIENT = "someone@example.com"


def make_message(size: int, serial: int = 0, sender: str = SENDER) -> bytes:
    """An RFC 5322 message of about *size* bytes, CRLF line ends, no line starting with '.'."""
    head = (
        f"From: Scanner <{sender}>\r\nTo: <{RECIPIENT}>\r\n"
        f"Subject: bench message {serial} of {size} bytes\r\n"
        f"Message-ID: <bench-{serial}-{size}@printer.bench>\r\n"
        "Date: Mon, 1 Jun 2026 12:00:00 +0000\r\nMIME-Version: 1.0\r\n"
        "Content-Type: text/plain; charset=us-ascii\r\n\r\n"
    ).encode()
    line = b"X" + base64.b64encode(os.urandom(57)) + b"\r\n"  # 79 bytes, never a dot
    count = max(1, (size - len(head)) // len(line))
    return head + line * count


class SmtpError(Exception):
    """A reply the client did not expect; the text is the reply line."""


async def _reply(reader: asyncio.StreamReader) -> str:
    """Read one (possibly multi-line) reply; return its last line."""
    while True:
        line = await reader.readline()
        if not line:
            raise SmtpError("connection closed")
        text = line.decode("ascii", "replace").rstrip("\r\n")
        if len(text) < 4 or text[3] != "-":
            return text


async def _expect(reader: asyncio.StreamReader, prefix: str) -> str:
    text = await _reply(reader)
    if not text.startswith(prefix):
        raise SmtpError(text[:80])
    return text


async def _command(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: str, prefix: str
) -> str:
    writer.write(line.encode() + b"\r\n")
    await writer.drain()
    return await _expect(reader, prefix)


async def send_one(
    host: str,
    port: int,
    message: bytes,
    auth: tuple[str, str] | None = None,
    sender: str = SENDER,
) -> float:
    """One SMTP session with one message; returns the seconds from connect to the 250."""
    started = time.perf_counter()
    reader, writer = await asyncio.open_connection(host, port, limit=1 << 16)
    try:
        await _expect(reader, "220")
        await _command(reader, writer, "EHLO bench.client", "250")
        if auth is not None:
            token = base64.b64encode(f"\0{auth[0]}\0{auth[1]}".encode()).decode()
            await _command(reader, writer, f"AUTH PLAIN {token}", "235")
        await _command(reader, writer, f"MAIL FROM:<{sender}>", "250")
        await _command(reader, writer, f"RCPT TO:<{RECIPIENT}>", "250")
        await _command(reader, writer, "DATA", "354")
        writer.write(message)
        writer.write(b"\r\n.\r\n" if not message.endswith(b"\r\n") else b".\r\n")
        await writer.drain()
        await _expect(reader, "250")
        elapsed = time.perf_counter() - started
        writer.write(b"QUIT\r\n")
        with contextlib.suppress(Exception):
            await writer.drain()
            await asyncio.wait_for(reader.readline(), 2)
        return elapsed
    finally:
        writer.close()
        with contextlib.suppress(Exception):
            await writer.wait_closed()


@dataclass
class LoadResult:
    clients: int
    sent: int = 0
    failed: int = 0
    elapsed: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)

    @property
    def rate(self) -> float:
        return self.sent / self.elapsed if self.elapsed > 0 else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run_load(
    host: str,
    port: int,
    clients: int,
    message: bytes,
    duration: float,
    total: int | None = None,
    auth: tuple[str, str] | None = None,
    per_message_limit: float = 300.0,
    sender: str = SENDER,
) -> LoadResult:
    """*clients* concurrent senders, each sending one message after another until
    *duration* seconds have passed (each sends at least one) or *total* messages were
    started. A message started before the deadline is always finished."""
    result = LoadResult(clients)
    started = time.perf_counter()
    deadline = started + duration
    claimed = 0

    async def client(index: int) -> None:
        nonlocal claimed
        first = True
        while first or time.perf_counter() < deadline:
            first = False
            if total is not None:
                if claimed >= total:
                    return
                claimed += 1
            try:
                one = send_one(host, port, message, auth, sender)
                latency = await asyncio.wait_for(one, per_message_limit)
            except (OSError, SmtpError, TimeoutError) as error:
                result.failed += 1
                result.errors[str(error)[:60] or type(error).__name__] += 1
                await asyncio.sleep(0.05)
                continue
            result.sent += 1
            result.latencies.append(latency)

    await asyncio.gather(*(client(i) for i in range(clients)))
    result.elapsed = time.perf_counter() - started
    return result


@dataclass
class BurstResult:
    opened: int
    greeted: int = 0
    refused: Counter[str] = field(default_factory=Counter)


async def burst(host: str, port: int, connections: int, wait: float = 15.0) -> BurstResult:
    """Open *connections* at once and count who gets a 220 greeting within *wait* s."""
    result = BurstResult(connections)
    writers: list[asyncio.StreamWriter] = []

    async def one() -> None:
        began = time.perf_counter()
        try:
            # A full accept queue drops SYNs; the kernel retries for up to ~2 minutes.
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), wait)
        except TimeoutError:
            result.refused["no connection in time"] += 1
            return
        except OSError as error:
            result.refused[f"connect: {error.strerror or error}"] += 1
            return
        writers.append(writer)
        try:
            line = await asyncio.wait_for(reader.readline(), wait - (time.perf_counter() - began))
        except (TimeoutError, OSError):
            result.refused["no greeting in time"] += 1
            return
        text = line.decode("ascii", "replace").strip()
        if text.startswith("220"):
            result.greeted += 1
        else:
            result.refused[text[:40] or "closed without greeting"] += 1

    await asyncio.gather(*(one() for _ in range(connections)))
    for writer in writers:
        with contextlib.suppress(Exception):
            writer.write(b"QUIT\r\n")
            writer.close()
    await asyncio.sleep(0.5)
    return result


def smtp_source(host: str, port: int, sessions: int, messages: int, size: int) -> LoadResult:
    """Postfix's C load generator: *messages* messages over *sessions* parallel sessions,
    one message per session (no -d). It reports no per-message times, so the latency
    kept is the mean by Little's law (sessions / throughput)."""
    binary = shutil.which("smtp-source") or "/usr/sbin/smtp-source"
    command = [
        binary,
        "-s", str(sessions),
        "-m", str(messages),
        "-l", str(size),
        "-f", SENDER,
        "-t", RECIPIENT,
        "-M", "bench.client",
        f"{host}:{port}",
    ]  # fmt: skip
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603
    elapsed = time.perf_counter() - started
    result = LoadResult(sessions, elapsed=elapsed)
    if done.returncode == 0:
        result.sent = messages
        mean = sessions * elapsed / messages
        result.latencies = [mean]
    else:
        result.failed = messages
        result.errors[(done.stderr.strip().splitlines() or ["smtp-source failed"])[-1][:60]] += 1
    return result


async def direct_xoauth2(
    host: str,
    port: int,
    cafile: str,
    upn: str,
    token: str,
    clients: int,
    total: int,
    message: bytes,
    sender: str,
) -> LoadResult:
    """The reference for relay: *clients* sessions straight to the (simulated) Exchange,
    STARTTLS + AUTH XOAUTH2 once per session, then one message after another over it."""
    import ssl

    import aiosmtplib

    result = LoadResult(clients)
    context = ssl.create_default_context(cafile=cafile)
    xoauth2 = base64.b64encode(f"user={upn}\x01auth=Bearer {token}\x01\x01".encode())
    claimed = 0
    started = time.perf_counter()

    async def client() -> None:
        nonlocal claimed
        smtp = aiosmtplib.SMTP(hostname=host, port=port, tls_context=context, start_tls=True)
        await smtp.connect()
        await smtp.ehlo()
        reply = await smtp.execute_command(b"AUTH", b"XOAUTH2", xoauth2)
        if reply.code != 235:
            raise SmtpError(f"{reply.code} {reply.message}"[:80])
        try:
            while claimed < total:
                claimed += 1
                begun = time.perf_counter()
                try:
                    await smtp.sendmail(sender, [RECIPIENT], message)
                except aiosmtplib.SMTPException as error:
                    result.failed += 1
                    result.errors[str(error)[:60]] += 1
                    continue
                result.sent += 1
                result.latencies.append(time.perf_counter() - begun)
        finally:
            with contextlib.suppress(Exception):
                await smtp.quit()

    await asyncio.gather(*(client() for _ in range(clients)))
    result.elapsed = time.perf_counter() - started
    return result
