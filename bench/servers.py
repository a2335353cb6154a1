"""The servers a benchmark runs against: standalone Dovecot, an aiosmtpd sink, the databases.

Dovecot is the tests' own (`tests/mailhost.py`: its config under a temporary
directory, `mail_uid = nobody`, plaintext on loopback).
The sink is aiosmtpd in a thread of the bench process; it stamps every
message with `time.monotonic()` as it arrives, which is where latencies end.
Databases are cloned from templates that already hold the full code set: a
copied SQLite file, or `CREATE DATABASE ... TEMPLATE` on PostgreSQL; the
matcher's index cache is copied next to each clone so workers start in
seconds, as a deployed worker does.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from aiosmtpd.controller import Controller
from imapclient import IMAPClient
from sqlalchemy import text

from tests import mailhost

PG_ADMIN_URL = os.environ.get("CONSULTANT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
ADDRESS = "consultant@localhost"

@dataclass
class Dovecot:
    """The tests' standalone Dovecot (tests/mailhost.py), with what the bench adds: the worker's
    IMAP settings and the maildirs it fills directly."""

    server: mailhost.Dovecot

    @property
    def port(self) -> int:
        return self.server.port

    def client(self) -> IMAPClient:
        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=30)  # 50,000-message folders
        client.login(mailhost.USER, mailhost.PASSWORD)
        return client

    def env(self) -> dict[str, str]:
        """The consultant's IMAP settings for this server."""
        return {
            "CONSULTANT_IMAP_HOST": "127.0.0.1",
            "CONSULTANT_IMAP_PORT": str(self.port),
            "CONSULTANT_IMAP_USER": mailhost.USER,
            "CONSULTANT_IMAP_PASSWORD": mailhost.PASSWORD,
            "CONSULTANT_IMAP_SSL": "false",
        }

    def maildir(self, folder: str) -> Path:
        base = self.server.root / "mail" / mailhost.USER
        return base if folder == "INBOX" else base / f".{folder}"

    def stop(self) -> None:
        self.server.stop()


def start_dovecot() -> Dovecot:
    if mailhost.dovecot_binary() is None:
        raise SystemExit("bench: Dovecot is not installed (apt-get install dovecot-imapd)")
    return Dovecot(mailhost.start_dovecot())


def append_all(server: Dovecot, messages: list[bytes], folder: str = "INBOX") -> None:
    """APPEND each message (one connection), as a mail server's delivery would leave them."""
    client = server.client()
    try:
        if not client.folder_exists(folder):
            client.create_folder(folder)
        for raw in messages:
            client.append(folder, raw)
    finally:
        client.logout()


def fill_maildir(server: Dovecot, folder: str, messages: list[bytes]) -> None:
    """Write messages straight into a folder's maildir (50,000 APPENDs would take minutes),
    then let Dovecot index them once, before any clock starts."""
    client = server.client()
    try:
        if not client.folder_exists(folder):
            client.create_folder(folder)
    finally:
        client.logout()
    cur = server.maildir(folder) / "cur"
    stamp = int(time.time())
    for n, raw in enumerate(messages):
        path = cur / f"{stamp}.M{n}P{os.getpid()}.bench,S={len(raw)}:2,S"
        path.write_bytes(raw)
    subprocess.run(["chown", "-R", "nobody:nogroup", str(server.maildir(folder))], check=False)
    client = server.client()
    try:
        client.folder_status(folder, ["MESSAGES", "UIDNEXT"])
    finally:
        client.logout()


def folder_count(client: IMAPClient, folder: str) -> int:
    return int(client.folder_status(folder, ["MESSAGES"])[b"MESSAGES"])


def empty_folder(server: Dovecot, folder: str) -> None:
    """Drop and recreate `folder` (not INBOX): quicker than expunging 50,000 messages."""
    client = server.client()
    try:
        if client.folder_exists(folder):
            client.delete_folder(folder)
        client.create_folder(folder)
    finally:
        client.logout()


# -- the SMTP sink -------------------------------------------------------------
@dataclass
class StampingHandler:
    """Collects (arrival time, raw) for every message; nothing else."""

    arrivals: list[tuple[float, bytes]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        stamp = time.monotonic()
        with self.lock:
            self.arrivals.append((stamp, envelope.original_content))
        return "250 OK"


@dataclass
class Sink:
    port: int
    handler: StampingHandler
    controller: Controller

    def count(self) -> int:
        return len(self.handler.arrivals)

    def take(self) -> list[tuple[float, bytes]]:
        """Everything received so far, and start afresh."""
        with self.handler.lock:
            taken, self.handler.arrivals = self.handler.arrivals, []
        return taken

    def env(self) -> dict[str, str]:
        return {
            "CONSULTANT_SMTP_HOST": "127.0.0.1",
            "CONSULTANT_SMTP_PORT": str(self.port),
            "CONSULTANT_SMTP_SECURITY": "none",
        }

    def stop(self) -> None:
        self.controller.stop()


def start_sink() -> Sink:
    handler = StampingHandler()
    port = mailhost.free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    return Sink(port, handler, controller)


# -- databases -----------------------------------------------------------------
def pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


def pg_admin():  # type: ignore[no-untyped-def]
    from consultant.db import make_engine

    return make_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")


def pg_create(name: str, *, template: str | None = None) -> str:
    admin = pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        clause = f' TEMPLATE "{template}"' if template else ""
        conn.execute(text(f'CREATE DATABASE "{name}"{clause}'))
    admin.dispose()
    return pg_url(name)


def pg_drop(name: str) -> None:
    admin = pg_admin()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def pg_size_mb(name: str) -> float:
    admin = pg_admin()
    with admin.connect() as conn:
        size = conn.execute(text("SELECT pg_database_size(:n)"), {"n": name}).scalar_one()
    admin.dispose()
    return size / 1e6


def new_name(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


def index_cache_for(url: str) -> Path | None:
    """Where a worker on `url` looks for the matcher's index cache."""
    from consultant.db import make_engine
    from consultant.match.index import default_cache_path

    engine = make_engine(url)
    try:
        return default_cache_path(engine)
    finally:
        engine.dispose()


def copy_index_cache(source: Path | None, url: str) -> None:
    target = index_cache_for(url)
    if source is None or target is None or not source.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():
        target.unlink()
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)


def clone_sqlite(template: Path, target: Path) -> str:
    """A copy of the template database (and its index cache); returns the URL."""
    for suffix in ("", "-wal", "-shm"):
        old = Path(f"{target}{suffix}")
        if old.exists():
            old.unlink()
    shutil.copyfile(template, target)
    url = f"sqlite:///{target}"
    copy_index_cache(template.with_suffix(".match-index.pickle"), url)
    return url
