"""Load the shipped code data into the `code` and `code_release` tables.

    load_codes(engine)            load or refresh everything shipped in codes_db/
    ensure_codes_loaded(engine)   the same, only when a shipped release is missing

Each dataset (one system + release) is replaced in its own transaction:
its old rows are deleted and the new ones bulk-inserted with SQLAlchemy Core
`insert()` (executemany), so a re-run updates and never duplicates. A CPT or
HCPCS file a customer imported (not a sample) is never overwritten by the
shipped sample. The tables must exist (migrations or `create_all`); the
full-text index is (re)built here because its form depends on the backend.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import delete, func, insert, select
from sqlalchemy.engine import Connection, Engine

from consultant.codes import search, sources
from consultant.codes.plain import plain_for_rows
from consultant.models import Code, CodeRelease

CHUNK = 5000


class Progress:
    """A one-line progress display on stderr (silent unless enabled)."""

    def __init__(self, enabled: bool, total: int) -> None:
        self.enabled, self.total, self.done = enabled, max(total, 1), 0
        self.label = ""

    def step(self, n: int, label: str = "") -> None:
        self.done += n
        self.label = label or self.label
        if self.enabled:
            width = 30
            filled = int(width * self.done / self.total)
            bar = "#" * filled + "-" * (width - filled)
            sys.stderr.write(f"\r[{bar}] {self.done:>7,}/{self.total:,} {self.label[:40]:<40}")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
            sys.stderr.flush()


def _customer_release(conn: Connection, system: str) -> str | None:
    """The name of a non-sample release of `system` already loaded, if any."""
    t = CodeRelease.__table__
    row = conn.execute(select(t.c.release).where(t.c.system == system, t.c.sample.is_(False))).first()
    return row[0] if row else None


def replace_dataset(conn: Connection, ds: sources.Dataset, *, wipe_system: bool, progress: Progress | None = None) -> int:
    """Delete the rows `ds` supersedes and insert its rows; returns rows inserted.

    wipe_system: delete every row of the system (a new full release replaces
    all older ones); otherwise only rows of the same release are replaced.
    """
    code_t, rel_t = Code.__table__, CodeRelease.__table__
    if wipe_system:
        search.forget_rows(conn, "system = :s", {"s": ds.system})
        conn.execute(delete(code_t).where(code_t.c.system == ds.system))
        conn.execute(delete(rel_t).where(rel_t.c.system == ds.system))
    else:
        search.forget_rows(conn, "system = :s AND release = :r", {"s": ds.system, "r": ds.release})
        conn.execute(delete(code_t).where(code_t.c.system == ds.system, code_t.c.release == ds.release))
        conn.execute(delete(rel_t).where(rel_t.c.system == ds.system, rel_t.c.release == ds.release))
    rows = ds.rows
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        conn.execute(insert(code_t), chunk)
        if progress is not None:
            progress.step(len(chunk))
    ids = dict(
        conn.execute(
            select(code_t.c.code, code_t.c.id).where(code_t.c.system == ds.system, code_t.c.release == ds.release)
        ).all()
    )
    search.index_rows(
        conn, [(ids[r["code"]], search.index_text(r["official"], r["plain"], r["notes"])) for r in rows]
    )
    conn.execute(
        insert(rel_t),
        [
            {
                "system": ds.system,
                "release": ds.release,
                "source": ds.source[:200],
                "code_count": len(rows),
                "billable_count": ds.billable_count,
                "sample": ds.sample,
                "loaded_at": datetime.now(UTC),
            }
        ],
    )
    return len(rows)


def shipped_datasets(directory: Path | None = None) -> Iterator[sources.Dataset]:
    """Every dataset in codes_db/ (or `directory`), plain-language descriptions filled in.

    One at a time, so that only one release is held in memory.
    """
    for ds in sources.read_all(directory):
        plain_for_rows(ds.system, ds.rows)
        yield ds


def load_codes(engine: Engine, *, progress: bool = False, directory: Path | None = None) -> dict:
    """Load (or refresh) every shipped code set; returns a summary.

    directory: where the shipped data is (default: codes_db/, see sources.data_dir).
    progress: show a progress bar per release on stderr.

    Summary: {"seconds": float, "releases": [{"system", "release", "codes",
    "billable", "skipped"}], "codes": total rows in `code`}.
    """
    started = time.monotonic()
    summary: dict = {"releases": []}
    pcs_first = True
    for number, ds in enumerate(shipped_datasets(directory), start=1):
        bar = Progress(progress, len(ds.rows))
        label = f"[{number}] {ds.release}"
        with engine.begin() as conn:
            skipped = None
            if ds.sample and ds.system in (sources.CPT, sources.HCPCS):
                skipped = _customer_release(conn, ds.system)
            if skipped:
                bar.step(len(ds.rows), f"{label}: kept {skipped}")
            else:
                # ICD-10-PCS ships as two releases (FY2024 + FY2025 section 0):
                # wipe the system once, before the first of them.
                wipe = ds.system != sources.PCS or pcs_first
                if ds.system == sources.PCS:
                    pcs_first = False
                bar.label = label
                replace_dataset(conn, ds, wipe_system=wipe, progress=bar)
        bar.close()
        summary["releases"].append(
            {
                "system": ds.system,
                "release": ds.release,
                "codes": len(ds.rows),
                "billable": ds.billable_count,
                "skipped": f"customer release {skipped!r} kept" if skipped else None,
            }
        )
    search.rebuild_index(engine)  # picks up anything imported or changed outside this run
    with engine.connect() as conn:
        summary["codes"] = conn.execute(select(func.count()).select_from(Code.__table__)).scalar_one()
    summary["seconds"] = round(time.monotonic() - started, 2)
    return summary


def missing_releases(engine: Engine, directory: Path | None = None) -> list[tuple[str, str]]:
    """Shipped (system, release) pairs not yet recorded in `code_release`."""
    from consultant.codes.sources import shipped_releases

    t = CodeRelease.__table__
    with engine.connect() as conn:
        have = {(s, r) for s, r in conn.execute(select(t.c.system, t.c.release))}
        customer = {s for s, r, sample in conn.execute(select(t.c.system, t.c.release, t.c.sample)) if not sample}
    return [
        (s, r)
        for s, r, sample in shipped_releases(directory)
        if (s, r) not in have and not (sample and s in customer)
    ]


def ensure_codes_loaded(engine: Engine, *, progress: bool = False, directory: Path | None = None) -> dict | None:
    """Load the shipped code sets if any shipped release is missing; else do nothing.

    Returns the `load_codes` summary, or None when everything was present.
    """
    if not missing_releases(engine, directory):
        return None
    return load_codes(engine, progress=progress, directory=directory)
