"""The audit log is append-only in the database itself (migration 0003, checklist H07): any
connection may add an entry; none may change or remove one, on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DatabaseError

from consultant.db import session_scope
from consultant.review import record_audit

NOW = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)


def entries(engine) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(text("SELECT actor, action FROM audit_entry ORDER BY id"))]


@pytest.mark.parametrize("statement", [
    "UPDATE audit_entry SET actor = 'someone-else@example.com'",
    "DELETE FROM audit_entry",
])
def test_an_entry_can_be_added_but_never_changed_or_removed(db_engine, statement: str) -> None:  # type: ignore[no-untyped-def]
    with session_scope(db_engine) as session:
        record_audit(session, actor="staff@caseconsultant.example", action="reject", now=NOW, detail="no")
    with pytest.raises(DatabaseError, match="append-only"), db_engine.begin() as conn:
        conn.execute(text(statement))
    with session_scope(db_engine) as session:  # adding goes on as before
        record_audit(session, actor="staff@caseconsultant.example", action="login", now=NOW)
    assert entries(db_engine) == [("staff@caseconsultant.example", "reject"), ("staff@caseconsultant.example", "login")]


def test_postgresql_refuses_truncate_too(pg_engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(pg_engine) as session:
        record_audit(session, actor="staff@caseconsultant.example", action="login", now=NOW)
    with pytest.raises(DatabaseError, match="append-only"), pg_engine.begin() as conn:
        conn.execute(text("TRUNCATE audit_entry"))
    assert len(entries(pg_engine)) == 1
