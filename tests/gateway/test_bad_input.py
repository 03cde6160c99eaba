"""Bad input at the listener: each gets a clear reply, and nothing half-accepted is kept."""

from __future__ import annotations

import asyncio
import contextlib

from mailgate.gateway.inbound import InboundPolicy
from tests.gateway.listener_helpers import Start


async def _session(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    assert (await reader.readline()).startswith(b"220")
    return reader, writer


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()


async def _reply(reader: asyncio.StreamReader) -> bytes:
    """One (possibly multi-line) reply; its last line."""
    while True:
        line = await asyncio.wait_for(reader.readline(), 10)
        if line[3:4] != b"-":
            return line


async def _say(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, line: bytes) -> bytes:
    writer.write(line + b"\r\n")
    await writer.drain()
    return await _reply(reader)


async def _envelope(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    assert (await _say(reader, writer, b"EHLO printer")).startswith(b"250")
    assert (await _say(reader, writer, b"MAIL FROM:<mfp@printer.local>")).startswith(b"250")
    assert (await _say(reader, writer, b"RCPT TO:<a@contoso.com>")).startswith(b"250")
    assert (await _say(reader, writer, b"DATA")).startswith(b"354")


async def test_smuggling_sequences_do_not_end_data(start_listener: Start) -> None:
    """SMTP smuggling (CVE-2023-51766 family): only <CR><LF>.<CR><LF> ends DATA (RFC 5321
    4.1.1.4), so a second message hidden behind <LF>.<LF>, <LF>.<CR><LF> or <CR>.<CR> stays
    inside the first one's content and is never accepted as a message of its own."""
    gw = await start_listener()
    reader, writer = await _session(gw.port)
    await _envelope(reader, writer)
    hidden = b"MAIL FROM:<ceo@contoso.com>\r\nRCPT TO:<victim@contoso.com>\r\nDATA\r\nforged\r\n"
    body = (
        b"Subject: one\r\n\r\nbody\n.\n"
        + hidden
        + b"x\n.\r\n"
        + hidden
        + b"y\r.\r"
        + hidden
        + b"\r\n.\r\n"
    )
    writer.write(body)
    await writer.drain()
    reply = await _reply(reader)
    await _close(writer)
    assert reply.startswith(b"250")
    [info] = gw.queue.messages()
    assert [r.address for r in info.recipients] == ["a@contoso.com"]


async def test_overlong_command_line(start_listener: Start) -> None:
    gw = await start_listener()
    reader, writer = await _session(gw.port)
    await _say(reader, writer, b"EHLO printer")
    reply = await _say(reader, writer, b"MAIL FROM:<" + b"a" * 2000 + b"@x.test>")
    await _close(writer)
    assert reply.startswith(b"500")


async def test_overlong_data_line_is_refused_and_not_stored(start_listener: Start) -> None:
    gw = await start_listener()
    reader, writer = await _session(gw.port)
    await _envelope(reader, writer)
    writer.write(b"Subject: long\r\n\r\n" + b"x" * 5000 + b"\r\n.\r\n")
    await writer.drain()
    reply = await _reply(reader)
    await _close(writer)
    assert reply.startswith(b"500")
    assert gw.queue.messages() == []


async def test_commands_before_ehlo(start_listener: Start) -> None:
    gw = await start_listener()
    reader, writer = await _session(gw.port)
    reply = await _say(reader, writer, b"MAIL FROM:<a@b.test>")
    await _close(writer)
    assert reply.startswith(b"503")


async def test_malformed_and_quoted_addresses(start_listener: Start) -> None:
    gw = await start_listener()
    reader, writer = await _session(gw.port)
    await _say(reader, writer, b"EHLO printer")
    assert (await _say(reader, writer, b"MAIL FROM:<not an address")).startswith(b"501")
    assert (await _say(reader, writer, b"MAIL FROM:<no-at-sign>")).startswith(b"501")
    assert (await _say(reader, writer, b'MAIL FROM:<"john doe"@printer.local>')).startswith(b"250")
    assert (await _say(reader, writer, b"RCPT TO:<>")).startswith(b"501")
    assert (await _say(reader, writer, b"RCPT TO:<two@@x.test>")).startswith(b"5")
    assert (await _say(reader, writer, b"RCPT TO:<a@contoso.com>")).startswith(b"250")
    await _close(writer)


async def test_null_sender_is_accepted(start_listener: Start) -> None:
    gw = await start_listener()
    reader, writer = await _session(gw.port)
    await _say(reader, writer, b"EHLO printer")
    assert (await _say(reader, writer, b"MAIL FROM:<>")).startswith(b"250")
    assert (await _say(reader, writer, b"RCPT TO:<a@contoso.com>")).startswith(b"250")
    assert (await _say(reader, writer, b"DATA")).startswith(b"354")
    reply = await _say(reader, writer, b"Subject: dsn\r\n\r\nreport\r\n.")
    await _close(writer)
    assert reply.startswith(b"250")
    [info] = gw.queue.messages()
    assert info.envelope_from == ""


async def test_eight_bit_and_invalid_utf8_are_kept_byte_for_byte(start_listener: Start) -> None:
    gw = await start_listener()
    reader, writer = await _session(gw.port)
    await _envelope(reader, writer)
    content = b"Subject: \xff\xfe broken \xc3\r\nX-Raw: \xe4\xf6\xfc\r\n\r\n\xe4 8-bit body\r\n"
    writer.write(content + b".\r\n")
    await writer.drain()
    reply = await _reply(reader)
    await _close(writer)
    assert reply.startswith(b"250")
    [info] = gw.queue.messages()
    assert gw.queue.body(info.id) == content


async def test_pipelined_flood_gets_one_reply_per_command(start_listener: Start) -> None:
    gw = await start_listener()
    reader, writer = await _session(gw.port)
    await _say(reader, writer, b"EHLO printer")
    writer.write(b"NOOP\r\n" * 200)
    await writer.drain()
    replies = [await _reply(reader) for _ in range(200)]
    await _close(writer)
    assert all(r.startswith(b"250") for r in replies)


async def test_silent_client_is_disconnected(start_listener: Start) -> None:
    gw = await start_listener(InboundPolicy(idle_timeout=0.5))
    reader, writer = await _session(gw.port)
    # aiosmtpd closes an idle session without a reply (RFC 5321 4.5.3.2.7 allows it).
    assert await asyncio.wait_for(reader.read(), 5) == b""
    await _close(writer)


async def test_huge_header_block_is_stored_and_rewritten(start_listener: Start) -> None:
    """20,000 header lines (a looping device, or an attack) within the size limit are kept
    as they are, and the sender rewrite at delivery keeps every one of them."""
    from mailgate.config.model import SenderPolicy
    from mailgate.gateway.policy import prepare

    gw = await start_listener()
    reader, writer = await _session(gw.port)
    await _envelope(reader, writer)
    headers = b"".join(b"X-Loop-%d: %s\r\n" % (i, b"v" * 40) for i in range(20_000))
    content = b"From: mfp@printer.local\r\n" + headers + b"Subject: many\r\n\r\nbody\r\n"
    writer.write(content + b".\r\n")
    await writer.drain()
    reply = await _reply(reader)
    await _close(writer)
    assert reply.startswith(b"250")
    [info] = gw.queue.messages()
    stored = gw.queue.body(info.id)
    assert stored == content
    out = prepare(stored, "mfp@printer.local", SenderPolicy.REWRITE, "scanner@contoso.com")
    assert out.data.count(b"X-Loop-") == 20_000
