"""Shared fixtures: databases (SQLite and PostgreSQL) and real mail servers.

* `engine`: a fresh, migrated SQLite file per test; the `db_engine` fixture is
  parametrised over SQLite and PostgreSQL (a fresh database per test, cloned
  from a migrated template).
* `pymap_server`, `dovecot_server`: real IMAP servers started by the tests.
* `smtp_sink`: a real aiosmtpd server in a thread, collecting what it gets.

PostgreSQL and Dovecot tests skip when the server or the binary is missing,
unless CONSULTANT_REQUIRE_POSTGRES / CONSULTANT_REQUIRE_DOVECOT is set (as
.ci/run does): then a missing server is a failure, never a skip.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import text
from sqlalchemy.engine import Engine

from consultant.db import make_engine, migrate
from consultant.inbox import ImapConfig
from tests.mailhost import free_port, wait_for_port

PG_ADMIN_URL = os.environ.get("CONSULTANT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _require(name: str) -> bool:
    return os.environ.get(name, "").lower() in {"1", "true", "yes"}


# -- databases ---------------------------------------------------------------
@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    eng = make_engine(f"sqlite:///{tmp_path / 'test.sqlite3'}")
    migrate(eng)
    yield eng
    eng.dispose()


def _pg_admin() -> Engine | None:
    try:
        eng = make_engine(PG_ADMIN_URL)
        with eng.connect() as conn:
            conn.execute(text("select 1"))
        return eng
    except Exception:  # noqa: BLE001 - unreachable means "no PostgreSQL here"
        return None


@pytest.fixture(scope="session")
def pg_template() -> Iterator[str]:
    admin = _pg_admin()
    if admin is None:
        if _require("CONSULTANT_REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL is required but unreachable at {PG_ADMIN_URL}")
        pytest.skip("PostgreSQL is not reachable")
    name = f"cc_tpl_{uuid.uuid4().hex[:8]}"
    autocommit = admin.execution_options(isolation_level="AUTOCOMMIT")
    with autocommit.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    tpl_engine = make_engine(_pg_url(name))
    migrate(tpl_engine)
    tpl_engine.dispose()
    yield name
    with autocommit.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _pg_url(database: str) -> str:
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{database}"


@pytest.fixture
def pg_engine(pg_template: str) -> Iterator[Engine]:
    admin = make_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    name = f"cc_t_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{pg_template}"'))
    eng = make_engine(_pg_url(name))
    yield eng
    eng.dispose()
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_engine(request: pytest.FixtureRequest) -> Engine:
    """The same test on both databases."""
    return request.getfixturevalue("engine" if request.param == "sqlite" else "pg_engine")


# -- mail servers ------------------------------------------------------------
@dataclass
class SinkHandler:
    messages: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    reply_code: str = "250 OK"

    async def handle_DATA(self, server, session, envelope):  # type: ignore[no-untyped-def]
        if not self.reply_code.startswith("250"):
            return self.reply_code
        self.messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.original_content))
        return "250 OK"


@dataclass
class SmtpSink:
    port: int
    handler: SinkHandler

    @property
    def messages(self) -> list[tuple[str, list[str], bytes]]:
        return self.handler.messages

    def wait_for(self, count: int, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.messages) < count and time.monotonic() < deadline:
            time.sleep(0.05)


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    handler = SinkHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SmtpSink(port, handler)
    finally:
        controller.stop()


@pytest.fixture
def pymap_server() -> Iterator[ImapConfig]:
    port = free_port()
    user, password = "consultant@localhost", "pymap-test"
    proc = subprocess.Popen(
        [sys.executable, "-c", "from pymap.main import main; main()", "--no-tls", "--host", "127.0.0.1",
         "--port", str(port), "dict", "--demo-user", user, "--demo-password", password],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_port(port)
        yield ImapConfig(host="127.0.0.1", port=port, user=user, password=password, use_ssl=False, timeout=10)
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture
def dovecot_server() -> Iterator[ImapConfig]:
    """A private Dovecot (tests/mailhost.py starts it: own config, mail_uid=nobody)."""
    from tests import mailhost

    if mailhost.dovecot_binary() is None:
        if _require("CONSULTANT_REQUIRE_DOVECOT"):
            pytest.fail("Dovecot is required but not installed (apt-get install dovecot-imapd dovecot-lmtpd)")
        pytest.skip("Dovecot is not installed")
    with mailhost.dovecot() as server:
        yield server.config()


# -- the full shipped code set, loaded once per test session -------------------
@pytest.fixture(scope="session")
def loaded_codes_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file with every shipped code set loaded (about a minute, once)."""
    from consultant.codes.loader import load_codes

    path = tmp_path_factory.mktemp("codes") / "loaded.sqlite3"
    eng = make_engine(f"sqlite:///{path}")
    migrate(eng)
    load_codes(eng)
    eng.dispose()
    return path


@pytest.fixture(scope="module")
def loaded_matcher(loaded_codes_file: Path):  # type: ignore[no-untyped-def]
    """The matcher over the loaded code set, built once per module without the index cache
    (the lexicon tests: tests/test_match_lay_terms.py, tests/test_match_lexicon_round11.py)."""
    from consultant.match import build_matcher

    engine = make_engine(f"sqlite:///{loaded_codes_file}")
    yield build_matcher(engine, cache_path=False)
    engine.dispose()


@pytest.fixture
def loaded_engine(loaded_codes_file: Path, tmp_path: Path) -> Iterator[Engine]:
    """A private copy of the loaded database, so a test may write to it freely."""
    copy = tmp_path / "loaded.sqlite3"
    shutil.copyfile(loaded_codes_file, copy)
    eng = make_engine(f"sqlite:///{copy}")
    yield eng
    eng.dispose()
