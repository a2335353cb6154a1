"""RECORD: the case table's writes: record a message, find it again, close it.

A case is keyed by (mailbox, UIDVALIDITY, UID); Message-ID plus a hash of
the raw bytes is the second key, which stops a re-answer when the same
message reappears under new UIDs (a UIDVALIDITY reset, a copy back into the
inbox). Every message is recorded before anything is sent.

Answering is shared out by claims: `claim_cases` marks up to N `received`
cases as this worker's for a while, in one statement (`FOR UPDATE SKIP
LOCKED` on PostgreSQL, so workers never wait on each other's rows; on
SQLite the IMMEDIATE transaction serialises the claim). A worker that dies
leaves its claim to expire, and another takes the case; on the same host a
claim whose holder is provably dead is free at once (`lease.dead_holders`).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from consultant.inbox import MailRef
from consultant.lease import claim_rows
from consultant.models import Case, CaseStatus

FINISHED = {
    CaseStatus.answered,
    CaseStatus.over_quota,
    CaseStatus.ignored,
    CaseStatus.rejected,
    CaseStatus.quarantined,
    CaseStatus.failed,
}


def find_case(session: Session, ref: MailRef) -> Case | None:
    return session.exec(
        select(Case).where(Case.mailbox == ref.mailbox, Case.uidvalidity == ref.uidvalidity, Case.uid == ref.uid)
    ).first()


def find_duplicate(session: Session, *, message_id: str, content_hash: str, ref: MailRef) -> Case | None:
    """An earlier, finished case for the very same message under another key.

    Same Message-ID and same bytes; without a Message-ID, the same bytes alone (P04).
    """
    if not content_hash:
        return None
    return session.exec(
        select(Case)
        .where(
            Case.message_id == message_id,
            Case.content_hash == content_hash,
            Case.status.in_([s.value for s in FINISHED]),  # type: ignore[attr-defined]
        )
        .where((Case.mailbox != ref.mailbox) | (Case.uidvalidity != ref.uidvalidity) | (Case.uid != ref.uid))
    ).first()


def record_case(
    session: Session,
    ref: MailRef,
    *,
    now: datetime,
    status: CaseStatus = CaseStatus.received,
    reason: str = "",
    **fields: Any,
) -> Case | None:
    """Insert the case for `ref`; None if another worker recorded it first."""
    case = Case(
        mailbox=ref.mailbox,
        uidvalidity=ref.uidvalidity,
        uid=ref.uid,
        status=status,
        reason=reason,
        received_at=now,
        updated_at=now,
        **fields,
    )
    try:
        with session.begin_nested():
            session.add(case)
            session.flush()
    except IntegrityError:
        return None
    return case


POISON_AFTER = 3  # attempts that never finished before a case is quarantined as `poison` (D03)
_ATTEMPT = "attempt"


def start_attempt(case: Case) -> None:
    """Mark that a worker starts answering `case`; committed before the work, removed by close_case."""
    case.flags = [*case.flags, _ATTEMPT]


def attempts_started(case: Case) -> int:
    """Attempts at answering that never finished (the worker died, or its claim ran out)."""
    return case.flags.count(_ATTEMPT)


def close_case(
    session: Session, case: Case, status: CaseStatus, *, now: datetime, reason: str = "", **fields: Any
) -> None:
    case.flags = [f for f in case.flags if f != _ATTEMPT]
    case.status = status
    case.reason = reason or case.reason
    case.updated_at = now
    for name, value in fields.items():
        setattr(case, name, value)
    session.add(case)


def claim_cases(engine: Engine, *, holder: str, limit: int, ttl: timedelta, now: datetime) -> list[int]:
    """Claim up to `limit` received cases for `holder`; returns their ids, oldest first."""
    return claim_rows(
        engine, Case, Case.status == CaseStatus.received, holder=holder, limit=limit, ttl=ttl, now=now
    )


def still_mine(case: Case, *, holder: str, now: datetime) -> bool:
    """The claim is ours and unexpired, and the case still waits for an answer (fencing)."""
    return (
        case.status == CaseStatus.received
        and case.claimed_by == holder
        and case.claimed_until is not None
        and aware(case.claimed_until) >= now
    )


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
