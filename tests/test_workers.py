"""Several workers: the poll lease, case and outbox claims, and the in-flight resend flag."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from sqlmodel import Session, select

from consultant.cases import claim_cases
from consultant.db import session_scope
from consultant.errors import SendError
from consultant.inbox import MemoryInbox
from consultant.lease import acquire_lease
from consultant.models import Case, CaseStatus, Outbox, OutboxStatus
from consultant.outbox import MemoryTransport, claim_outbox, deliver_pending
from consultant.pipeline import Services, run_once
from tests.fakes import KeywordMatcher, question

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
TTL = timedelta(minutes=2)


def test_only_one_worker_holds_the_poll_lease(db_engine) -> None:
    assert acquire_lease(db_engine, "poll", holder="a", ttl=TTL, now=NOW)
    assert not acquire_lease(db_engine, "poll", holder="b", ttl=TTL, now=NOW)
    assert acquire_lease(db_engine, "poll", holder="a", ttl=TTL, now=NOW + timedelta(minutes=1))
    # the holder dies: the lease expires and another worker takes over
    assert acquire_lease(db_engine, "poll", holder="b", ttl=TTL, now=NOW + timedelta(minutes=4))
    assert not acquire_lease(db_engine, "poll", holder="a", ttl=TTL, now=NOW + timedelta(minutes=4))


def test_concurrent_lease_attempts_have_one_winner(db_engine) -> None:
    wins: list[str] = []
    barrier = threading.Barrier(6)

    def attempt(name: str) -> None:
        barrier.wait()
        if acquire_lease(db_engine, "race", holder=name, ttl=TTL, now=NOW):
            wins.append(name)

    threads = [threading.Thread(target=attempt, args=(f"w{i}",)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(wins) == 1


def _received_cases(engine, count: int) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        for uid in range(1, count + 1):
            session.add(Case(mailbox="INBOX", uidvalidity=1, uid=uid, raw=question(), sender="a@b.example",
                             received_at=NOW, updated_at=NOW))


def test_case_claims_never_overlap(db_engine) -> None:
    _received_cases(db_engine, 40)
    claimed: dict[str, list[int]] = {}
    barrier = threading.Barrier(4)

    def claim(name: str) -> None:
        barrier.wait()
        got: list[int] = []
        while batch := claim_cases(db_engine, holder=name, limit=3, ttl=TTL, now=NOW):
            got += batch
        claimed[name] = got

    threads = [threading.Thread(target=claim, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [cid for ids in claimed.values() for cid in ids]
    assert sorted(every) == sorted(set(every)) and len(every) == 40


def test_expired_claim_is_taken_over(engine) -> None:
    _received_cases(engine, 1)
    assert claim_cases(engine, holder="a", limit=5, ttl=TTL, now=NOW) == [1]
    assert claim_cases(engine, holder="b", limit=5, ttl=TTL, now=NOW + timedelta(minutes=1)) == []
    assert claim_cases(engine, holder="b", limit=5, ttl=TTL, now=NOW + timedelta(minutes=3)) == [1]


def test_two_workers_answer_each_question_exactly_once(db_engine) -> None:
    inbox = MemoryInbox()
    transport = MemoryTransport()
    for n in range(12):
        inbox.deliver(question(f"What is CPT 62310? #{n}", sender=f"s{n}@clinic.example"))
    workers = [
        Services(engine=db_engine, inbox=inbox, transport=transport, matcher=KeywordMatcher(),
                 address="consultant@caseconsultant.example", batch_size=5)
        for _ in range(2)
    ]
    for _ in range(4):
        for worker in workers:
            run_once(worker)
    recipients = sorted(r for m in transport.sent for r in m.recipients)
    assert recipients == sorted(f"s{n}@clinic.example" for n in range(12))
    assert not inbox.messages


def test_outbox_claims_prevent_double_sends(db_engine) -> None:
    services = Services(engine=db_engine, inbox=MemoryInbox(), transport=MemoryTransport(), matcher=KeywordMatcher(),
                        address="consultant@caseconsultant.example")
    for n in range(5):
        services.inbox.deliver(question(sender=f"p{n}@clinic.example"))
    services.transport.fail_with = SendError("SMTP 451: later")  # keep rows pending
    run_once(services, now=lambda: NOW)
    first = claim_outbox(db_engine, holder="x", limit=10, now=NOW + timedelta(hours=1))
    second = claim_outbox(db_engine, holder="y", limit=10, now=NOW + timedelta(hours=1))
    assert first and not set(first) & set(second)


def test_a_send_interrupted_after_the_server_took_it_is_resent_once_and_flagged(engine) -> None:
    services = Services(engine=engine, inbox=MemoryInbox(), transport=MemoryTransport(), matcher=KeywordMatcher(),
                        address="consultant@caseconsultant.example")
    services.inbox.deliver(question())
    services.transport.fail_with = SendError("SMTP 451: later")
    run_once(services, now=lambda: NOW)
    # simulate a process that died after SMTP took the message, before the commit
    with session_scope(engine) as session:
        row = session.exec(select(Outbox)).one()
        row.sending_since = NOW
        row.claimed_until = NOW
        session.add(row)
    transport = MemoryTransport()
    counts = deliver_pending(engine, transport, sender=services.address, now=NOW + timedelta(minutes=10), holder="z")
    assert counts["sent"] == 1 and len(transport.sent) == 1
    with Session(engine) as session:
        case = session.exec(select(Case)).one()
        row = session.exec(select(Outbox)).one()
    assert case.flags == ["resent_after_crash"]
    assert row.status == OutboxStatus.sent and row.sending_since is None
    assert case.status == CaseStatus.answered
