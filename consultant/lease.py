"""A named lease in the database: only its holder polls the mailbox.

APScheduler 3 runs a job once per process, so several worker processes
would all poll. The lease (one row per name) makes exactly one of them the
poller; the others only answer claimed cases and drain the outbox. The
holder renews it on every poll; if it dies, another takes over once the
lease expires. Taking it is one conditional UPDATE, or an INSERT that loses
cleanly to a concurrent one.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Engine

from consultant.db import session_scope
from consultant.models import Lease


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
        return created is not None


def release_lease(engine: Engine, name: str, *, holder: str) -> None:
    with session_scope(engine) as session:
        session.execute(
            update(Lease)
            .where(Lease.name == name, Lease.holder == holder)
            .values(expires_at=datetime(1970, 1, 1).astimezone())
            .execution_options(synchronize_session=False)
        )
