"""The systems under test, each started on 127.0.0.1 on a free port and stopped again.

- :class:`Sim`: the simulated Microsoft cloud (`mailgate sim`) in its own process, driven
  through its control API (/_sim/...), so it never shares a core's GIL with what it serves.
- :class:`Mailgate`: `mailgate serve` on a fresh data directory configured against the
  simulator (or the bench's gateway_proc.py when the delivery concurrency must exceed what
  the settings allow).
- :class:`AiosmtpdSink`, :class:`SmtpSink`, :class:`Postfix`: the ingest references.
- :class:`EmailProxy`: the peer, email-oauth2-proxy, against the same simulator.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import requests
from cryptography.fernet import Fernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC

BENCH = Path(__file__).resolve().parent
CLIENT_ID = "00000000-0000-4000-8000-00000000be7c"
SCOPE = "https://outlook.office.com/SMTP.Send offline_access openid email"


class BenchError(Exception):
    """A system could not be started or driven; the text says which and why."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_port(port: int, limit: float = 20.0) -> None:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise BenchError(f"nothing listens on 127.0.0.1:{port} after {limit:.0f} s")


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM (peak RSS) of a process, in kB, from /proc/<pid>/status."""
    values: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            values[key] = int(rest.split()[0])
    return values


def _stop(process: subprocess.Popen[bytes], limit: float = 35.0) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(limit)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


class Sim:
    """`mailgate sim` in a child process; scenario, sign-in and counters over HTTPS."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = open(workdir / "sim.log", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, "-m", "mailgate", "sim", "--json", "--workdir", str(workdir)],
            stdout=subprocess.PIPE,
            stderr=self.log,
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise BenchError(f"the simulator did not start; see {workdir / 'sim.log'}")
        self.info: dict[str, Any] = json.loads(line)
        self.url = str(self.info["identity_platform"])
        self.ca = str(self.info["ca_file"])
        self.smtp_port = int(self.info["smtp_port"])
        self.upn = str(self.info["accounts"][0]["upn"])
        self.address = str(self.info["accounts"][0]["primary_address"])
        self.http = requests.Session()
        self.http.verify = self.ca
        self.http.trust_env = False

    def scenario(self, **changes: Any) -> None:
        self.http.post(f"{self.url}/_sim/scenario", json=changes, timeout=10).raise_for_status()

    def counters(self) -> dict[str, int]:
        reply = self.http.get(f"{self.url}/_sim/counters", timeout=10)
        reply.raise_for_status()
        return {str(k): int(v) for k, v in reply.json().items()}

    def clear_messages(self) -> None:
        self.http.delete(f"{self.url}/_sim/messages", timeout=30).raise_for_status()

    def approve(self, user_code: str, upn: str | None = None) -> None:
        body = {"user_code": user_code, "upn": upn or self.upn, "approve": True}
        self.http.post(f"{self.url}/_sim/sign-in", json=body, timeout=10).raise_for_status()

    @property
    def tenant_url(self) -> str:
        return f"{self.url}/{self.info['tenant']}/oauth2/v2.0"

    def device_code_tokens(self) -> dict[str, Any]:
        """The device code flow done by hand (POST devicecode, approve, POST token)."""
        form = {"client_id": CLIENT_ID, "scope": SCOPE}
        code = self.http.post(f"{self.tenant_url}/devicecode", data=form, timeout=10).json()
        self.approve(str(code["user_code"]))
        grant = {
            "grant_type": "urn:ietf:params:oauth:grant-type:device_code",
            "client_id": CLIENT_ID,
            "device_code": code["device_code"],
        }
        for _ in range(30):
            reply = self.http.post(f"{self.tenant_url}/token", data=grant, timeout=10)
            if reply.status_code == 200:
                return dict(reply.json())
            time.sleep(1)
        raise BenchError(f"the simulator's token endpoint did not issue a token: {reply.text}")

    def devicecode_by_get(self) -> int:
        """What email-oauth2-proxy's device flow does: GET the permission_url."""
        url = f"{self.tenant_url}/devicecode?client_id={CLIENT_ID}&scope=openid"
        return self.http.get(url, timeout=10).status_code

    def stop(self) -> None:
        _stop(self.process)
        self.log.close()


class Mailgate:
    """A fresh data directory and `mailgate serve` (or bench/gateway_proc.py) on it."""

    def __init__(
        self,
        sim: Sim,
        root: Path,
        settings: dict[str, str],
        signed_in: bool = True,
        connections: int | None = None,
    ) -> None:
        from mailgate.config.store import init_data_dir  # heavy: only when used

        self.data_dir = root / f"mailgate-{time.monotonic_ns()}"
        store = init_data_dir(self.data_dir)
        try:
            store.apply_provider(
                "exchange-online",
                client_id=CLIENT_ID,
                server=f"127.0.0.1:{sim.smtp_port}",
                host=str(sim.info["sign_in_host"]),
            )
            store.set("network.ca_bundle", sim.ca)
            for key, value in settings.items():
                store.set(key, value)
            if signed_in:
                self._sign_in(sim, store)
        finally:
            store.close()
        ready = self.data_dir / "ready.json"
        self.log_path = self.data_dir / "serve.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115 - closed in stop()
        if connections is None:
            command = [sys.executable, "-m", "mailgate", "--data-dir", str(self.data_dir)]
            command += ["serve", "--listen", "127.0.0.1:0", "--ready-file", str(ready)]
        else:
            command = [sys.executable, str(BENCH / "gateway_proc.py"), str(self.data_dir)]
            command += [str(connections), str(ready)]
        self.process = subprocess.Popen(command, stdout=self.log, stderr=self.log)  # noqa: S603
        deadline = time.monotonic() + 30
        while not ready.exists():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise BenchError(f"mailgate serve did not start; see {self.log_path}")
            time.sleep(0.05)
        info = json.loads(ready.read_text())
        self.port = int(info["smtp"][0]["port"])
        self.pid = self.process.pid

    @staticmethod
    def _sign_in(sim: Sim, store: Any) -> None:
        from mailgate.account import device_sign_in

        sim.scenario(poll_interval=1)
        flow = device_sign_in(store, store.settings())
        try:
            code = flow.start()
            threading.Timer(0.2, sim.approve, (code.user_code,)).start()
            flow.wait(code)
        finally:
            flow.close()

    def stop(self) -> None:
        _stop(self.process)
        self.log.close()


class AiosmtpdSink:
    """A bare aiosmtpd server that discards every message: the Python ceiling."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603
            [sys.executable, str(BENCH / "sink_aiosmtpd.py")], stdout=subprocess.PIPE
        )
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line:
            raise BenchError("the aiosmtpd sink did not start")
        self.port = int(line)

    def stop(self) -> None:
        _stop(self.process)


def postfix_binary(name: str) -> str | None:
    for folder in ("/usr/sbin", "/usr/bin"):
        if os.access(f"{folder}/{name}", os.X_OK):
            return f"{folder}/{name}"
    return shutil.which(name)


class SmtpSink:
    """Postfix's smtp-sink: a C SMTP server that discards; the C ceiling."""

    def __init__(self) -> None:
        self.port = free_port()
        binary = postfix_binary("smtp-sink") or "smtp-sink"
        self.process = subprocess.Popen(  # noqa: S603
            [binary, "-u", "postfix", "-h", "sink.bench", f"127.0.0.1:{self.port}", "1024"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port)

    def stop(self) -> None:
        _stop(self.process)


_MASTER_CF = """\
127.0.0.1:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def postfix_dirs(root: Path) -> tuple[Path, Path, Path]:
    """config, queue and data directories of a private Postfix instance under *root*
    (data owned by the postfix user, as its daemons write there)."""
    conf, queue, data = root / "conf", root / "queue", root / "data"
    for folder in (conf, queue, data):
        folder.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    shutil.chown(data, "postfix")
    return conf, queue, data


class Postfix:
    """A private Postfix instance: smtpd -> cleanup -> its own queue (fsync'd before the
    250), delivery deferred (defer_transports = smtp), config and queue in *root*."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        conf, queue, data = postfix_dirs(root)
        (conf / "master.cf").write_text(_MASTER_CF.format(port=self.port))
        (conf / "main.cf").write_text(
            "compatibility_level = 3.6\n"
            f"queue_directory = {queue}\ndata_directory = {data}\n"
            f"maillog_file_prefixes = {root}\nmaillog_file = {root}/maillog\n"
            "mail_owner = postfix\nsetgid_group = postdrop\n"
            "inet_interfaces = 127.0.0.1\ninet_protocols = ipv4\n"
            "myhostname = postfix.bench\nmydestination =\nmynetworks = 127.0.0.0/8\n"
            "smtpd_relay_restrictions = permit_mynetworks, reject\n"
            "default_transport = smtp\ndefer_transports = smtp\n"
            # 128 concurrent clients must each get an smtpd (default 100).
            "default_process_limit = 256\n"
            "message_size_limit = 52428800\nsmtputf8_enable = no\n"
            "smtpd_client_connection_count_limit = 0\n"
            "smtpd_client_connection_rate_limit = 0\n"
        )
        self.conf = conf
        done = subprocess.run(  # noqa: S603
            [postfix_binary("postfix") or "postfix", "-c", str(conf), "start"],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise BenchError(f"postfix did not start: {done.stderr.strip()}; see {root}/maillog")
        wait_port(self.port)

    def clear_queue(self) -> None:
        subprocess.run(  # noqa: S603
            [postfix_binary("postsuper") or "postsuper", "-c", str(self.conf), "-d", "ALL"],
            capture_output=True,
            check=False,
        )

    def stop(self) -> None:
        subprocess.run(  # noqa: S603
            [postfix_binary("postfix") or "postfix", "-c", str(self.conf), "stop"],
            capture_output=True,
            check=False,
        )


def _fernet(password: str, salt: bytes, iterations: int) -> Fernet:
    kdf = PBKDF2HMAC(algorithm=hashes.SHA256(), length=32, salt=salt, iterations=iterations)
    return Fernet(base64.urlsafe_b64encode(kdf.derive(password.encode())))


class EmailProxy:
    """email-oauth2-proxy (`emailproxy --no-gui --external-auth`), an SMTP server section
    whose upstream is the simulator's SMTP with STARTTLS, and an account section whose
    permission_url / token_url are the simulator's devicecode / token endpoints
    (oauth2_flow = device). Its device flow GETs the permission_url, which Microsoft (and
    the simulator) only answer to POST, so the account's token cache is pre-seeded the way
    the proxy itself writes it: access_token / refresh_token encrypted with a Fernet key
    derived (PBKDF2-SHA256, token_iterations) from the password the device logs in with,
    token_salt, access_token_expiry."""

    PASSWORD = "bench-device-password"  # noqa: S105 - the proxy's local password, not a secret
    ITERATIONS = 1_200_000  # what the proxy itself writes (Cryptographer.ITERATIONS)

    def __init__(self, sim: Sim, root: Path, tokens: dict[str, Any]) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.upn = sim.upn
        salt = os.urandom(16)
        fernet = _fernet(self.PASSWORD, salt, self.ITERATIONS)
        expiry = int(time.time()) + int(tokens["expires_in"])
        config = root / "emailproxy.config"
        config.write_text(
            f"[SMTP-{self.port}]\n"
            "local_address = 127.0.0.1\n"
            "server_address = 127.0.0.1\n"
            f"server_port = {sim.smtp_port}\n"
            "server_starttls = True\n\n"
            f"[{self.upn}]\n"
            f"permission_url = {sim.tenant_url}/devicecode\n"
            f"token_url = {sim.tenant_url}/token\n"
            f"oauth2_scope = {SCOPE}\n"
            "oauth2_flow = device\n"
            f"client_id = {CLIENT_ID}\n"
            f"token_salt = {base64.b64encode(salt).decode()}\n"
            f"token_iterations = {self.ITERATIONS}\n"
            f"access_token = {fernet.encrypt(str(tokens['access_token']).encode()).decode()}\n"
            f"access_token_expiry = {expiry}\n"
            f"refresh_token = {fernet.encrypt(str(tokens['refresh_token']).encode()).decode()}\n"
            f"last_activity = {int(time.time())}\n"
        )
        # Trust the simulator's CA for this process only: the machine's own bundle
        # variables are replaced, not extended.
        env = {k: v for k, v in os.environ.items() if k not in _CA_VARIABLES}
        env["SSL_CERT_FILE"] = sim.ca
        binary = Path(sys.executable).with_name("emailproxy")
        self.log = open(root / "emailproxy.out", "wb")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(  # noqa: S603
            [
                str(binary), "--no-gui", "--external-auth",
                "--config-file", str(config), "--log-file", str(root / "emailproxy.log"),
            ],
            stdout=self.log,
            stderr=self.log,
            stdin=subprocess.DEVNULL,
            env=env,
        )  # fmt: skip
        wait_port(self.port)
        self.auth = (self.upn, self.PASSWORD)

    def stop(self) -> None:
        _stop(self.process, 10)
        self.log.close()


_CA_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR", "REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")
