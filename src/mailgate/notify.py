"""The systemd notify protocol (sd_notify(3)), spoken by `serve` with the standard library.

Theory of operation: under `Type=notify` systemd passes the path of a datagram socket in
$NOTIFY_SOCKET; the service sends newline-separated `KEY=VALUE` assignments to it:
`READY=1` once it accepts work, `STOPPING=1` when it begins to shut down, and
`WATCHDOG=1` at least once per `WatchdogSec` (systemd passes it as $WATCHDOG_USEC, and
$WATCHDOG_PID names the process meant; sd_watchdog_enabled(3) advises pinging every half
interval). A path starting with '@' is a Linux abstract-namespace socket: the '@' stands
for a leading NUL byte. Outside systemd none of the variables is set and nothing is sent.

Deciding (what address, whether and how often to ping) is pure; `Notifier` only sends.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Mapping

log = logging.getLogger(__name__)

ENV_SOCKET = "NOTIFY_SOCKET"
ENV_WATCHDOG_USEC = "WATCHDOG_USEC"
ENV_WATCHDOG_PID = "WATCHDOG_PID"


def socket_address(value: str | None) -> str | bytes | None:
    """The address to send to, from $NOTIFY_SOCKET; None when it is unset or unusable.

    sd_notify(3): an absolute path is a file-system socket; '@' starts an abstract one
    (NUL-prefixed); systemd 254+ also passes `vsock:` addresses, which a gateway on the
    host never gets and which are ignored here."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode("utf-8")
    if value.startswith("/"):
        return value
    return None


def watchdog_interval(env: Mapping[str, str], pid: int) -> float | None:
    """Seconds between WATCHDOG=1 pings, or None when no watchdog is asked of *pid*.

    Half the interval systemd enforces, as sd_watchdog_enabled(3) recommends, so a ping
    delayed by a busy machine still arrives in time."""
    usec_text = env.get(ENV_WATCHDOG_USEC, "")
    pid_text = env.get(ENV_WATCHDOG_PID, "")
    if pid_text and (not pid_text.isdigit() or int(pid_text) != pid):
        return None  # meant for another process (e.g. our parent)
    if not usec_text.isdigit() or int(usec_text) == 0:
        return None
    return int(usec_text) / 2_000_000


def message(**fields: str) -> bytes:
    """One notification: `KEY=VALUE` lines (sd_notify(3)); values must be one line."""
    lines = []
    for key, value in fields.items():
        lines.append(f"{key}={' '.join(value.splitlines())}")
    return ("\n".join(lines) + "\n").encode("utf-8")


class Notifier:
    """Sends notifications to the service manager; does nothing when there is none."""

    def __init__(self, address: str | bytes | None, watchdog: float | None = None) -> None:
        self.address = address
        self.watchdog = watchdog if address is not None else None

    @classmethod
    def from_environ(cls, env: Mapping[str, str] | None = None) -> Notifier:
        env = os.environ if env is None else env
        address = socket_address(env.get(ENV_SOCKET))
        return cls(address, watchdog_interval(env, os.getpid()))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, **fields: str) -> bool:
        """Send one datagram; a failure is logged, never raised (the gateway still works)."""
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message(**fields), self.address)
        except OSError as error:
            log.warning("could not notify the service manager: %s", error)
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=status)

    def stopping(self, status: str = "stopping: deliveries in flight finish") -> bool:
        return self.send(STOPPING="1", STATUS=status)

    async def keep_watchdog(self) -> None:
        """Ping the watchdog until cancelled. A ping proves the event loop still runs:
        a hung loop stops pinging and systemd restarts the service (Restart=on-failure)."""
        if self.watchdog is None:
            return
        while True:
            self.send(WATCHDOG="1")
            await asyncio.sleep(self.watchdog)


def ready_status(bound: list[tuple[str, int, bool]], configured: bool) -> str:
    """The STATUS= line `systemctl status` shows once serve is ready."""
    where = ", ".join(f"{host}:{port}" for host, port, _ in bound)
    state = "delivering" if configured else "holding mail until a provider is configured"
    return f"listening on {where}; {state}"
