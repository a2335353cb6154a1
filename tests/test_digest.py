"""The daily digest: what it counts, how it reads, that it is queued once a day and sent, the cron job."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

from apscheduler.schedulers.background import BackgroundScheduler
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from consultant.cases import record_case
from consultant.db import session_scope
from consultant.digest import build_digest, queue_digest, render_digest, send_daily_digest
from consultant.inbox import MailRef
from consultant.models import Account, Case, CaseStatus, Outbox, OutboxStatus, Tier
from consultant.outbox import MemoryTransport, deliver_pending
from consultant.quota import QuotaPolicy
from consultant.report import summary_text, write_html
from consultant.scheduling import add_digest_job, daily_digest
from tests.test_review import ADDRESS, held_case

NOW = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
STAFF = ("lead@caseconsultant.example", "coder2@caseconsultant.example")


def add_case(engine, uid: int, status: CaseStatus, *, at: datetime, reason: str = "", subject: str = "q") -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        record_case(session, MailRef("INBOX", 1, uid), now=at, status=status, reason=reason, sender=f"s{uid}@x.example",
                    subject=subject)


def seeded(engine):  # type: ignore[no-untyped-def]
    held_case(engine)  # case 1: needs_review, received 2026-11-22 12:00
    add_case(engine, 10, CaseStatus.answered, at=NOW - timedelta(hours=2))
    add_case(engine, 11, CaseStatus.answered, at=NOW - timedelta(hours=3))
    add_case(engine, 12, CaseStatus.failed, at=NOW - timedelta(hours=1), reason="internal_error")
    add_case(engine, 13, CaseStatus.quarantined, at=NOW - timedelta(hours=1), reason="unparseable")
    add_case(engine, 14, CaseStatus.answered, at=NOW - timedelta(days=3))  # outside the day
    with session_scope(engine) as session:
        session.add_all([
            Account(email="busy@clinic.example", tier=Tier.free, answered=6, created_at=NOW),
            Account(email="plan@clinic.example", tier=Tier.plan, extra_answers=10, answered=3, created_at=NOW),
            Account(email="guest@clinic.example", tier=Tier.guest, answered=1, created_at=NOW),
            Account(email="gone@clinic.example", tier=Tier.free, answered=6, active=False, created_at=NOW),
        ])


def test_digest_counts_the_day_waiting_cases_failures_and_full_accounts(db_engine) -> None:
    seeded(db_engine)
    with Session(db_engine) as session:
        digest = build_digest(session, now=NOW, admin_url="https://admin.example/", policy=QuotaPolicy())
    assert digest.received == 5
    assert {k: v for k, v in digest.counts.items() if v} == {
        "needs_review": 1, "answered": 2, "failed": 1, "quarantined": 1}
    assert [(c.id, c.url) for c in digest.waiting] == [(1, "https://admin.example/cases/1")]
    assert digest.waiting_total == 1
    assert sorted(c.reason for c in digest.failures) == ["internal_error", "unparseable"]
    assert [(a.email, a.answered, a.allowance) for a in digest.at_limit] == [("busy@clinic.example", 6, 6)]
    assert digest.guests_at_limit == 1


def test_digest_reads_well_in_text_and_html(engine) -> None:
    seeded(engine)
    with Session(engine) as session:
        digest = build_digest(session, now=NOW, admin_url="https://admin.example")
    subject, text, html = render_digest(digest)
    assert subject == "CaseConsultant daily digest 2026-11-23: 1 waiting for review"
    assert "Cases received: 5" in text and "  answered      2" in text
    assert "#1  received 2026-11-22 12:00  pat@clinic.example" in text
    assert "https://admin.example/cases/1" in text
    assert "busy@clinic.example  free  6 of 6 answers used" in text
    assert "Guest addresses that have used their free answer: 1" in text
    assert '<a href="https://admin.example/cases/1">#1</a>' in html
    assert "https://admin.example/queue?status=needs_review" in html


def _one_waiting(subject: str):  # type: ignore[no-untyped-def]
    from consultant.digest import CaseLine, Digest

    line = CaseLine(1, NOW, "a@b.example", subject, "needs_review", "", "")
    return Digest(NOW - timedelta(days=1), NOW, {"needs_review": 1}, [line], 1, [], 0, [], 0, "")


@settings(max_examples=50, deadline=None)
@given(subject=st.text(max_size=120))
def test_digest_escapes_whatever_the_sender_wrote(subject: str) -> None:
    """No markup in the HTML, and no extra lines in the text (subjects are cleaned to one line)."""
    from consultant.render import clean_header  # what build_digest applies to every subject

    cleaned = clean_header(subject + "<script>x</script>", limit=80)
    _, text, html = render_digest(_one_waiting(cleaned))
    assert "<script>" not in html
    assert text.count("\n") == render_digest(_one_waiting("q"))[1].count("\n")


def test_digest_is_queued_once_per_day_per_address_and_sent_by_the_outbox(db_engine) -> None:
    seeded(db_engine)
    kwargs = {"recipients": STAFF, "address": ADDRESS, "admin_url": "https://admin.example", "policy": QuotaPolicy()}
    assert send_daily_digest(db_engine, now=NOW, **kwargs) == 2  # type: ignore[arg-type]
    assert send_daily_digest(db_engine, now=NOW + timedelta(minutes=5), **kwargs) == 0  # type: ignore[arg-type]
    transport = MemoryTransport()
    counts = deliver_pending(db_engine, transport, sender=ADDRESS, now=NOW + timedelta(minutes=6))
    assert counts["sent"] == 2
    assert sorted(m.recipients[0] for m in transport.sent) == sorted(STAFF)
    mail = message_from_bytes(transport.sent[0].raw, policy=policy.default)
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["Subject"].startswith("CaseConsultant daily digest 2026-11-23")
    assert "https://admin.example/cases/1" in mail.get_body(preferencelist=("plain",)).get_content()
    with Session(db_engine) as session:
        rows = session.exec(select(Outbox).where(Outbox.case_id.is_(None))).all()  # type: ignore[union-attr]
    assert [r.status for r in rows] == [OutboxStatus.sent, OutboxStatus.sent]
    assert send_daily_digest(db_engine, now=NOW + timedelta(days=1), **kwargs) == 2  # type: ignore[arg-type]


def test_no_staff_addresses_no_digest(engine) -> None:
    assert send_daily_digest(engine, recipients=(), address=ADDRESS, admin_url="", policy=QuotaPolicy(), now=NOW) == 0
    with Session(engine) as session:
        assert session.exec(select(Outbox)).first() is None
        assert queue_digest(session, build_digest(session, now=NOW), recipients=[], address=ADDRESS, now=NOW) == 0


def test_the_cron_job_runs_daily_at_the_configured_time(engine) -> None:
    from tests.test_pipeline import make_services

    services = make_services(engine)
    scheduler = BackgroundScheduler(timezone="UTC")
    job = add_digest_job(scheduler, services, digest_to=STAFF, digest_at="06:30", admin_url="")
    assert job is not None
    first = job.trigger.get_next_fire_time(None, NOW)
    assert first == datetime(2026, 11, 24, 6, 30, tzinfo=UTC)
    assert job.trigger.get_next_fire_time(first, first + timedelta(seconds=1)) == first + timedelta(days=1)
    assert add_digest_job(scheduler, services, digest_to=(), digest_at="06:30", admin_url="") is None
    assert add_digest_job(scheduler, services, digest_to=STAFF, digest_at="off", admin_url="") is None
    assert daily_digest(services, recipients=STAFF, admin_url="") == 2  # what the job runs


def test_report_prints_the_digest_and_writes_it_as_html(engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    seeded(engine)
    with Session(engine) as session:
        text = summary_text(session, now=NOW, admin_url="http://127.0.0.1:8080")
        write_html(session, tmp_path / "digest.html", now=NOW, admin_url="http://127.0.0.1:8080")
    assert text.startswith("Cases by status:")
    assert "Waiting for review, oldest first: 1" in text and "http://127.0.0.1:8080/cases/1" in text
    page = (tmp_path / "digest.html").read_text()
    assert page.startswith("<!doctype html>") and "Waiting for review, oldest first: 1" in page
    with Session(engine) as session:
        assert session.get(Case, 1).status == CaseStatus.needs_review  # type: ignore[union-attr]
