"""Code load (issue 7, part 6), which also makes the template databases the other parts clone.

The full shipped code set is loaded into a fresh, migrated database with
`consultant.codes.loader.load_codes`: the time, and the database's size
after it (SQLite: the file with its WAL checkpointed; PostgreSQL:
`pg_database_size`). Then the matcher's index is built once (the cold
start-up a worker pays only on its first start) and cached next to the
template for the clones.
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from bench.servers import index_cache_for, new_name, pg_create, pg_size_mb


def load_into(url: str) -> dict:
    from consultant.codes.loader import load_codes
    from consultant.db import make_engine, migrate
    from consultant.match import build_matcher

    engine = make_engine(url)
    try:
        migrate(engine)
        started = time.perf_counter()
        summary = load_codes(engine)
        load_s = time.perf_counter() - started
        started = time.perf_counter()
        build_matcher(engine)
        index_s = time.perf_counter() - started
    finally:
        engine.dispose()
    return {"codes": summary["codes"], "load_s": round(load_s, 2), "index_build_s": round(index_s, 2)}


def sqlite_template(work: Path) -> tuple[Path, dict]:
    path = work / "template.sqlite3"
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
    path.with_suffix(".match-index.pickle").unlink(missing_ok=True)
    figures = load_into(f"sqlite:///{path}")
    # Outside SQLAlchemy: the engine wraps every statement in BEGIN IMMEDIATE, where a checkpoint is refused.
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    figures["size_mb"] = round(path.stat().st_size / 1e6, 1)
    return path, figures


def pg_template() -> tuple[str, Path | None, dict]:
    """A PostgreSQL database with the codes, to clone from; returns its name and index cache."""
    name = new_name("ccbench_tpl")
    url = pg_create(name)
    figures = load_into(url)
    figures["size_mb"] = round(pg_size_mb(name), 1)
    return name, index_cache_for(url), figures
