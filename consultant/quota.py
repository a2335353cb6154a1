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

from sqlalchemy import case as sql_case
from sqlalchemy import update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, select

from consultant.models import Account, Tier


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


def ensure_account(session: Session, email: str, *, now: datetime) -> None:
    """Create a guest account for `email` if none exists (race-free)."""
    dialect = session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    stmt = (
        insert(Account)
        .values(email=email, tier=Tier.guest, extra_answers=0, answered=0, active=True, created_at=now)
        .on_conflict_do_nothing(index_elements=["email"])
    )
    session.execute(stmt)


def quota_state(session: Session, email: str, *, policy: QuotaPolicy) -> QuotaState:
    account = session.exec(select(Account).where(Account.email == email)).first()
    if account is None:
        return QuotaState(email, Tier.guest, 0, policy.allowance(tier=Tier.guest, extra_answers=0))
    return QuotaState(
        email,
        account.tier,
        account.answered,
        policy.allowance(tier=account.tier, extra_answers=account.extra_answers),
        account.active,
    )


def lock_account(session: Session, email: str, *, now: datetime) -> None:
    """Hold `email`'s account row until the transaction ends (FOR UPDATE on PostgreSQL;
    SQLite's IMMEDIATE transaction already serialises writers). Answers to one sender are
    then decided one at a time, so "one over-quota notice per window" holds across workers."""
    ensure_account(session, email, now=now)
    session.exec(select(Account.id).where(Account.email == email).with_for_update()).first()


def charge_answer(
    session: Session, email: str, *, policy: QuotaPolicy, now: datetime, account_exists: bool = False
) -> bool:
    """Spend one answer for `email`; False when none is left (nothing changes then).
    `account_exists`: the caller has just made sure of it (`lock_account`), skip the INSERT."""
    if not account_exists:
        ensure_account(session, email, now=now)
    registered_bonus = sql_case((Account.tier == Tier.guest, 0), else_=policy.free_answers)
    allowance = policy.guest_answers + registered_bonus + Account.extra_answers
    result = session.execute(
        update(Account)
        .where(Account.email == email, Account.active.is_(True), Account.answered < allowance)
        .values(answered=Account.answered + 1)
        .execution_options(synchronize_session=False)
    )
    return result.rowcount == 1  # type: ignore[attr-defined]
