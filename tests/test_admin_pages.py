"""The admin's page data (filters, search, pagination) on SQLite and PostgreSQL, and escaping in its templates."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.datastructures import QueryParams

from consultant.admin.app import templates
from consultant.admin.auth import StaffSession
from consultant.admin.pages import (
    CasePage,
    QueueFilter,
    QueuePage,
    QueueRow,
    ReplyView,
    accounts_page,
    duration,
    parse_queue_filter,
    queue_page,
)
from consultant.cases import record_case
from consultant.db import session_scope
from consultant.inbox import MailRef
from consultant.models import Account, AuditEntry, Case, CaseStatus, Tier
from consultant.quota import QuotaPolicy, QuotaState

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)


def seed(engine) -> None:  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        for uid in range(1, 31):
            record_case(
                session,
                MailRef("INBOX", 1, uid),
                now=NOW - timedelta(days=uid % 3, minutes=uid),
                status=CaseStatus.answered if uid % 2 else CaseStatus.needs_review,
                sender=f"user{uid % 4}@clinic{uid % 2}.example",
                subject=f"question {uid} about 100%_sure",
                question="knee pain" if uid == 7 else "something",
                codes=[{"code": "E11.9" if uid == 9 else "I10", "system": "ICD-10-CM", "report": True}],
            )
        session.add(Account(email="user1@clinic1.example", tier=Tier.free, answered=2, created_at=NOW))


def ids(page: QueuePage) -> list[int]:
    return [row.id for row in page.rows]


def test_queue_filters_search_and_pages(db_engine) -> None:
    seed(db_engine)
    with session_scope(db_engine) as session:
        everything = queue_page(session, QueueFilter(), page_size=25)
        assert everything.total == 30 and everything.pages == 2 and len(everything.rows) == 25
        assert everything.counts["answered"] == 15 and everything.counts["needs_review"] == 15
        received = [row.received_at for row in everything.rows]
        assert received == sorted(received, reverse=True)
        second = queue_page(session, QueueFilter(page=2), page_size=25)
        assert len(second.rows) == 5 and not set(ids(second)) & set(ids(everything))
        assert queue_page(session, QueueFilter(page=99), page_size=25).page == 2

        review = queue_page(session, QueueFilter(status="needs_review"))
        assert review.total == 15 and {r.status for r in review.rows} == {"needs_review"}
        by_sender = queue_page(session, QueueFilter(sender="USER1@"))
        assert by_sender.total == 8 and {r.tier for r in by_sender.rows} == {"free"}
        day = queue_page(session, QueueFilter(since=date(2026, 11, 21), until=date(2026, 11, 21)))
        assert day.total == 10
        assert all(r.received_at.date() == date(2026, 11, 21) for r in day.rows)

        assert ids(queue_page(session, QueueFilter(q="knee"))) == [7]
        assert ids(queue_page(session, QueueFilter(q="e11.9"))) == [9]
        assert ids(queue_page(session, QueueFilter(q="#12"))) == [12]
        assert queue_page(session, QueueFilter(q="100%_")).total == 30  # LIKE wildcards are literal
        assert queue_page(session, QueueFilter(q="question%about")).total == 0
        assert queue_page(session, QueueFilter(q="question_1 ")).total == 0


def test_queue_filter_from_the_query_string() -> None:
    flt = parse_queue_filter(QueryParams("status=needs_review&sender=%20pat%20&since=2026-11-01&until=bad&page=3"))
    assert (flt.status, flt.sender, flt.since, flt.until, flt.page) == ("needs_review", "pat", date(2026, 11, 1), None, 3)
    assert flt.problems == ("until: not a date (YYYY-MM-DD)",)
    assert flt.query(page=4) == "status=needs_review&sender=pat&since=2026-11-01&page=4"
    odd = parse_queue_filter(QueryParams("status=evil&page=-2"))
    assert (odd.status, odd.page, odd.problems) == ("", 1, ("unknown status 'evil'",))


def test_accounts_page_shows_remaining_answers(db_engine) -> None:
    seed(db_engine)
    with session_scope(db_engine) as session:
        page = accounts_page(session, q="clinic1", page=1, policy=QuotaPolicy())
    [row] = page.rows
    assert (row.email, row.tier, row.answered, row.allowance, row.remaining) == ("user1@clinic1.example", "free", 2, 6, 4)


def test_durations_read_naturally() -> None:
    assert [duration(timedelta(seconds=s)) for s in (5, 125, 3600, 3 * 3600 + 60, 26 * 3600)] == [
        "5 s", "2 min", "1 h", "3 h 1 min", "1 d 2 h"]


STAFF = StaffSession(staff_id=1, email="lead@x.example", sid="s", csrf="token", expires=0)
MARK = "<x-evil "


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=40))
def test_nothing_a_sender_wrote_becomes_markup(text: str) -> None:
    hostile = f"{text}{MARK}onload=alert(1)>{text}</x-evil>"
    case = Case(id=5, mailbox="INBOX", uidvalidity=1, uid=5, sender=hostile, subject=hostile, question=hostile,
                message_id=hostile, status=CaseStatus.needs_review, reason="review_low_confidence",
                findings=[{"text": hostile, "codes": [hostile]}], attachments=[hostile], error=hostile,
                codes=[{"code": hostile, "system": hostile, "official": hostile, "evidence": [hostile], "report": True,
                        "score": 0.5, "confidence": 0.4}],
                received_at=NOW, updated_at=NOW)
    reply = ReplyView(id=3, status="failed", recipient=hostile, subject=hostile, message_id=hostile, attempts=1,
                      last_error=hostile, created_at=NOW, sent_at=None, next_attempt_at=NOW, text=hostile,
                      html_source=hostile)
    audit = [AuditEntry(at=NOW, actor="lead@x.example", action="reject", case_id=5, detail=hostile)]
    page = CasePage(case=case, account=QuotaState(hostile, Tier.guest, 0, 1), codes=case.codes, replies=[reply],
                    audit=audit, held=True, codes_for_editing=hostile)
    row = QueueRow(5, NOW, hostile, "guest", hostile, "needs_review", hostile, [hostile], "")
    queue = QueuePage({"needs_review": 1}, [row], 1, 1, 1, QueueFilter(sender=hostile, q=hostile))
    common = {"request_path": "/", "staff": STAFF, "flash": (hostile, "error")}
    rendered = [
        templates().get_template("case.html").render(c=page, poll_seconds=60, **common),
        templates().get_template("queue.html").render(q=queue, statuses=["needs_review"], **common),
    ]
    for html in rendered:
        assert MARK not in html and "<script" not in html
