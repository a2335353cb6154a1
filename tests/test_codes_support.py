"""Shared helpers for the tests/test_codes_*.py files (no tests here).

`loaded_sqlite_url()` loads every shipped code set once per test session into
a temporary SQLite file; `pg_database()` makes a fresh PostgreSQL database for
the session (skipping when PostgreSQL is unreachable, unless
CONSULTANT_REQUIRE_POSTGRES is set, which makes it a failure).
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
import uuid

import pytest
from sqlalchemy import text
from sqlmodel import SQLModel

from consultant.db import make_engine

PG_ADMIN_URL = os.environ.get("CONSULTANT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@functools.cache
def loaded_sqlite_url() -> str:
    """A SQLite file with everything shipped loaded; made once per process."""
    from consultant.codes.loader import load_codes

    tmp = tempfile.mkdtemp(prefix="codes_test_")
    atexit.register(shutil.rmtree, tmp, True)
    url = f"sqlite:///{tmp}/codes.sqlite3"
    engine = make_engine(url)
    SQLModel.metadata.create_all(engine)
    summary = load_codes(engine)
    engine.dispose()
    LOAD_SUMMARY.update(summary)
    return url


LOAD_SUMMARY: dict = {}


def fresh_sqlite(tmp_path) -> object:
    engine = make_engine(f"sqlite:///{tmp_path / 'fresh.sqlite3'}")
    SQLModel.metadata.create_all(engine)
    return engine


def _require_pg() -> bool:
    return os.environ.get("CONSULTANT_REQUIRE_POSTGRES", "").lower() not in {"", "0", "false", "no"}


def pg_admin():
    try:
        eng = make_engine(PG_ADMIN_URL)
        with eng.connect() as conn:
            conn.execute(text("select 1"))
        return eng
    except Exception:  # noqa: BLE001 - unreachable means "no PostgreSQL here"
        if _require_pg():
            pytest.fail(f"PostgreSQL is required (CONSULTANT_REQUIRE_POSTGRES) but unreachable at {PG_ADMIN_URL}")
        pytest.skip("PostgreSQL is not reachable")


def pg_database():
    """Create a fresh database; returns (url, drop_function)."""
    admin = pg_admin().execution_options(isolation_level="AUTOCOMMIT")
    name = f"codes_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    url = f"{base}/{name}"

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop
