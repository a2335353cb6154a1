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
import subprocess
import sys
import time
from pathlib import Path

from bench.servers import index_cache_for, new_name, pg_create, pg_size_mb


def load_into(url: str) -> dict:
    from consultant.codes.loader import load_codes
    from consultant.db import make_engine, migrate

    engine = make_engine(url)
    try:
        migrate(engine)
        started = time.perf_counter()
        summary = load_codes(engine)
        load_s = time.perf_counter() - started
    finally:
        engine.dispose()
    index_s, index_mb = _build_index_alone(url)
    return {"codes": summary["codes"], "load_s": round(load_s, 2), "index_build_s": index_s,
            "index_build_peak_mb": index_mb}


_BUILD = """
import sys, time
from consultant.db import make_engine
from consultant.match import build_matcher
from bench.procs import peak_rss_mb
started = time.perf_counter()
build_matcher(make_engine(sys.argv[1]))
print(round(time.perf_counter() - started, 2), peak_rss_mb())
"""


def _build_index_alone(url: str) -> tuple[float, float]:
    """The first build of the matcher's index (and its cache), in a process of its own, as a
    worker's match helper makes it on a first start: its time and the process's peak RSS."""
    root = Path(__file__).resolve().parent.parent
    out = subprocess.run([sys.executable, "-c", _BUILD, url], cwd=root, capture_output=True, text=True, check=True)
    seconds, peak = out.stdout.split()[-2:]
    return float(seconds), float(peak)


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
