"""`mailgate demo`: the simulator, and a device signing in to it and sending one message.

It shows the whole of what the vendor manual describes, on one machine, with nothing
from the internet: the device code appears, a person approves it on the simulator's
sign-in page, and a message goes out with SMTP AUTH XOAUTH2.
"""

from __future__ import annotations

import base64
import smtplib
import ssl
import threading
import time
import uuid
from email.message import EmailMessage
from typing import Any

import click
import msal
import requests

from mailgate.sim.server import SimulatorThread

#: A made-up app registration: the simulator accepts any well-formed client ID.
DEMO_CLIENT_ID = "00000000-0000-4000-8000-00000000d3e0"


def _msal_app(sim: SimulatorThread) -> msal.PublicClientApplication:
    session = requests.Session()
    # trust_env=False: REQUESTS_CA_BUNDLE would otherwise replace `verify` on every request.
    session.trust_env = False
    session.verify = str(sim.ca_path)
    return msal.PublicClientApplication(
        DEMO_CLIENT_ID,
        authority=sim.authority,
        instance_discovery=f"{sim.idp_url}/common/discovery/instance",
        http_client=session,
    )


def _send_demo_message(sim: SimulatorThread, upn: str, sender: str, access_token: str) -> str:
    message = EmailMessage()
    message["From"] = sender
    message["To"] = sender
    message["Subject"] = "mailgate demo: hello from your scanner"
    message["Message-ID"] = f"<{uuid.uuid4()}@mailgate.demo>"
    message.set_content(
        "This message was sent with SMTP AUTH XOAUTH2 after a device code sign-in.\n"
    )
    context = ssl.create_default_context(cafile=str(sim.ca_path))
    with smtplib.SMTP("127.0.0.1", sim.smtp_port, timeout=30) as smtp:
        smtp.starttls(context=context)
        smtp.ehlo()
        xoauth2 = f"user={upn}\x01auth=Bearer {access_token}\x01\x01".encode()
        code, reply = smtp.docmd("AUTH", "XOAUTH2 " + base64.b64encode(xoauth2).decode())
        if code != 235:
            raise click.ClickException(f"the simulator refused XOAUTH2: {code} {reply.decode()}")
        smtp.send_message(message)
    return str(message["Subject"])


def run_demo(profile: str, auto_approve: str | None, once: bool) -> int:
    with SimulatorThread(profile=profile) as sim:
        info = sim.info()
        click.echo(f"Simulated Microsoft cloud ({profile}) is up.")
        click.echo(f"  identity platform {info['identity_platform']}, SMTP {info['smtp_server']}")
        click.echo(f"  CA certificate    {info['ca_file']}")
        click.echo("Accounts on its sign-in page: " + ", ".join(a["upn"] for a in info["accounts"]))
        click.echo("")
        app = _msal_app(sim)
        scopes = [sim.state.profile.smtp_scope, "email"]
        flow: dict[str, Any] = app.initiate_device_flow(scopes=scopes)
        if "user_code" not in flow:
            click.echo(f"Could not start sign-in: {flow.get('error_description')}", err=True)
            return 1
        click.echo("A device is signing in. To approve it, open")
        click.echo(f"    {flow['verification_uri']}")
        click.echo(f"and enter the code  {flow['user_code']}")
        click.echo(
            "(the browser warns about the simulator's own certificate: accept it for this address)"
        )
        if auto_approve:

            def approve() -> None:
                time.sleep(0.5)
                sim.sign_in(flow["user_code"], auto_approve, True)

            threading.Thread(target=approve, daemon=True).start()
        result = app.acquire_token_by_device_flow(flow)
        if "access_token" not in result:
            click.echo(
                f"Sign-in failed: {result.get('error')}: {result.get('error_description')}",
                err=True,
            )
            return 1
        claims = result.get("id_token_claims", {})
        upn = claims.get("preferred_username", "")
        sender = claims.get("email", upn)
        click.echo("")
        click.echo(f"Signed in as {upn} (sender address {sender}).")
        subject = _send_demo_message(sim, upn, sender, result["access_token"])
        click.echo(f"Sent {subject!r} with XOAUTH2. See it at {info['mailbox_page']}")
        if once:
            return 0
        click.echo("The simulator keeps running; stop it with Ctrl-C.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            click.echo("Stopped.")
    return 0
