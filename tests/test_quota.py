"""Quota: the allowance rule, and exact counting when answers are spent at once."""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from sqlmodel import Session, select

from consultant.db import session_scope
from consultant.models import Account, Tier
from consultant.quota import QuotaPolicy, charge_answer, lock_account, quota_state

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def test_allowance_per_tier() -> None:
    policy = QuotaPolicy(guest_answers=1, free_answers=5)
    assert policy.allowance(tier=Tier.guest, extra_answers=0) == 1
    assert policy.allowance(tier=Tier.free, extra_answers=0) == 6
    assert policy.allowance(tier=Tier.plan, extra_answers=100) == 106


def test_guest_gets_one_answer_and_a_registered_account_five_more(db_engine) -> None:
    policy = QuotaPolicy()
    with session_scope(db_engine) as session:
        assert charge_answer(session, "a@x.example", policy=policy, now=NOW)
        assert not charge_answer(session, "a@x.example", policy=policy, now=NOW)
        account = session.exec(select(Account).where(Account.email == "a@x.example")).one()
        account.tier = Tier.free
        session.add(account)
    with session_scope(db_engine) as session:
        spent = [charge_answer(session, "a@x.example", policy=policy, now=NOW) for _ in range(7)]
        assert spent == [True] * 5 + [False] * 2
        assert quota_state(session, "a@x.example", policy=policy).remaining == 0


def test_deactivated_account_gets_no_answer(engine) -> None:
    with session_scope(engine) as session:
        charge_answer(session, "b@x.example", policy=QuotaPolicy(guest_answers=3), now=NOW)
        account = session.exec(select(Account)).one()
        account.active = False
        session.add(account)
    with session_scope(engine) as session:
        assert not charge_answer(session, "b@x.example", policy=QuotaPolicy(guest_answers=3), now=NOW)


def test_quota_is_exact_when_many_answers_are_spent_at_once(db_engine) -> None:
    """A sender with quota Q who sends 2Q questions at once gets exactly Q answers."""
    quota = 4
    policy = QuotaPolicy(guest_answers=quota)
    results: list[bool] = []
    lock = threading.Lock()
    barrier = threading.Barrier(2 * quota)

    def spend() -> None:
        barrier.wait()
        with session_scope(db_engine) as session:
            ok = charge_answer(session, "busy@x.example", policy=policy, now=NOW)
        with lock:
            results.append(ok)

    threads = [threading.Thread(target=spend) for _ in range(2 * quota)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == [False] * quota + [True] * quota
    with Session(db_engine) as session:
        assert session.exec(select(Account)).one().answered == quota


def test_lock_account_creates_a_guest_or_reads_the_account(db_engine) -> None:
    policy = QuotaPolicy(guest_answers=1, free_answers=5)
    with session_scope(db_engine) as session:
        state = lock_account(session, "new@x.example", now=NOW, policy=policy)
        assert (state.tier, state.answered, state.allowance, state.active) == (Tier.guest, 0, 1, True)
    with session_scope(db_engine) as session:
        account = session.exec(select(Account).where(Account.email == "new@x.example")).one()
        account.tier, account.answered, account.extra_answers = Tier.free, 3, 10
        session.add(account)
    with session_scope(db_engine) as session:
        state = lock_account(session, "new@x.example", now=NOW, policy=policy)
        assert (state.tier, state.answered, state.allowance, state.active) == (Tier.free, 3, 16, True)
        assert session.exec(select(Account).where(Account.email == "new@x.example")).one().created_at is not None


def test_lock_account_holds_the_row_on_postgresql(pg_engine) -> None:
    """A second transaction cannot lock the same account until the first one ends."""
    from sqlalchemy import text
    from sqlalchemy.exc import OperationalError

    policy = QuotaPolicy()
    with session_scope(pg_engine) as first:
        lock_account(first, "busy@x.example", now=NOW, policy=policy)
    with session_scope(pg_engine) as first:
        lock_account(first, "busy@x.example", now=NOW, policy=policy)
        with Session(pg_engine) as second:
            second.connection().execute(text("SET LOCAL lock_timeout = '300ms'"))
            try:
                lock_account(second, "busy@x.example", now=NOW, policy=policy)
            except OperationalError as exc:
                assert "lock timeout" in str(exc)
            else:
                raise AssertionError("the account row was not locked")
            second.rollback()
        lock_account(first, "other@x.example", now=NOW, policy=policy)  # the first goes on
