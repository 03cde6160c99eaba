"""`mailgate demo`: the simulated Microsoft cloud and a mailgate gateway wired to it.

Everything the product does, on one machine, with nothing from the internet: the gateway
signs in like the device in the vendor manual (a code, approved on the simulator's
sign-in page), listens for plain SMTP like a printer's mail server, delivers through the
simulated Exchange Online with XOAUTH2, and serves its admin console. A first message goes
through by itself. The default cloud is 21Vianet's, the one the manual was written for.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import smtplib
import tempfile
import threading
import time
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import click
import segno

from mailgate.account import device_sign_in
from mailgate.config.store import Store, init_data_dir
from mailgate.identity.errors import SignInError
from mailgate.service import Gateway, ListenOverride, start_console
from mailgate.sim.server import SimulatorThread

if TYPE_CHECKING:
    from mailgate.console.app import ConsoleServer

#: A made-up app registration: the simulator accepts any well-formed client ID.
DEMO_CLIENT_ID = "00000000-0000-4000-8000-00000000d3e0"
PROVIDER_OF_PROFILE = {
    "global": "exchange-online",
    "21vianet": "exchange-online-21vianet",
    "gcc-high": "exchange-online-gcc-high",
    "consumers": "outlook-com",
}


def _configure(store: Store, sim: SimulatorThread, profile: str) -> None:
    store.apply_provider(
        PROVIDER_OF_PROFILE[profile],
        client_id=DEMO_CLIENT_ID,
        server=f"127.0.0.1:{sim.smtp_port}",
        host=sim.idp_hostport,
    )
    store.set("network.ca_bundle", str(sim.ca_path))


def _sign_in(store: Store, sim: SimulatorThread, auto_approve: str | None) -> str:
    flow = device_sign_in(store, store.settings())
    try:
        code = flow.start()
        # A device shows Microsoft's address; the simulator answers that page on its own.
        local = sim.idp_url + urlsplit(code.verification_uri).path
        click.echo("\nmailgate signs in like the device in the manual. A device shows")
        click.echo(f"    {code.verification_uri}")
        click.echo("which the simulator plays at its own address: open")
        click.echo(f"    {local}")
        click.echo(f"and enter the code  {code.user_code}")
        segno.make(local, error="l").terminal(compact=True)
        click.echo(
            "The page is served with the simulator's own certificate: accept the browser's "
            "warning for this local address. Pick any account and approve."
        )
        if auto_approve:
            upn = auto_approve
            threading.Timer(0.5, lambda: sim.sign_in(code.user_code, upn, True)).start()
        result = flow.wait(code)
    finally:
        flow.close()
    click.echo(f"\nSigned in as {result.upn}; mail will be sent as {result.primary_address}.")
    return result.primary_address


def _send_first_message(port: int, recipient: str) -> None:
    message = EmailMessage()
    message["From"] = "Scan to E-mail <mfp-3f@printer.local>"
    message["To"] = recipient
    message["Subject"] = "mailgate demo: scanned document"
    message.set_content(
        "A printer sent this with plain SMTP; mailgate delivered it with XOAUTH2.\n"
    )
    with smtplib.SMTP("127.0.0.1", port, timeout=30) as smtp:
        smtp.send_message(message)


async def _wait_delivered(sim: SimulatorThread, count: int, limit: float = 60.0) -> bool:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if len(sim.state.messages) >= count:
            return True
        await asyncio.sleep(0.2)
    return False


async def _start(
    store: Store, port: int, console: bool
) -> tuple[Gateway, int, ConsoleServer | None]:
    override = ListenOverride("127.0.0.1", port, console_host="127.0.0.1", console_port=8025)
    try:
        gateway = Gateway(store, store.settings(), override)
        bound = await gateway.start()
    except OSError:  # the asked-for port is busy: any free one
        await gateway.stop(grace=1)
        override.port = 0
        gateway = Gateway(store, store.settings(), override)
        bound = await gateway.start()
    server: ConsoleServer | None = None
    if console:
        try:
            server = await start_console(gateway, override, bound)
        except OSError:
            override.console_port = 0
            server = await start_console(gateway, override, bound)
    return gateway, bound[0][1], server


async def _run(
    store: Store, sim: SimulatorThread, auto_approve: str | None, once: bool, port: int
) -> int:
    gateway, port, console = await _start(store, port, console=not once)
    try:
        click.echo(f"The gateway listens for plain SMTP on 127.0.0.1:{port}.")
        if console is not None:
            click.echo(f"Admin console: {console.url}")
            click.echo(f"  first visit: {console.setup_url}")
        sender = await asyncio.to_thread(_sign_in, store, sim, auto_approve)
        await asyncio.to_thread(_send_first_message, port, sender)
        if not await _wait_delivered(sim, 1):
            click.echo("The first message was not delivered in time; see `mailgate queue list`.")
            return 1
        mailbox = f"{sim.idp_url}/_sim/mailbox"
        click.echo(f"A first message went device -> mailgate -> simulated Exchange: {mailbox}")
        if once:
            return 0
        click.echo(
            f"Point a device (or `swaks --server 127.0.0.1:{port} --to someone@example.com`) "
            "at the gateway; manage it in the console. Ctrl-C stops the demo."
        )
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        return 0
    except SignInError as error:
        problem = error.problem
        click.echo(f"Sign-in failed: {problem.title}. {problem.what_to_do}", err=True)
        return 1
    finally:
        if console is not None:
            await console.stop()
        await gateway.stop(grace=5)


def run_demo(
    profile: str, auto_approve: str | None, once: bool, data_dir: Path | None, port: int = 2525
) -> int:
    with contextlib.ExitStack() as stack:
        if data_dir is None:
            temp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="mailgate-demo-")))
            data_dir = temp / "data"
        sim = stack.enter_context(SimulatorThread(profile=profile))
        sim.set_scenario(poll_interval=2)
        accounts = ", ".join(m.upn for m in sim.state.directory)
        click.echo(f"Simulated Microsoft cloud ({profile}) is up:")
        click.echo(f"  SMTP server 127.0.0.1:{sim.smtp_port}, sign-in host {sim.idp_hostport}")
        click.echo(f"  CA certificate {sim.ca_path}")
        click.echo(f"  accounts: {accounts}")
        click.echo(f"Data directory of this demo: {data_dir}")
        store = stack.enter_context(init_data_dir(data_dir))
        _configure(store, sim, profile)
        return asyncio.run(_run(store, sim, auto_approve, once, port))
    return 1
