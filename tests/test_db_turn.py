"""SQLite writers of one process take turns on a Python lock (consultant/db.py, `_WriterTurn`):
handed over at COMMIT or ROLLBACK, never kept by a transaction that ended by an error or by a
connection given back to the pool, and never waited for by the thread that holds it."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from sqlalchemy import text

from consultant.db import _WriterTurn, make_engine


@pytest.fixture
def engine(tmp_path: Path):  # type: ignore[no-untyped-def]
    engine = make_engine(f"sqlite:///{tmp_path / 'turns.sqlite3'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE counter (id INTEGER PRIMARY KEY, n INTEGER)"))
        conn.execute(text("INSERT INTO counter VALUES (1, 0)"))
    yield engine
    engine.dispose()


def test_threads_write_in_turn_and_lose_no_update(engine) -> None:  # type: ignore[no-untyped-def]
    inside = threading.Event()
    log: list[str] = []

    def slow_writer() -> None:
        with engine.begin() as conn:
            log.append("A begins")
            inside.set()
            conn.execute(text("UPDATE counter SET n = n + 1"))
            threading.Event().wait(0.2)  # holding the write turn while B asks for it
            log.append("A commits")

    def writer(name: str, times: int) -> None:
        for _ in range(times):
            with engine.begin() as conn:
                conn.execute(text("UPDATE counter SET n = n + 1"))
        log.append(f"{name} done")

    a = threading.Thread(target=slow_writer)
    a.start()
    inside.wait(5)
    b = threading.Thread(target=writer, args=("B", 1))
    b.start()
    a.join()
    b.join()
    assert log == ["A begins", "A commits", "B done"]  # B's transaction waited for A's commit
    many = [threading.Thread(target=writer, args=(f"W{n}", 50)) for n in range(4)]
    for t in many:
        t.start()
    for t in many:
        t.join()
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM counter")).scalar() == 1 + 1 + 4 * 50


def test_the_turn_is_given_back_after_an_error_and_by_an_unfinished_connection(engine) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(RuntimeError), engine.begin() as conn:
        conn.execute(text("UPDATE counter SET n = 5"))
        raise RuntimeError("boom")
    with engine.connect() as conn:  # begun, never committed: the pool's reset rolls it back
        conn.begin()
        conn.execute(text("UPDATE counter SET n = 6"))
        dbapi = conn.connection.driver_connection
        assert dbapi.holds_turn
    assert not dbapi.holds_turn
    done = threading.Event()

    def other_thread() -> None:
        with engine.begin() as conn:
            conn.execute(text("UPDATE counter SET n = 7"))
        done.set()

    threading.Thread(target=other_thread).start()
    assert done.wait(5)  # not the 30 s an abandoned turn would cost
    with engine.connect() as conn:
        assert conn.execute(text("SELECT n FROM counter")).scalar() == 7


def test_the_holder_never_waits_for_itself() -> None:
    turn = _WriterTurn()
    assert turn.take() is True
    assert turn.take() is False  # a transaction begun inside another: SQLite decides, as without the turn
    seen: list[bool] = []
    waiter = threading.Thread(target=lambda: seen.append(turn.take()))
    waiter.start()
    turn.give()
    waiter.join(5)
    assert seen == [True]


def test_a_database_locked_elsewhere_is_sqlalchemys_error_and_frees_the_turn(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from consultant import db

    monkeypatch.setattr(db, "SQLITE_BUSY_TIMEOUT", 0.2)
    path = tmp_path / "locked.sqlite3"
    engine = make_engine(f"sqlite:///{path}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (n INTEGER)"))
    other = sqlite3.connect(path, isolation_level=None)  # another process's writer, as SQLite sees it
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(OperationalError, match="locked"), engine.begin():  # BEGIN IMMEDIATE timed out
            pass
    finally:
        other.rollback()
        other.close()
    with engine.begin() as conn:  # the turn was given back: the next writer goes on
        conn.execute(text("INSERT INTO t VALUES (1)"))
    engine.dispose()
