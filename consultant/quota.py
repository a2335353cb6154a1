"""QUOTA: how many answers a sender may have, and the one query that spends one.

As on the reference service: a guest (unregistered sender) gets
`guest_answers` (1) answered question; a free registered account gets
`free_answers` (5) more; a plan or a staff grant adds `extra_answers`.
Only answered questions count.

`charge_answer` spends one answer with a single conditional UPDATE
(`... SET answered = answered + 1 WHERE answered < allowance`). On
PostgreSQL a second concurrent transaction waits for the row lock and then
re-checks the condition; on SQLite writers are serialised by BEGIN
IMMEDIATE. Either way two questions processed at once can never both take
the last answer.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy import case as sql_case
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from consultant.db import Db, connection_of
from consultant.models import Account, Tier
from consultant.prepared import Prepared, typed_param


@dataclass(frozen=True)
class QuotaPolicy:
    guest_answers: int = 1
    free_answers: int = 5

    def allowance(self, *, tier: Tier, extra_answers: int) -> int:
        registered = tier in (Tier.free, Tier.plan)
        return self.guest_answers + (self.free_answers if registered else 0) + extra_answers


@dataclass(frozen=True)
class QuotaState:
    email: str
    tier: Tier
    answered: int
    allowance: int
    active: bool = True

    @property
    def remaining(self) -> int:
        return max(self.allowance - self.answered, 0)


ACCOUNT = Account.__table__  # type: ignore[attr-defined]

# Built once: the answering path runs these for every question, and building a statement
# costs more than running it (docs/BENCHMARKS.md).
_NEW_GUEST = {
    "email": bindparam("p_email"), "tier": Tier.guest, "extra_answers": 0, "answered": 0, "active": True,
    "created_at": typed_param("p_now", ACCOUNT.c.created_at),
}
_ENSURE = {
    "postgresql": pg_insert(ACCOUNT).values(_NEW_GUEST).on_conflict_do_nothing(index_elements=["email"]),
    "sqlite": sqlite_insert(ACCOUNT).values(_NEW_GUEST).on_conflict_do_nothing(index_elements=["email"]),
}
_STATE_COLUMNS = (ACCOUNT.c.tier, ACCOUNT.c.answered, ACCOUNT.c.extra_answers, ACCOUNT.c.active)
_READ = select(*_STATE_COLUMNS).where(ACCOUNT.c.email == bindparam("p_email"))


def _ensure_and_lock(insert: Any) -> Any:
    """Create the guest account or, when it exists, take its row lock, and read it: one statement.
    The update changes nothing; it is what locks the row on PostgreSQL (as FOR UPDATE would)."""
    new = insert(ACCOUNT).values(_NEW_GUEST)
    return new.on_conflict_do_update(index_elements=["email"], set_={"email": new.excluded.email}).returning(
        *_STATE_COLUMNS
    )


_ENSURE_AND_LOCK = {"postgresql": Prepared(_ensure_and_lock(pg_insert)), "sqlite": Prepared(_ensure_and_lock(sqlite_insert))}


def _charge_statement(policy: QuotaPolicy) -> Any:
    registered_bonus = sql_case((ACCOUNT.c.tier == Tier.guest, 0), else_=policy.free_answers)
    allowance = policy.guest_answers + registered_bonus + ACCOUNT.c.extra_answers
    return (
        update(ACCOUNT)
        .where(ACCOUNT.c.email == bindparam("p_email"), ACCOUNT.c.active.is_(True), ACCOUNT.c.answered < allowance)
        .values(answered=ACCOUNT.c.answered + 1)
    )


_charge_statements: dict[QuotaPolicy, Prepared] = {}


def ensure_account(db: Db, email: str, *, now: datetime) -> None:
    """Create a guest account for `email` if none exists (race-free)."""
    conn = connection_of(db)
    conn.execute(_ENSURE[_dialect(conn)], {"p_email": email, "p_now": now})


def _dialect(conn: Any) -> str:
    return "postgresql" if conn.dialect.name == "postgresql" else "sqlite"


def quota_state(db: Db, email: str, *, policy: QuotaPolicy) -> QuotaState:
    # connection_of flushes: a registration or a grant earlier in this transaction went through the ORM
    return _state(email, connection_of(db).execute(_READ, {"p_email": email}).first(), policy)


def _state(email: str, account: Any, policy: QuotaPolicy) -> QuotaState:
    if account is None:
        return QuotaState(email, Tier.guest, 0, policy.allowance(tier=Tier.guest, extra_answers=0))
    tier = Tier(account.tier)
    return QuotaState(
        email, tier, account.answered, policy.allowance(tier=tier, extra_answers=account.extra_answers),
        account.active,
    )


def lock_account(db: Db, email: str, *, now: datetime, policy: QuotaPolicy) -> QuotaState:
    """Create `email`'s guest account if need be, hold its row until the transaction ends
    (the upsert's row lock on PostgreSQL; SQLite's IMMEDIATE transaction already serialises
    writers) and return its state, in one statement. Answers to one sender are then decided
    one at a time, so "one over-quota notice per window" holds across workers."""
    conn = connection_of(db)
    row = _ENSURE_AND_LOCK[_dialect(conn)].run(conn, {"p_email": email, "p_now": now}).first()
    return _state(email, row, policy)


def charge_answer(
    db: Db, email: str, *, policy: QuotaPolicy, now: datetime, account_exists: bool = False
) -> bool:
    """Spend one answer for `email`; False when none is left (nothing changes then).
    `account_exists`: the caller has just made sure of it (`lock_account`), skip the INSERT."""
    if not account_exists:
        ensure_account(db, email, now=now)
    statement = _charge_statements.get(policy)
    if statement is None:
        statement = _charge_statements[policy] = Prepared(_charge_statement(policy))
    result = statement.run(connection_of(db), {"p_email": email})
    return result.rowcount == 1
