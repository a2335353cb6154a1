"""RECORD: the case table: which messages are recorded, claims, attempts, closing.

A case is keyed by (mailbox, UIDVALIDITY, UID); Message-ID plus a hash of
the raw bytes is the second key, which stops a re-answer when the same
message reappears under new UIDs (a UIDVALIDITY reset, a copy back into the
inbox; `intake.py` checks it for a whole batch). Every message is recorded
before anything is sent.

Answering a claimed case is `start_attempt` (a mark committed before the
work, so a case that kills its workers is found out: D03) and
`finish_attempt` (the closing UPDATE holds only while the claim is still
ours). The statements on this path are built once, with bind parameters.

Answering is shared out by claims: `claim_cases` marks up to N `received`
cases as this worker's for a while, in one statement (`FOR UPDATE SKIP
LOCKED` on PostgreSQL, so workers never wait on each other's rows; on
SQLite the IMMEDIATE transaction serialises the claim). A worker that dies
leaves its claim to expire, and another takes the case; on the same host a
claim whose holder is provably dead is free at once (`lease.dead_holders`).
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import bindparam, func, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, select

from consultant.db import Db, connection_of
from consultant.inbox import MailRef
from consultant.lease import Claim
from consultant.models import Case, CaseStatus
from consultant.prepared import Prepared, typed_param

FINISHED = {
    CaseStatus.answered,
    CaseStatus.over_quota,
    CaseStatus.ignored,
    CaseStatus.rejected,
    CaseStatus.quarantined,
    CaseStatus.failed,
}


def recorded(engine: Engine | Connection, refs: list[MailRef]) -> set[MailRef]:
    """Which of `refs` have a case already (one query per folder)."""
    folders: dict[tuple[str, int], list[int]] = {}
    for ref in refs:
        folders.setdefault((ref.mailbox, ref.uidvalidity), []).append(ref.uid)
    found: set[MailRef] = set()
    with engine.connect() if isinstance(engine, Engine) else nullcontext(engine) as conn:
        for (mailbox, uidvalidity), uids in folders.items():
            rows = conn.execute(
                select(CASE.c.uid).where(CASE.c.mailbox == mailbox, CASE.c.uidvalidity == uidvalidity,
                                         CASE.c.uid.in_(uids))
            ).all()
            found.update(MailRef(mailbox, uidvalidity, uid) for (uid,) in rows)
    return found


def waiting(engine: Engine, *, now: datetime) -> int:
    """Received cases no worker holds: the answering backlog."""
    with engine.connect() as conn:
        return conn.execute(_WAITING, {"p_now": now}).scalar_one()


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
_CLAIM = Claim(CASE, CASE.c.status == CaseStatus.received)


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


_WAITING = select(func.count()).select_from(CASE).where(
    CASE.c.status == CaseStatus.received,
    CASE.c.claimed_until.is_(None) | (CASE.c.claimed_until < typed_param("p_now", CASE.c.claimed_until)),
)


# Built once and run on the driver's cursor (consultant/prepared.py): the answering path runs
# these for every question (docs/BENCHMARKS.md).
_READ_ATTEMPT = Prepared(
    select(CASE.c.status, CASE.c.claimed_by, CASE.c.claimed_until, CASE.c.flags, CASE.c.raw, CASE.c.kind,
           CASE.c.question, CASE.c.sender, CASE.c.sender_name, CASE.c.subject, CASE.c.message_id,
           CASE.c.reference_ids)
    .where(CASE.c.id == bindparam("p_id"))
    .with_for_update()
)
_SET_FLAGS = Prepared(
    update(CASE).where(CASE.c.id == bindparam("p_id")).values(flags=typed_param("p_flags", CASE.c.flags))
)
_POISON = Prepared(update(CASE).where(CASE.c.id == bindparam("p_id")).values(
    status=CaseStatus.quarantined, reason="poison", updated_at=typed_param("p_now", CASE.c.updated_at),
    flags=typed_param("p_flags", CASE.c.flags), error=f"a worker died while answering it {POISON_AFTER} times",
))
_FINISH = Prepared(
    update(CASE)
    .where(
        CASE.c.id == bindparam("p_id"),
        CASE.c.status == CaseStatus.received,
        CASE.c.claimed_by == bindparam("p_holder"),
        CASE.c.claimed_until >= typed_param("p_claim_valid_at", CASE.c.claimed_until),
    )
    .values(
        status=typed_param("p_status", CASE.c.status), reason=bindparam("p_reason"),
        updated_at=typed_param("p_now", CASE.c.updated_at), flags=typed_param("p_flags", CASE.c.flags),
        confidence=bindparam("p_confidence"), codes=typed_param("p_codes", CASE.c.codes),
        findings=typed_param("p_findings", CASE.c.findings),
    )
)


Started = Attempt | CaseStatus | None


class TriedBefore:
    """A case to be answered alone: an earlier attempt at it never finished (`begin_attempt`)."""


TRIED_BEFORE = TriedBefore()


def flag_case(conn: Connection, case_id: int, flag: str) -> None:
    """Add `flag` to the case's flags (staff see them on the case page), once."""
    flags = conn.execute(select(CASE.c.flags).where(CASE.c.id == case_id)).scalar()
    if flags is not None and flag not in flags:
        conn.execute(update(CASE).where(CASE.c.id == case_id).values(flags=[*flags, flag]))


def start_attempt(engine: Engine, case_id: int, *, holder: str, now: datetime) -> Started:
    """Mark that `holder` starts answering `case_id`, committed before the work (a worker that
    dies leaves the mark behind). None when the claim is no longer ours; `quarantined` when
    workers died on this case POISON_AFTER times (D03), so the others still get answered."""
    with engine.begin() as conn:
        return begin_attempt(conn, case_id, holder=holder, now=now)


def begin_attempt(conn: Connection, case_id: int, *, holder: str, now: datetime,
                  alone_if_tried: bool = False) -> Started | TriedBefore:
    """`start_attempt` in the caller's transaction: the answering path starts the next
    claimed chunk in the transaction that closes the one before (one commit per chunk;
    the marks are still committed before those cases' work begins). With `alone_if_tried`,
    a case an earlier attempt never finished is not marked but returned as TRIED_BEFORE: it
    is to be answered alone (`start_attempt`), so that only a case that kills its worker
    again counts that attempt, never the cases begun beside it."""
    row = _READ_ATTEMPT.run(conn, {"p_id": case_id}).first()
    if row is None or not _claim_holds(row.status, row.claimed_by, row.claimed_until, holder=holder, now=now):
        return None
    flags = list(row.flags or [])
    if flags.count(_ATTEMPT) >= POISON_AFTER:
        _POISON.run(conn, {"p_id": case_id, "p_now": now, "p_flags": [f for f in flags if f != _ATTEMPT]})
        return CaseStatus.quarantined
    if alone_if_tried and _ATTEMPT in flags:
        return TRIED_BEFORE
    flags.append(_ATTEMPT)
    _SET_FLAGS.run(conn, {"p_id": case_id, "p_flags": flags})
    return Attempt(
        case_id, row.raw or b"", tuple(flags), kind=row.kind, question=row.question, sender=row.sender,
        sender_name=row.sender_name, subject=row.subject, message_id=row.message_id,
        reference_ids=tuple(row.reference_ids or ()),
    )


def finish_attempt(
    db: Db,
    attempt: Attempt,
    status: CaseStatus,
    *,
    holder: str,
    now: datetime,
    reason: str = "",
    confidence: float = 0.0,
    codes: list[dict[str, Any]] | None = None,
    findings: list[dict[str, Any]] | None = None,
) -> None:
    """Close the case in the caller's transaction, only while the claim is still `holder`'s
    (the condition is part of the UPDATE); raises ClaimLost otherwise, so the caller's
    transaction, with any charge and reply in it, rolls back."""
    result = _FINISH.run(connection_of(db), {
        "p_id": attempt.id, "p_holder": holder, "p_claim_valid_at": now, "p_status": status, "p_reason": reason,
        "p_now": now, "p_flags": [f for f in attempt.flags if f != _ATTEMPT], "p_confidence": confidence,
        "p_codes": codes or [], "p_findings": findings or [],
    })
    if result.rowcount != 1:
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
    return _CLAIM.run(engine, holder=holder, limit=limit, ttl=ttl, now=now)


def release_cases(engine: Engine, ids: list[int], *, holder: str, now: datetime) -> None:
    """Give back `holder`'s claims on those of `ids` still `received` (`Claim.release`)."""
    _CLAIM.release(engine, ids, holder=holder, now=now)


_UNBEGIN = Prepared(
    update(CASE).where(CASE.c.id == bindparam("p_id"), CASE.c.status == CaseStatus.received,
                       CASE.c.claimed_by == bindparam("p_holder")).values(flags=typed_param("p_flags", CASE.c.flags))
)


def unbegin(engine: Engine, attempts: list[Attempt], *, holder: str) -> None:
    """Take back the attempt marks of cases begun but never worked on (a pass that stopped
    before reaching them): no worker died on them, so no attempt may count towards poison."""
    if not attempts:
        return
    with engine.begin() as conn:
        for attempt in attempts:
            flags = list(attempt.flags)
            if _ATTEMPT in flags:
                del flags[len(flags) - 1 - flags[::-1].index(_ATTEMPT)]
            _UNBEGIN.run(conn, {"p_id": attempt.id, "p_holder": holder, "p_flags": flags})


_QUESTIONS = (
    select(CASE.c.question)
    .where(CASE.c.id.in_(bindparam("p_ids", expanding=True)), CASE.c.kind == "question", CASE.c.question != "")
    .order_by(CASE.c.id)
)


def questions(engine: Engine, ids: list[int]) -> list[str]:
    """The texts intake kept of the question cases among `ids` (for a matcher that works ahead)."""
    if not ids:
        return []
    with engine.connect() as conn:
        return list(conn.execute(_QUESTIONS, {"p_ids": ids}).scalars())


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
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
