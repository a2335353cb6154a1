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

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import update
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
CASE = Case.__table__  # type: ignore[attr-defined]


class ClaimLost(Exception):
    """The claim expired or moved to another worker before our commit: roll back (fencing)."""


@dataclass(frozen=True)
class Attempt:
    """A claimed case a worker has started to answer: what intake kept of the message (so
    it is not parsed again), the raw bytes (commands are parsed again), the flags it wrote."""

    id: int
    raw: bytes
    flags: tuple[str, ...]
    kind: str = "question"
    question: str = ""
    sender: str = ""
    sender_name: str = ""
    subject: str = ""
    message_id: str = ""
    reference_ids: tuple[str, ...] = ()


def start_attempt(engine: Engine, case_id: int, *, holder: str, now: datetime) -> Attempt | CaseStatus | None:
    """Mark that `holder` starts answering `case_id`, committed before the work (a worker that
    dies leaves the mark behind). None when the claim is no longer ours; `quarantined` when
    workers died on this case POISON_AFTER times (D03), so the others still get answered."""
    with engine.begin() as conn:
        row = conn.execute(
            select(CASE.c.status, CASE.c.claimed_by, CASE.c.claimed_until, CASE.c.flags, CASE.c.raw, CASE.c.kind,
                   CASE.c.question, CASE.c.sender, CASE.c.sender_name, CASE.c.subject, CASE.c.message_id,
                   CASE.c.reference_ids)
            .where(CASE.c.id == case_id)
            .with_for_update()
        ).first()
        if row is None or not _claim_holds(row.status, row.claimed_by, row.claimed_until, holder=holder, now=now):
            return None
        flags = list(row.flags or [])
        if flags.count(_ATTEMPT) >= POISON_AFTER:
            conn.execute(update(CASE).where(CASE.c.id == case_id).values(
                status=CaseStatus.quarantined, reason="poison", updated_at=now,
                flags=[f for f in flags if f != _ATTEMPT],
                error=f"a worker died while answering it {POISON_AFTER} times",
            ))
            return CaseStatus.quarantined
        flags.append(_ATTEMPT)
        conn.execute(update(CASE).where(CASE.c.id == case_id).values(flags=flags))
    return Attempt(
        case_id, row.raw or b"", tuple(flags), kind=row.kind, question=row.question, sender=row.sender,
        sender_name=row.sender_name, subject=row.subject, message_id=row.message_id,
        reference_ids=tuple(row.reference_ids or ()),
    )


def finish_attempt(
    session: Session, attempt: Attempt, status: CaseStatus, *, holder: str, now: datetime, reason: str = "",
    **fields: Any,
) -> None:
    """Close the case in the caller's transaction, only while the claim is still `holder`'s
    (the condition is part of the UPDATE); raises ClaimLost otherwise, so the caller's
    transaction, with any charge and reply in it, rolls back."""
    result = session.execute(
        update(CASE)
        .where(
            CASE.c.id == attempt.id,
            CASE.c.status == CaseStatus.received,
            CASE.c.claimed_by == holder,
            CASE.c.claimed_until >= now,
        )
        .values(status=status, reason=reason, updated_at=now, flags=[f for f in attempt.flags if f != _ATTEMPT],
                **fields)
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise ClaimLost(attempt.id)


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
    return _claim_holds(case.status, case.claimed_by, case.claimed_until, holder=holder, now=now)


def _claim_holds(status: str, claimed_by: str | None, claimed_until: datetime | None, *, holder: str,
                 now: datetime) -> bool:
    return (
        status == CaseStatus.received
        and claimed_by == holder
        and claimed_until is not None
        and aware(claimed_until) >= now
    )


def aware(moment: datetime) -> datetime:
    """SQLite hands back naive datetimes; everything stored is UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
