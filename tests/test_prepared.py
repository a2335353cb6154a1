"""Prepared statements (consultant/prepared.py) read and write exactly what
`Connection.execute` reads and writes, on SQLite and PostgreSQL: every hot
statement of the answering and sending paths is run both ways, each in a
transaction rolled back afterwards, and the rows returned, the row counts and
the tables afterwards must be equal."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlmodel import Session

from consultant import cases, outbox, pipeline, quota, replies
from consultant.models import Account, Case, CaseStatus, Lease, Outbox, OutboxStatus, Tier
from consultant.prepared import Prepared

NOW = datetime(2026, 11, 23, 9, 30, 15, 123456, tzinfo=UTC)
CASE = Case.__table__  # type: ignore[attr-defined]
OUTBOX = Outbox.__table__  # type: ignore[attr-defined]
ACCOUNT = Account.__table__  # type: ignore[attr-defined]


def _seed(engine) -> tuple[int, int]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        case = Case(
            mailbox="INBOX", uidvalidity=7, uid=1, sender="pat@example.org", sender_name="Pat", subject="HTN?",
            question="dx code for HTN", reference_ids=["<a@x>"], raw=b"raw \x00\xff bytes", kind="question",
            flags=["attempt"], claimed_by="w1", claimed_until=NOW + timedelta(minutes=5), received_at=NOW,
            updated_at=NOW,
        )
        session.add(case)
        session.add(Account(email="old@example.org", tier=Tier.free, answered=2, extra_answers=3,
                            created_at=NOW))
        session.flush()
        row = Outbox(case_id=case.id, message_id="<r1@consultant>", recipient="pat@example.org", raw=b"reply",
                     claimed_by="w1", next_attempt_at=NOW, created_at=NOW - timedelta(minutes=30))
        session.add(row)
        session.commit()
        return case.id, row.id  # type: ignore[return-value]


def _tables(conn) -> dict[str, list[tuple]]:  # type: ignore[no-untyped-def]
    """Every row of the three tables, without the ids of new rows (a PostgreSQL sequence is not
    rolled back: the second way's new row gets the next number)."""
    columns = {CASE: list(CASE.c), OUTBOX: [c for c in OUTBOX.c if c.name != "id"],
               ACCOUNT: [c for c in ACCOUNT.c if c.name != "id"]}
    return {
        t.name: [tuple(r) for r in conn.execute(select(*cols).order_by(*t.primary_key.columns)).all()]
        for t, cols in columns.items()
    }


def _both_ways(engine, statement, params):  # type: ignore[no-untyped-def]
    outcomes = []
    for way in ("execute", "prepared"):
        with engine.connect() as conn, conn.begin() as transaction:
            if way == "execute":
                result = conn.execute(statement, params)
                returns_rows = result.returns_rows
                rows = [tuple(r) for r in result.all()] if result.returns_rows else []
                names = list(result.keys()) if result.returns_rows else []
            else:
                got = Prepared(statement).run(conn, params)
                rows = [tuple(r) for r in got.all()]
                names = list(got.rows[0]._fields) if got.rows else names
            # a row count is read for the rows a statement changed (a SELECT's is the driver's guess)
            changed = (result.rowcount if way == "execute" else got.rowcount) if not returns_rows else None
            outcomes.append((rows, changed, names, _tables(conn)))
            transaction.rollback()
    return outcomes


def _statements(case_id: int, outbox_id: int):  # type: ignore[no-untyped-def]
    policy = quota.QuotaPolicy()
    later = NOW + timedelta(seconds=1)
    yield cases._READ_ATTEMPT.statement, {"p_id": case_id}
    yield cases._SET_FLAGS.statement, {"p_id": case_id, "p_flags": ["attempt", "attempt"]}
    yield cases._POISON.statement, {"p_id": case_id, "p_now": later, "p_flags": []}
    yield cases._FINISH.statement, {
        "p_id": case_id, "p_holder": "w1", "p_claim_valid_at": later, "p_status": CaseStatus.answered,
        "p_reason": "", "p_now": later, "p_flags": ["seen"], "p_confidence": 0.75,
        "p_codes": [{"code": "I10", "score": 0.9, "replaced_by": []}], "p_findings": [],
    }
    yield cases._FINISH.statement, {  # the claim is someone else's: nothing changes
        "p_id": case_id, "p_holder": "w2", "p_claim_valid_at": later, "p_status": CaseStatus.answered,
        "p_reason": "", "p_now": later, "p_flags": [], "p_confidence": 0.0, "p_codes": [], "p_findings": [],
    }
    yield outbox._READ_FOR_SEND.statement, {"p_id": outbox_id}
    yield outbox._MARK_SENDING.statement, {"p_id": outbox_id, "p_now": later}
    yield outbox._MARK_SENT.statement, {"p_id": outbox_id, "p_now": later}
    yield outbox._CASE_REPLIED.statement, {"p_id": case_id, "p_now": later}
    yield pipeline._SENT_TO.statement, {"p_to": "pat@example.org", "p_since": NOW - timedelta(days=1)}
    yield pipeline._SENT_TO.statement, {"p_to": "pat@example.org", "p_since": NOW}
    for name in ("sqlite", "postgresql"):
        yield name, {"p_email": "new@example.org", "p_now": later}
        yield name, {"p_email": "old@example.org", "p_now": later}
    yield replies._NEW_REPLY.statement, {
        "case_id": case_id, "message_id": "<r2@consultant>", "recipient": "pat@example.org", "raw": b"MIME",
        "status": OutboxStatus.held, "next_attempt_at": later, "created_at": later, "attempts": 0, "last_error": "",
        "claimed_by": None, "claimed_until": None, "sending_since": None, "sent_at": None,
    }
    claim = {"p_now": later, "p_limit": 5, "p_holder": "w3", "p_until": later + timedelta(minutes=5)}
    for claims in (cases._CLAIM, outbox._CLAIM):
        yield claims._held.statement, claim
        yield claims._claim.statement, claim
        yield claims._claim.statement, {**claim, "p_limit": 0}
        yield claims._claim.statement, {**claim, "p_now": later + timedelta(minutes=10)}  # w1's claim ran out
    yield quota._charge_statement(policy), {"p_email": "old@example.org"}
    yield quota._charge_statement(policy), {"p_email": "nobody@example.org"}


def test_the_same_rows_and_tables_both_ways(db_engine):
    case_id, outbox_id = _seed(db_engine)
    for statement, params in _statements(case_id, outbox_id):
        if isinstance(statement, str):  # the upsert is written per dialect
            if statement != db_engine.dialect.name:
                continue
            statement = quota._ENSURE_AND_LOCK[statement].statement
        by_execute, by_prepared = _both_ways(db_engine, statement, params)
        assert by_prepared == by_execute, statement


def test_rows_read_by_column_name(db_engine):
    case_id, _ = _seed(db_engine)
    with db_engine.begin() as conn:
        row = cases._READ_ATTEMPT.run(conn, {"p_id": case_id}).first()
        assert row.status == CaseStatus.received and row.raw == b"raw \x00\xff bytes"
        assert row.reference_ids == ["<a@x>"] and cases.aware(row.claimed_until) == NOW + timedelta(minutes=5)
        assert cases._READ_ATTEMPT.run(conn, {"p_id": case_id + 99}).first() is None


def test_driver_errors_come_out_as_sqlalchemy_errors(engine):
    _, outbox_id = _seed(engine)
    broken = Prepared(update(OUTBOX).where(OUTBOX.c.id == bindparam("p_id")).values(recipient=None))
    with engine.begin() as conn, pytest.raises(IntegrityError):  # NOT NULL, raised as SQLAlchemy raises it
        broken.run(conn, {"p_id": outbox_id})
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE lease")
        with pytest.raises(OperationalError):  # what the poll treats as the database being unavailable
            Prepared(select(Lease.__table__.c.name)).run(conn, {})


def test_refuses_what_it_would_send_differently(engine):
    with engine.begin() as conn:
        with pytest.raises(ValueError, match="Python-side column defaults"):
            Prepared(insert(OUTBOX).values(message_id=bindparam("m"))).run(conn, {"m": "<x@y>"})
        with pytest.raises(ValueError, match="expanding"):
            Prepared(select(CASE.c.id).where(CASE.c.id.in_(bindparam("ids", expanding=True)))).run(conn, {"ids": [1]})
    with engine.connect() as conn, pytest.raises(RuntimeError, match="inside the caller's transaction"):
        Prepared(select(CASE.c.id)).run(conn, {})


def test_status_values_written_as_the_orm_reads_them(db_engine):
    _, outbox_id = _seed(db_engine)
    with db_engine.begin() as conn:
        outbox._MARK_SENT.run(conn, {"p_id": outbox_id, "p_now": NOW})
    with Session(db_engine) as session:
        row = session.get(Outbox, outbox_id)
        assert row.status == OutboxStatus.sent and row.attempts == 1 and row.sending_since is None
        assert cases.aware(row.sent_at) == NOW
