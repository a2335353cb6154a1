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


MINI_CATEGORIES = ("A00", "E11", "G35", "I10", "I21", "J06", "N20", "R10", "S52", "S06", "T36", "T07", "Z00")


def mini_codes_db(dest, categories=MINI_CATEGORIES, pcs_per_release: int = 300):
    """A small copy of codes_db/ (same formats): a few ICD-10-CM categories, some PCS, the samples."""
    import gzip
    import json
    from pathlib import Path

    from consultant.codes import sources

    src = sources.data_dir()
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    with gzip.open(src / sources.CM_FILE, "rt", encoding="utf-8") as fh:
        header = fh.readline()
        nodes = [json.loads(line) for line in fh]
    keep = [n for n in nodes if n["kind"] in ("category", "code") and n["code"].startswith(categories)]
    chapters = {n["chapter"] for n in keep}
    blocks = {n["block"] for n in keep}
    heads = [n for n in nodes if (n["kind"] == "chapter" and n["code"] in chapters) or (n["kind"] == "block" and n["code"] in blocks)]
    with gzip.open(dest / sources.CM_FILE, "wt", encoding="utf-8") as fh:
        fh.write(header)
        for n in heads + keep:
            fh.write(json.dumps(n) + "\n")
    with gzip.open(src / sources.PCS_FILE, "rt", encoding="utf-8") as fh:
        lines = fh.readlines()
    per: dict[str, int] = {}
    out = [lines[0]]
    for line in lines[1:]:
        rel = line.split("\t")[3]
        if per.get(rel, 0) < pcs_per_release or line.startswith(("0SG60", "0DTJ")):
            per[rel] = per.get(rel, 0) + 1
            out.append(line)
    with gzip.open(dest / sources.PCS_FILE, "wt", encoding="utf-8") as fh:
        fh.writelines(out)
    for name in (sources.CPT_SAMPLE_FILE, sources.HCPCS_SAMPLE_FILE, sources.MOD_FILE):
        (dest / name).write_bytes((src / name).read_bytes())
    return dest
