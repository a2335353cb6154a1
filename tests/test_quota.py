"""Quota: the allowance rule, and exact counting when answers are spent at once."""

from __future__ import annotations

import threading
from datetime import datetime, timezone

from sqlmodel import Session, select

from consultant.db import session_scope
from consultant.models import Account, Tier
from consultant.quota import QuotaPolicy, charge_answer, quota_state

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)


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
