"""The peer an experienced administrator picks: Postfix relaying with AUTH XOAUTH2 through
sasl-xoauth2 (github.com/tarickb/sasl-xoauth2), built by bench/setup.sh into
bench/work/sasl-xoauth2 and never installed system-wide.

A private instance (`postfix -c <root>/conf`, queue in <root>/queue, 127.0.0.1 only):
smtpd -> cleanup -> fsync'd queue file -> the 250; qmgr -> smtp -> the simulator with
STARTTLS (smtp_tls_security_level = encrypt, the simulator's CA trusted) and
AUTH XOAUTH2 (smtp_sasl_mechanism_filter = xoauth2). Cyrus SASL finds the plugin through
SASL_PATH, which master hands to its children through import_environment. The SASL
"password" for the relay is the path of sasl-xoauth2's token file, written from a device
sign-in against the simulator. sasl-xoauth2 refreshes without a `scope` (Microsoft, and the
simulator, answer AADSTS900144), so the access token is issued with a lifetime longer
than the run (the simulator's `access_token_lifetime` scenario) and never refreshed.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from systems import (
    _MASTER_CF,
    CLIENT_ID,
    BenchError,
    Sim,
    free_port,
    postfix_binary,
    postfix_dirs,
    wait_port,
)

BENCH = Path(__file__).resolve().parent
PREFIX = BENCH / "work" / "sasl-xoauth2"
PLUGIN_DIR = PREFIX / "lib" / "sasl2"


def plugin_missing() -> str | None:
    if not (PLUGIN_DIR / "libsasl-xoauth2.so").exists():
        return f"sasl-xoauth2 in {PLUGIN_DIR} (bench/setup.sh builds it)"
    return None


class PostfixXoauth2:
    """A private Postfix that relays everything to the simulator with XOAUTH2."""

    def __init__(self, sim: Sim, root: Path, tokens: dict[str, Any], connections: int) -> None:
        self.root = root
        self.port = free_port()
        conf, queue, data = postfix_dirs(root)
        # sasl-xoauth2's own config: its path is compiled in (<prefix>/etc); the token
        # endpoint is the simulator's, whose CA it trusts for a refresh (none is expected).
        (PREFIX / "etc").mkdir(parents=True, exist_ok=True)
        (PREFIX / "etc" / "sasl-xoauth2.conf").write_text(
            json.dumps(
                {
                    "client_id": CLIENT_ID,
                    "client_secret": "",
                    "token_endpoint": f"{sim.tenant_url}/token",
                    "ca_bundle_file": sim.ca,
                    "log_to_syslog_on_failure": "yes",
                }
            )
        )
        (PREFIX / "etc" / "sasl-xoauth2.conf").chmod(0o644)
        token_file = root / "token.json"
        token_file.write_text(
            json.dumps(
                {
                    "access_token": tokens["access_token"],
                    "refresh_token": tokens["refresh_token"],
                    "expiry": str(int(time.time()) + int(tokens["expires_in"])),
                }
            )
        )
        token_file.chmod(0o600)
        shutil.chown(token_file, "postfix")  # sasl-xoauth2 rewrites it after a refresh
        # smtp needs tlsmgr for its TLS engine (PRNG, session cache) once TLS is on.
        master = _MASTER_CF.format(port=self.port) + "tlsmgr unix - - n 1000? 1 tlsmgr\n"
        (conf / "master.cf").write_text(master)
        (conf / "main.cf").write_text(
            "compatibility_level = 3.6\n"
            f"queue_directory = {queue}\ndata_directory = {data}\n"
            f"maillog_file_prefixes = {root}\nmaillog_file = {root}/maillog\n"
            "mail_owner = postfix\nsetgid_group = postdrop\n"
            "inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n"
            "myhostname = postfix.bench\nmydestination =\nmynetworks = 127.0.0.0/8\n"
            "alias_maps =\nalias_database =\nlocal_recipient_maps =\n"
            "smtpd_relay_restrictions = permit_mynetworks, reject\n"
            f"relayhost = [127.0.0.1]:{sim.smtp_port}\n"
            "message_size_limit = 52428800\nsmtputf8_enable = no\n"
            "smtpd_client_connection_count_limit = 0\n"
            "smtpd_client_connection_rate_limit = 0\n"
            # As many upstream connections as mailgate is given, from the start.
            f"default_destination_concurrency_limit = {connections}\n"
            f"initial_destination_concurrency = {connections}\n"
            "smtp_tls_security_level = encrypt\n"
            f"smtp_tls_CAfile = {sim.ca}\n"
            "smtp_sasl_auth_enable = yes\n"
            f"smtp_sasl_password_maps = static:{sim.upn}:{token_file}\n"
            "smtp_sasl_security_options =\n"
            "smtp_sasl_mechanism_filter = xoauth2\n"
            # Cyrus SASL's plugin search path (SASL_PATH) for the smtp processes only.
            "import_environment = MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ LANG=C "
            f"SASL_PATH={PLUGIN_DIR}\n"
        )
        self.conf = conf
        postfix = postfix_binary("postfix") or "postfix"
        done = subprocess.run(  # noqa: S603
            [postfix, "-c", str(conf), "start"], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise BenchError(f"postfix did not start: {done.stderr.strip()}; see {root}/maillog")
        wait_port(self.port)
        self.pid = int((queue / "pid" / "master.pid").read_text().split()[0])

    def maillog_errors(self) -> list[str]:
        log = self.root / "maillog"
        if not log.exists():
            return []
        bad = ("status=deferred", "status=bounced", "SASL authentication failed", "fatal")
        return [
            line
            for line in log.read_text(errors="replace").splitlines()
            if any(b in line for b in bad)
        ]

    def stop(self) -> None:
        subprocess.run(  # noqa: S603
            [postfix_binary("postfix") or "postfix", "-c", str(self.conf), "stop"],
            capture_output=True,
            check=False,
        )
