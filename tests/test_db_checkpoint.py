"""The write-ahead log is checkpointed by a thread of its own (consultant/db.py, `WalCheckpointer`),
so commits never have to: the log stays as short as what was written between two checkpoints."""

from __future__ import annotations

import time
from pathlib import Path

from sqlalchemy import event, text

from consultant.db import WalCheckpointer, make_engine

ROUNDS = 8
ROUND_ROWS = 64  # rows of 4 KB, one commit each


def writing_engine(path: Path):  # type: ignore[no-untyped-def]
    """An engine whose commits never checkpoint (so only the thread can)."""
    engine = make_engine(f"sqlite:///{path}")

    @event.listens_for(engine, "connect")
    def _no_automatic_checkpoint(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
        dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")

    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE blob (id INTEGER PRIMARY KEY, body BLOB)"))
    return engine


def write_round(engine, n: int) -> None:  # type: ignore[no-untyped-def]
    for _ in range(ROUND_ROWS):
        with engine.begin() as conn:
            conn.execute(text("INSERT INTO blob (body) VALUES (:body)"), {"body": bytes([n]) * 4096})


def wal_size(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def wait_for_checkpoints(checkpoints: WalCheckpointer, count: int) -> None:
    deadline = time.monotonic() + 10
    while checkpoints.checkpoints < count:
        assert time.monotonic() < deadline, "no checkpoint in 10 s"
        time.sleep(0.01)


def log_size_after_writing(path: Path, *, checkpointing: bool) -> int:
    engine = writing_engine(path)
    checkpoints = WalCheckpointer(engine, every=0.01)
    if checkpointing:
        checkpoints.start()
    try:
        for n in range(ROUNDS):
            write_round(engine, n)
            if checkpointing:  # two more checkpoints: one of them began after this round's commits
                wait_for_checkpoints(checkpoints, checkpoints.checkpoints + 2)
    finally:
        checkpoints.stop()
    with engine.connect() as conn:  # measured before the last connection closes (which checkpoints)
        assert conn.execute(text("SELECT count(*) FROM blob")).scalar() == ROUNDS * ROUND_ROWS
        size = wal_size(path)
    engine.dispose()
    return size


def test_the_log_stays_short_while_the_thread_checkpoints(tmp_path: Path) -> None:
    everything = log_size_after_writing(tmp_path / "control.sqlite3", checkpointing=False)
    assert everything > ROUNDS * ROUND_ROWS * 4096  # without the thread the log holds every round
    short = log_size_after_writing(tmp_path / "checkpointed.sqlite3", checkpointing=True)
    assert short <= 2 * everything / ROUNDS  # with it the log restarts after each checkpoint


def test_nothing_to_checkpoint_without_a_database_file() -> None:
    for url in ("sqlite://", "postgresql+psycopg://postgres@127.0.0.1:5432/test"):
        checkpoints = WalCheckpointer(make_engine(url)).start()
        assert checkpoints.path is None
        checkpoints.stop()
        assert checkpoints.checkpoints == 0
