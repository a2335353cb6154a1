"""A named lease in the database: only its holder polls the mailbox.

APScheduler 3 runs a job once per process, so several worker processes
would all poll. The lease (one row per name) makes exactly one of them the
poller; the others only answer claimed cases and drain the outbox. The
holder renews it on every poll; if it dies, another takes over once the
lease expires. Taking it is one conditional UPDATE, or an INSERT that loses
cleanly to a concurrent one.

A holder that is provably dead does not have to be waited out. Worker ids
carry the host, the pid, the pid namespace and the process start time; a
worker on the same host and in the same pid namespace can see that this pid
is gone (or now belongs to another process, or is a zombie), and takes the
lease at once. The same test frees the case and outbox claims of dead
workers (`dead_holders`), so a worker restarted after `kill -9` resumes
within one poll instead of after the TTLs. Anything it cannot prove dead
(another host, another namespace, no /proc) keeps its lease until expiry.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from functools import lru_cache
from typing import Any

from sqlalchemy import ColumnElement, Integer, Table, bindparam, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine
from sqlmodel import select

from consultant.db import session_scope
from consultant.models import Lease
from consultant.prepared import Prepared, typed_param

log = logging.getLogger(__name__)


def acquire_lease(engine: Engine, name: str, *, holder: str, ttl: timedelta, now: datetime) -> bool:
    """Take or renew the lease `name` for `holder`; False while someone else holds it."""
    with session_scope(engine) as session:
        renewed = session.execute(
            update(Lease)
            .where(Lease.name == name, (Lease.holder == holder) | (Lease.expires_at < now))
            .values(holder=holder, expires_at=now + ttl)
            .execution_options(synchronize_session=False)
        )
        if renewed.rowcount == 1:  # type: ignore[attr-defined]
            return True
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        created = session.execute(
            insert(Lease)
            .values(name=name, holder=holder, expires_at=now + ttl)
            .on_conflict_do_nothing()
            .returning(Lease.name)
        ).first()
        if created is not None:
            return True
        current = session.get(Lease, name)
        if current is None or not holder_is_dead(current.holder):
            return False
        taken = session.execute(
            update(Lease)
            .where(Lease.name == name, Lease.holder == current.holder)
            .values(holder=holder, expires_at=now + ttl)
            .execution_options(synchronize_session=False)
        )
        if taken.rowcount == 1:  # type: ignore[attr-defined]
            log.info("lease %s taken over from a worker that is no longer running", name)
            return True
        return False


def release_lease(engine: Engine, name: str, *, holder: str) -> None:
    with session_scope(engine) as session:
        session.execute(
            update(Lease)
            .where(Lease.name == name, Lease.holder == holder)
            .values(expires_at=datetime(1970, 1, 1).astimezone())
            .execution_options(synchronize_session=False)
        )


# -- worker ids and dead holders ---------------------------------------------------
def worker_identity() -> str:
    """`host:pid:nonce:pidns.start`; the last part lets a worker on this host prove us dead."""
    proof = ""
    stat = _proc_stat(os.getpid())
    namespace = _pid_namespace()
    if stat is not None and namespace:
        proof = f"{namespace}.{stat[1]}"
    return f"{socket.gethostname()[:50]}:{os.getpid()}:{uuid.uuid4().hex[:6]}:{proof}"


def holder_is_dead(holder: str | None) -> bool:
    """True only when `holder` ran on this host, in our pid namespace, and is gone."""
    parts = (holder or "").rsplit(":", 3)
    if len(parts) != 4 or not parts[3] or not parts[1].isdigit():
        return False
    host, pid, _nonce, proof = parts
    namespace, _, started = proof.partition(".")
    if host != socket.gethostname()[:50] or namespace != _pid_namespace():
        return False
    stat = _proc_stat(int(pid))
    if stat is None:
        return True
    state, start = stat
    return start != started or state in ("Z", "X")


def dead_holders(holders: Iterable[str | None]) -> list[str]:
    return sorted({h for h in holders if h and holder_is_dead(h)})


@lru_cache(maxsize=1)
def _pid_namespace() -> str:
    try:
        link = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return ""
    return "".join(ch for ch in link if ch.isdigit())


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks) of `pid`, or None when there is no such process."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            text = fh.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return ("?", "")  # exists but unreadable: never call it dead
    fields = text.rpartition(")")[2].split()
    return (fields[0], fields[19]) if len(fields) > 19 else ("?", "")


class Claim:
    """The claim statements for one kind of row, built once: `waiting` says which rows wait
    for a worker, and may use the bind parameter `p_now` (the caller's clock).

    The usual claim (no dead holder to free) runs as two prepared statements (`prepared.py`):
    the holders of live claims, then the UPDATE. Only when a holder is provably dead does it
    fall back to a statement built for those holders."""

    def __init__(self, table: Table, waiting: ColumnElement[bool]) -> None:
        self.table = table
        self.waiting = waiting
        self._held = Prepared(
            select(table.c.claimed_by)
            .where(waiting, table.c.claimed_until >= typed_param("p_now", table.c.claimed_until))
            .distinct()
        )
        self._claim = Prepared(self._update(self._free()))

    def run(self, engine: Engine, *, holder: str, limit: int, ttl: timedelta, now: datetime) -> list[int]:
        """Claim up to `limit` waiting rows that nobody holds (or whose claim expired, or
        whose holder is provably dead) for `holder`; returns their ids, oldest first. One UPDATE
        over a `FOR UPDATE SKIP LOCKED` subquery on PostgreSQL, so workers never wait on each
        other's rows; on SQLite the IMMEDIATE transaction serialises the claim."""
        params = {"p_now": now, "p_limit": limit, "p_holder": holder, "p_until": now + ttl}
        with engine.begin() as conn:
            # the claiming worker is alive: its own claims (chunks claimed ahead) need no /proc read
            dead = dead_holders(h for h in self._held.run(conn, params).scalars() if h != holder)
            if dead:
                rows = conn.execute(self._update(self._free(dead)), params).scalars().all()
            else:
                rows = self._claim.run(conn, params).scalars()
        return sorted(rows)

    def release(self, engine: Engine, ids: list[int], *, holder: str, now: datetime) -> None:
        """Give back `holder`'s claims on those of `ids` still waiting, so that the next poll
        (any worker) takes them at once instead of after the claim's TTL."""
        if not ids:
            return
        table = self.table
        with engine.begin() as conn:
            conn.execute(
                update(table)
                .where(table.c.id.in_(ids), table.c.claimed_by == holder, self.waiting)
                .values(claimed_until=None),
                {"p_now": now},
            )

    def _free(self, dead: Sequence[str] = ()) -> ColumnElement[bool]:
        """Rows nobody holds: never claimed, claim expired, or held by one of `dead`."""
        until = self.table.c.claimed_until
        free = until.is_(None) | (until < typed_param("p_now", until))
        return free | self.table.c.claimed_by.in_(dead) if dead else free

    def _update(self, free: ColumnElement[bool]) -> Any:
        """UPDATE the oldest `p_limit` waiting rows that `free` admits; returns their ids."""
        table = self.table
        oldest = (
            select(table.c.id)
            .where(self.waiting, free)
            .order_by(table.c.id)
            .limit(bindparam("p_limit", type_=Integer))
            .with_for_update(skip_locked=True)
        )
        return (
            update(table)
            .where(table.c.id.in_(oldest.scalar_subquery()))
            .values(claimed_by=typed_param("p_holder", table.c.claimed_by),
                    claimed_until=typed_param("p_until", table.c.claimed_until))
            .returning(table.c.id)
        )

