"""Dovecot's submission service as a second upstream: a server nobody here wrote.

:func:`start_dovecot` runs Debian's Dovecot 2.3 (``dovecot-core`` + ``dovecot-submissiond``)
from a private configuration in a temporary directory - never /etc/dovecot, never the
system service - on 127.0.0.1 and a free port. ``passdb oauth2`` asks the simulated
identity platform whether a token is good (RFC 7662 introspection, ``/_sim/introspect``),
and ``submission_relay_host`` hands accepted mail to a :class:`Sink` the test reads.

What Dovecot does differently from Exchange, and mailgate must cope with: it refuses
command lines over 1030 octets ("500 5.5.2 Line too long"), answers a bad token with a
``334`` JSON challenge and then "535 5.7.8 Authentication failed.", and delays failed
AUTHs (``auth_failure_delay``, set to 0 here so tests stay quick).

The master process is ours (Popen); it is stopped by its pid and its directory removed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.bounds import HANG

DOVECOT = "/usr/sbin/dovecot"


def available() -> str | None:
    """None when Dovecot with its submission service can run here, else why not."""
    if not Path(DOVECOT).exists():
        return "dovecot is not installed (Debian: apt-get install dovecot-core dovecot-submissiond)"
    if not Path("/usr/lib/dovecot/submission").exists():
        return "dovecot's submission service is not installed (Debian: dovecot-submissiond)"
    return None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _users() -> tuple[str, str, str, str]:
    """(internal user, login user, mail user, mail group): Debian's as root, else ourselves
    (Dovecot runs unprivileged when started by a user; best effort, CI runs as root)."""
    if os.geteuid() == 0:
        return "dovecot", "dovenull", "nobody", "nogroup"
    me = pwd.getpwuid(os.geteuid()).pw_name
    return me, me, str(os.geteuid()), str(os.getegid())


def _config(root: Path, port: int, relay_port: int, introspection_url: str, mechs: str) -> str:
    internal, login, mail, group = _users()
    return f"""# mailgate tests: a private Dovecot, see tests/submission/dovecot.py
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
default_internal_user = {internal}
default_login_user = {login}
protocols = submission
listen = 127.0.0.1
ssl = required
ssl_cert = <{root}/cert.pem
ssl_key = <{root}/key.pem
auth_mechanisms = {mechs}
# Dovecot waits 2 s (up to 15 s more) after a failed AUTH; the tests need no brake.
auth_failure_delay = 0
auth_verbose = yes
hostname = dovecot.test
mail_location = maildir:{root}/mail/%n
submission_relay_host = 127.0.0.1
submission_relay_port = {relay_port}
submission_relay_trusted = yes
passdb {{
  driver = oauth2
  mechanisms = {mechs}
  args = {root}/oauth2.conf.ext
}}
userdb {{
  driver = static
  args = uid={mail} gid={group} home={root}/mail/%n
}}
service submission-login {{
  chroot =
  inet_listener submission {{
    address = 127.0.0.1
    port = {port}
  }}
}}
service anvil {{
  chroot =
}}
"""


@dataclass
class Dovecot:
    root: Path
    port: int
    process: subprocess.Popen[bytes]

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        """SIGTERM to our master process (it ends its children), SIGKILL if it lingers."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=HANG)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=HANG)
        shutil.rmtree(self.root, ignore_errors=True)


def _listening(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
        return True
    return False


def start_dovecot(
    *,
    relay_port: int,
    introspection_url: str,
    ca_cert: Path,
    server_cert: Path,
    server_key: Path,
    mechanisms: str = "xoauth2 oauthbearer",
) -> Dovecot:
    """Start a private Dovecot submission server; a few tries in case a port was taken."""
    last = ""
    for _ in range(3):
        # Under /tmp, not pytest's 0700 tmp_path: Dovecot's unprivileged processes read here.
        root = Path(tempfile.mkdtemp(prefix="mailgate-dovecot-"))
        root.chmod(0o755)
        for sub, mode in (("run", 0o755), ("state", 0o755), ("mail", 0o1777)):
            (root / sub).mkdir()
            (root / sub).chmod(mode)
        shutil.copyfile(server_cert, root / "cert.pem")
        shutil.copyfile(server_key, root / "key.pem")
        shutil.copyfile(ca_cert, root / "ca.pem")
        (root / "key.pem").chmod(0o600)
        (root / "ca.pem").chmod(0o644)
        (root / "oauth2.conf.ext").write_text(
            f"introspection_mode = post\nintrospection_url = {introspection_url}\n"
            f"tls_ca_cert_file = {root}/ca.pem\nusername_attribute = username\n"
            "active_attribute = active\nactive_value = true\nforce_introspection = yes\n"
        )
        (root / "oauth2.conf.ext").chmod(0o644)
        port = free_port()
        (root / "dovecot.conf").write_text(
            _config(root, port, relay_port, introspection_url, mechanisms)
        )
        process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(root / "dovecot.conf")],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        server = Dovecot(root, port, process)
        deadline = time.monotonic() + HANG
        while time.monotonic() < deadline and process.poll() is None:
            if _listening(port):
                return server
            time.sleep(0.1)
        last = server.log()[-2000:]
        server.stop()
    raise RuntimeError(f"Dovecot did not start: {last}")
