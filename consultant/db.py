"""Engine and sessions, made on request and never at import.

`make_engine` understands the two databases we support: a SQLite file (the
embedded default) and PostgreSQL (`postgresql+psycopg://`). `migrate` brings
the schema to the newest Alembic revision, creating it on first start.

SQLite takes one writer at a time, and every transaction here begins
IMMEDIATE (it takes the write lock at once). A writer that finds the lock
taken is left by SQLite to sleep and retry (1, 2, 5, 10 ... ms): between the
threads of one process (answering, and the background sender) those sleeps
cost more than the transactions. So the threads of a process take turns on a
Python lock first (`_WriterTurn`), which hands over at the commit; SQLite's
own waiting is left to separate processes.

A commit that finds the write-ahead log over 1,000 pages also copies it back
into the database file and waits for the disk (SQLite's automatic
checkpoint): in `bench.inproc --replay` an eighth of the wall time went
there. `WalCheckpointer` does that copying from a thread of its own every
100 ms instead (its own connection, PASSIVE: it never blocks a reader or a
writer, and SQLite lets the other threads run while it waits for the disk),
so the log stays short and the automatic checkpoint stays a safety net that
busy workers no longer reach.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import orjson
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlmodel import Session, create_engine

log = logging.getLogger(__name__)


def make_engine(url: str, *, echo: bool = False) -> Engine:
    """Build an engine for `url`; SQLite gets WAL and a busy timeout."""
    parsed = make_url(url)
    json_codec = {"json_serializer": _json_dumps, "json_deserializer": orjson.loads}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        turn = _WriterTurn()
        engine = create_engine(url, echo=echo, **json_codec, connect_args={
            "timeout": SQLITE_BUSY_TIMEOUT, "check_same_thread": False, "factory": _turn_connection(turn),
        })
        event.listen(engine, "connect", _sqlite_pragmas)
        event.listen(engine, "begin", lambda conn: _sqlite_begin_immediate(conn, turn))
        return engine
    engine = create_engine(url, echo=echo, **json_codec)
    event.listen(engine, "checkout", lambda dbapi_conn, record, _proxy: _ping_if_idle(engine, dbapi_conn, record))
    event.listen(engine, "checkin", _mark_idle)
    return engine


PING_AFTER_IDLE = 1.0  # seconds a pooled PostgreSQL connection may rest before it is tested on checkout


def _ping_if_idle(engine: Engine, dbapi_conn, record) -> None:  # type: ignore[no-untyped-def]
    """A connection that rested in the pool is tested before use (the server may have restarted
    or dropped it meanwhile); a dead one is replaced by the pool. One that was in use a moment
    ago is not: a ping before every transaction was one round trip in eight. A connection
    lost all the same fails its statement, which stops the pass (see `pipeline._answer_one`)."""
    idle_since = record.info.get("idle_since")
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE:
        return
    try:
        engine.dialect.do_ping(dbapi_conn)
    except Exception as exc:  # noqa: BLE001 - any failure: the pool connects afresh
        raise DisconnectionError("the pooled connection failed its ping") from exc


def _mark_idle(_dbapi_conn, record) -> None:  # type: ignore[no-untyped-def]
    record.info["idle_since"] = time.monotonic()


def _json_dumps(value: object) -> str:
    """JSON columns (a case's codes and findings, its flags) are written on every answer:
    orjson writes them several times faster than the standard library."""
    return orjson.dumps(value, option=orjson.OPT_NON_STR_KEYS).decode()


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    # Let SQLAlchemy, not pysqlite, decide when transactions begin, so that
    # BEGIN IMMEDIATE below takes the write lock at the start of each one.
    dbapi_conn.isolation_level = None
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


SQLITE_BUSY_TIMEOUT = 30.0  # seconds a writer waits for another process's transaction


class _WriterTurn:
    """One write transaction at a time among the threads of this process.

    Taken before BEGIN IMMEDIATE, given back after COMMIT or ROLLBACK (by the
    connection class below). A thread that already holds it (a transaction
    begun inside another) does not wait for itself: SQLite decides, as it
    would without the turn. Nor does anyone wait longer than SQLite would."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._owner: int | None = None

    def take(self) -> bool:
        me = threading.get_ident()
        if self._owner == me or not self._lock.acquire(timeout=SQLITE_BUSY_TIMEOUT):
            return False
        self._owner = me
        return True

    def give(self) -> None:
        self._owner = None
        self._lock.release()


def _turn_connection(turn: _WriterTurn) -> type[sqlite3.Connection]:
    class TurnConnection(sqlite3.Connection):
        """A sqlite3 connection that gives the writer's turn back when its transaction ends."""

        holds_turn = False

        def commit(self) -> None:
            self._ending(super().commit)

        def rollback(self) -> None:
            self._ending(super().rollback)

        def close(self) -> None:
            self._ending(super().close)

        def _ending(self, end: Callable[[], None]) -> None:
            try:
                end()
            finally:
                if self.holds_turn:
                    self.holds_turn = False
                    turn.give()

    return TurnConnection


def _sqlite_begin_immediate(conn, turn: _WriterTurn) -> None:  # type: ignore[no-untyped-def]
    # SQLite ignores FOR UPDATE; an immediate transaction serialises writers,
    # which keeps claims and quota counts exact across worker processes. Sent on the
    # driver's connection (a third of what a transaction cost through exec_driver_sql);
    # an error still comes out as SQLAlchemy's, as from any statement.
    dbapi = conn.connection.driver_connection
    held = turn.take()
    try:
        try:
            dbapi.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            raise DBAPIError.instance("BEGIN IMMEDIATE", (), exc, sqlite3.Error) from exc
    except BaseException:
        if held:
            turn.give()
        raise
    dbapi.holds_turn = held


class WalCheckpointer:
    """Checkpoint a SQLite database's write-ahead log from a background thread (see above)."""

    def __init__(self, engine: Engine, *, every: float = 0.1) -> None:
        self.every = every
        database = engine.url.database if is_sqlite(engine) else None
        self.path = database if database and database != ":memory:" else None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="wal-checkpoint", daemon=True)
        self.checkpoints = 0

    def start(self) -> WalCheckpointer:
        if self.path is not None:  # nothing to do for PostgreSQL or an in-memory database
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(10.0)

    def _run(self) -> None:
        conn = sqlite3.connect(self.path, timeout=SQLITE_BUSY_TIMEOUT, isolation_level=None,
                               check_same_thread=False)
        try:
            while not self._stop.wait(self.every):
                try:
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                    self.checkpoints += 1
                except sqlite3.Error as exc:  # the next commit's automatic checkpoint covers for it
                    log.warning("WAL checkpoint failed (%s)", type(exc).__name__)
        finally:
            conn.close()


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


Db = Session | Connection  # what the answering helpers run in: an ORM session's transaction, or Core's


def connection_of(db: Db) -> Connection:
    """The Connection of `db`'s transaction (a session's, after flushing what the ORM holds)."""
    if isinstance(db, Session):
        db.flush()
        return db.connection()
    return db


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest revision (Alembic)."""
    from consultant.migrations import upgrade_to_head

    upgrade_to_head(engine)
