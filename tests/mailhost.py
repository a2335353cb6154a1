"""Real mail servers for the fault, crash and worker tests, usable outside pytest too.

* `start_dovecot(...)`: a private Dovecot on a free loopback port, optionally
  with TLS (a test certificate) or without the MOVE capability;
* `Sink`: an aiosmtpd server in a thread that collects what it is given and
  can be scripted to answer 4xx/5xx at MAIL, RCPT or DATA, to want STARTTLS
  (or implicit TLS), or to refuse logins;
* `busy_server()`: accepts and says `421` at once (a relay that is down);
* `make_cert(...)`: a self-signed certificate made with the `openssl` command.

`bench/crash_campaign.py` and `tests/crash_harness.py` start their servers
through this module, so the campaign and the tests run the same setup.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from imapclient import IMAPClient

from consultant.inbox import ImapConfig

USER, PASSWORD = "consultant@localhost", "dovecot-test"
# What Dovecot 2.3 advertises after login, less MOVE (RFC 6851): a server without MOVE.
CAPABILITIES_WITHOUT_MOVE = (
    "IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE IDLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS "
    "THREAD=ORDEREDSUBJECT MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS "
    "LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH "
    "LIST-STATUS BINARY SPECIAL-USE"
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on port {port}")


# -- certificates ----------------------------------------------------------------
@dataclass(frozen=True)
class Cert:
    cert: Path
    key: Path

    def trusting_context(self) -> ssl.SSLContext:
        """A client context that trusts this certificate (and verifies the host name)."""
        return ssl.create_default_context(cafile=str(self.cert))

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(self.cert), str(self.key))
        return context


def make_cert(directory: Path, *, name: str = "localhost") -> Cert:
    """A self-signed certificate for DNS name `name` only (so 127.0.0.1 does not match)."""
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / f"{name}.crt", directory / f"{name}.key"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN={name}",
         "-addext", f"subjectAltName=DNS:{name}", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True,
    )
    key.chmod(0o644)  # Dovecot reads it as its own unprivileged user
    return Cert(cert, key)


# -- Dovecot ---------------------------------------------------------------------
DOVECOT_CONF = """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
disable_plaintext_auth = no
auth_failure_delay = 0
login_trusted_networks = 127.0.0.0/8
auth_mechanisms = plain login
mail_location = maildir:{d}/mail/%u
mail_uid = nobody
mail_gid = nogroup
first_valid_uid = 1
{ssl}
{capability}
passdb {{
  driver = passwd-file
  args = {d}/passwd
}}
userdb {{
  driver = static
  args = uid=nobody gid=nogroup home={d}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {plain_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""


def dovecot_binary() -> str | None:
    return shutil.which("dovecot") or ("/usr/sbin/dovecot" if os.path.exists("/usr/sbin/dovecot") else None)


@dataclass
class Dovecot:
    binary: str
    root: Path
    port: int  # plain IMAP, or IMAPS when started with a certificate
    tls: bool

    def config(self, **changes: object) -> ImapConfig:
        base = ImapConfig(host="127.0.0.1", port=self.port, user=USER, password=PASSWORD, use_ssl=self.tls,
                          timeout=10)
        return ImapConfig(**{**base.__dict__, **changes})  # type: ignore[arg-type]

    def client(self) -> IMAPClient:
        """A plain admin connection (only for servers started without TLS)."""
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=10)
        client.login(USER, PASSWORD)
        return client

    def append(self, *messages: bytes, folder: str = "INBOX") -> None:
        with self.client() as client:
            if not client.folder_exists(folder):
                client.create_folder(folder)
            for raw in messages:
                client.append(folder, raw)

    def uids(self, folder: str = "INBOX") -> list[int]:
        with self.client() as client:
            if not client.folder_exists(folder):
                return []
            client.select_folder(folder, readonly=True)
            return sorted(client.search(["UNDELETED"]))

    def flags(self, folder: str) -> dict[int, tuple[bytes, ...]]:
        with self.client() as client:
            client.select_folder(folder, readonly=True)
            uids = client.search(["ALL"])
            return {uid: tuple(flags) for uid, flags in client.get_flags(uids).items()} if uids else {}

    def stop(self) -> None:
        """SIGTERM to the master; its few seconds of shutdown run in the background."""
        try:
            master = int((self.root / "run" / "master.pid").read_text().strip())
            os.kill(master, signal.SIGTERM)
        except (OSError, ValueError):
            subprocess.run([self.binary, "-c", str(self.root / "dovecot.conf"), "stop"], check=False,
                           capture_output=True)
            master = 0

        def clean_up() -> None:
            deadline = time.monotonic() + 15
            while master and time.monotonic() < deadline and Path(f"/proc/{master}").exists():
                time.sleep(0.1)
            shutil.rmtree(self.root, ignore_errors=True)

        cleaner = threading.Thread(target=clean_up, daemon=True)
        cleaner.start()
        _CLEANERS.append(cleaner)


_CLEANERS: list[threading.Thread] = []


@atexit.register
def _finish_cleaning() -> None:
    """Let the last Dovecots finish stopping, so their folders are removed too."""
    for cleaner in _CLEANERS:
        cleaner.join(timeout=15)


def start_dovecot(*, cert: Cert | None = None, without_move: bool = False) -> Dovecot:
    binary = dovecot_binary()
    if binary is None:
        raise RuntimeError("Dovecot is not installed (apt-get install dovecot-imapd)")
    root = Path(tempfile.mkdtemp(prefix="cc-dovecot-"))
    root.chmod(0o755)
    for sub in ("mail", "state", "run"):
        (root / sub).mkdir()
    (root / "mail").chmod(0o777)
    (root / "state").chmod(0o777)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}::::::\n")
    plain_port, tls_port = free_port(), free_port()
    ssl_conf = f"ssl = required\nssl_cert = <{cert.cert}\nssl_key = <{cert.key}" if cert else "ssl = no"
    (root / "dovecot.conf").write_text(
        DOVECOT_CONF.format(
            d=root, ssl=ssl_conf, plain_port=0 if cert else plain_port, tls_port=tls_port if cert else 0,
            capability=f"imap_capability = {CAPABILITIES_WITHOUT_MOVE}" if without_move else "",
        )
    )
    subprocess.run([binary, "-c", str(root / "dovecot.conf")], check=True)
    port = tls_port if cert else plain_port
    wait_for_port(port)
    return Dovecot(binary, root, port, tls=cert is not None)


@contextmanager
def dovecot(**kwargs: object) -> Iterator[Dovecot]:
    server = start_dovecot(**kwargs)  # type: ignore[arg-type]
    try:
        yield server
    finally:
        server.stop()


# -- SMTP --------------------------------------------------------------------------
@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    raw: bytes


@dataclass
class ScriptedHandler:
    """Collects messages; `script["DATA"] = ["451 4.3.0 later"]` answers the next DATA so."""

    messages: list[Received] = field(default_factory=list)
    script: dict[str, list[str]] = field(default_factory=dict)
    attempts: dict[str, int] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _scripted(self, stage: str) -> str | None:
        with self.lock:
            self.attempts[stage] = self.attempts.get(stage, 0) + 1
            queue = self.script.get(stage)
            return queue.pop(0) if queue else None

    async def handle_MAIL(self, server, session, envelope, address, mail_options):  # type: ignore[no-untyped-def]
        reply = self._scripted("MAIL")
        if reply:
            return reply
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):  # type: ignore[no-untyped-def]
        reply = self._scripted("RCPT")
        if reply:
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        reply = self._scripted("DATA")
        if reply:
            return reply
        with self.lock:
            self.messages.append(Received(envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


class Sink:
    """aiosmtpd in a thread: `with Sink() as sink: ... sink.messages`."""

    def __init__(
        self,
        *,
        starttls: Cert | None = None,
        implicit_tls: Cert | None = None,
        password: str | None = None,
    ) -> None:
        self.handler = ScriptedHandler()
        self.port = free_port()
        kwargs: dict[str, object] = {}
        if starttls is not None:
            kwargs.update(tls_context=starttls.server_context(), require_starttls=True)
        if implicit_tls is not None:
            kwargs.update(ssl_context=implicit_tls.server_context())
        if password is not None:
            kwargs.update(auth_required=True, auth_require_tls=False,
                          authenticator=lambda *args: _check_login(password, *args))
        self.controller = Controller(self.handler, hostname="127.0.0.1", port=self.port, **kwargs)

    @property
    def messages(self) -> list[Received]:
        return self.handler.messages

    def wait_for(self, count: int, timeout: float = 10.0) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)
        return len(self.messages) >= count

    def start(self) -> Sink:
        if self.controller.ssl_context is not None:
            # aiosmtpd's readiness probe wraps its socket with the *server* context
            self.controller._trigger_server = self._probe_tls  # type: ignore[method-assign]
        self.controller.start()
        return self

    def _probe_tls(self) -> None:
        probe = ssl.create_default_context()
        probe.check_hostname = False
        probe.verify_mode = ssl.CERT_NONE  # only the readiness probe; the tests verify
        with socket.create_connection(("127.0.0.1", self.port), 1.0) as raw, probe.wrap_socket(raw) as tls:
            tls.recv(1024)

    def stop(self) -> None:
        self.controller.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def _check_login(password: str, _server, _session, _envelope, _mechanism, auth_data) -> AuthResult:  # type: ignore[no-untyped-def]
    given = getattr(auth_data, "password", b"")
    given = given.decode() if isinstance(given, bytes) else given
    return AuthResult(success=given == password, handled=False)


class busy_server:
    """Accepts, says `421 4.3.2 try later` and hangs up: a relay that is shedding load."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.accepted += 1
            try:
                conn.sendall(b"421 4.3.2 Service not available, try later\r\n")
            finally:
                conn.close()

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.sock.close()
        self._thread.join(timeout=5)
