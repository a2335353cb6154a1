"""What the admin pages show, read from the database into plain values (no HTTP here).

    parse_queue_filter(params) -> QueueFilter      the queue's filters from a query string
    queue_page(session, filter) -> QueuePage      counts per status, one page of cases
    case_page(session, case_id) -> CasePage       one case with its replies and history
    accounts_page(session, q, page) -> AccountsPage
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from email import message_from_bytes
from email import policy as email_policy
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import String, cast, func, or_
from sqlmodel import Session, col, select

from consultant.models import Account, AuditEntry, Case, CaseStatus, Outbox, OutboxStatus, Tier
from consultant.quota import QuotaPolicy, QuotaState, quota_state
from consultant.review import record_audit, reported_codes

STATUSES = [s.value for s in CaseStatus]


@dataclass(frozen=True)
class QueueFilter:
    status: str = ""
    sender: str = ""
    since: date | None = None
    until: date | None = None
    q: str = ""
    page: int = 1
    problems: tuple[str, ...] = ()

    def query(self, **changes: Any) -> str:
        """The query string for this filter with `changes` (e.g. page=2)."""
        f = replace(self, **changes)
        pairs = {"status": f.status, "sender": f.sender, "since": f.since.isoformat() if f.since else "",
                 "until": f.until.isoformat() if f.until else "", "q": f.q, "page": str(f.page) if f.page > 1 else ""}
        return urlencode({k: v for k, v in pairs.items() if v})


def parse_queue_filter(params: Mapping[str, str]) -> QueueFilter:
    problems: list[str] = []
    status = params.get("status", "").strip()
    if status and status not in STATUSES:
        problems.append(f"unknown status {status!r}")
        status = ""

    def day(name: str) -> date | None:
        text = params.get(name, "").strip()
        if not text:
            return None
        try:
            return date.fromisoformat(text)
        except ValueError:
            problems.append(f"{name}: not a date (YYYY-MM-DD)")
            return None

    page_text = params.get("page", "1").strip()
    page = int(page_text) if page_text.isdigit() and 0 < len(page_text) < 7 else 1
    return QueueFilter(
        status=status,
        sender=params.get("sender", "").strip()[:320],
        since=day("since"),
        until=day("until"),
        q=params.get("q", "").strip()[:200],
        page=max(page, 1),
        problems=tuple(problems),
    )


@dataclass(frozen=True)
class QueueRow:
    id: int
    received_at: datetime
    sender: str
    tier: str
    subject: str
    status: str
    reason: str
    codes: list[str]
    time_to_reply: str


@dataclass(frozen=True)
class QueuePage:
    counts: dict[str, int]
    rows: list[QueueRow]
    total: int
    page: int
    pages: int
    filter: QueueFilter


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def queue_page(session: Session, flt: QueueFilter, *, page_size: int = 25) -> QueuePage:
    counts = {status: 0 for status in STATUSES}
    for status, count in session.exec(select(Case.status, func.count()).group_by(Case.status)):
        counts[CaseStatus(status).value] = count
    conditions: list[Any] = []
    if flt.status:
        conditions.append(Case.status == CaseStatus(flt.status))
    if flt.sender:
        conditions.append(Case.sender.ilike(_like(flt.sender), escape="\\"))  # type: ignore[attr-defined]
    if flt.since:
        conditions.append(Case.received_at >= _day_start(flt.since))
    if flt.until:
        conditions.append(Case.received_at < _day_start(flt.until + timedelta(days=1)))
    if flt.q:
        pattern = _like(flt.q)
        matches = [
            Case.subject.ilike(pattern, escape="\\"),  # type: ignore[attr-defined]
            Case.question.ilike(pattern, escape="\\"),  # type: ignore[attr-defined]
            Case.sender.ilike(pattern, escape="\\"),  # type: ignore[attr-defined]
            cast(Case.codes, String).ilike(pattern, escape="\\"),
            Case.message_id == flt.q,
        ]
        number = flt.q.lstrip("#")
        if number.isdigit() and len(number) < 10:
            matches.append(Case.id == int(number))
        conditions.append(or_(*matches))
    total = session.exec(select(func.count()).select_from(Case).where(*conditions)).one()
    pages = max(math.ceil(total / page_size), 1)
    page = min(flt.page, pages)
    rows = session.exec(
        select(Case, Account.tier)
        .join(Account, Account.email == Case.sender, isouter=True)  # type: ignore[arg-type]
        .where(*conditions)
        .order_by(col(Case.received_at).desc(), col(Case.id).desc())
        .offset((page - 1) * page_size)
        .limit(page_size)
    ).all()
    return QueuePage(
        counts=counts,
        rows=[_queue_row(case, Tier(tier) if tier else None) for case, tier in rows],
        total=int(total),
        page=page,
        pages=pages,
        filter=replace(flt, page=page),
    )


def _queue_row(case: Case, tier: Tier | None) -> QueueRow:
    assert case.id is not None
    subject = " ".join(case.subject.split())
    return QueueRow(
        id=case.id,
        received_at=case.received_at,
        sender=case.sender,
        tier=(tier or Tier.guest).value,
        subject=subject if len(subject) <= 70 else subject[:69] + "…",
        status=case.status.value,
        reason=case.reason,
        codes=[str(c.get("code", "")) for c in reported_codes(case)],
        time_to_reply=duration(case.replied_at - case.received_at) if case.replied_at else "",
    )


def duration(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 60:
        return f"{seconds} s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


@dataclass(frozen=True)
class ReplyView:
    id: int
    status: str
    recipient: str
    subject: str
    message_id: str
    attempts: int
    last_error: str
    created_at: datetime
    sent_at: datetime | None
    next_attempt_at: datetime
    text: str
    html_source: str


@dataclass(frozen=True)
class CasePage:
    case: Case
    account: QuotaState
    codes: list[dict[str, Any]]
    replies: list[ReplyView]
    audit: list[AuditEntry]
    held: bool
    codes_for_editing: str
    raw_size: int = 0


def record_view(session: Session, case_id: int, *, actor: str, now: datetime, what: str) -> bool:
    """One audit row per look at a case's question or reply: who, when, what (checklist X10)."""
    if session.get(Case, case_id) is None:
        return False
    record_audit(session, actor=actor, action="view", now=now, case_id=case_id, detail=what)
    return True


def case_page(session: Session, case_id: int, *, policy: QuotaPolicy) -> CasePage | None:
    case = session.get(Case, case_id)
    if case is None:
        return None
    replies = [
        _reply_view(row)
        for row in session.exec(select(Outbox).where(Outbox.case_id == case_id).order_by(col(Outbox.id))).all()
    ]
    audit = list(session.exec(select(AuditEntry).where(AuditEntry.case_id == case_id).order_by(col(AuditEntry.id))))
    held = case.status == CaseStatus.needs_review and any(r.status == OutboxStatus.held.value for r in replies)
    editing = "\n".join(f"{c.get('system', '')} {c.get('code', '')}".strip() for c in reported_codes(case))
    return CasePage(
        case=case,
        account=quota_state(session, case.sender, policy=policy),
        codes=list(case.codes),
        replies=replies,
        audit=audit,
        held=held,
        codes_for_editing=editing,
        raw_size=len(case.raw or b""),
    )


def _reply_view(row: Outbox) -> ReplyView:
    assert row.id is not None
    message = message_from_bytes(row.raw, policy=email_policy.default)
    text_part = message.get_body(preferencelist=("plain",))
    html_part = message.get_body(preferencelist=("html",))
    return ReplyView(
        id=row.id,
        status=row.status.value,
        recipient=row.recipient,
        subject=str(message.get("Subject", "")),
        message_id=row.message_id,
        attempts=row.attempts,
        last_error=row.last_error,
        created_at=row.created_at,
        sent_at=row.sent_at,
        next_attempt_at=row.next_attempt_at,
        text=text_part.get_content() if text_part is not None else "",  # type: ignore[attr-defined]
        html_source=html_part.get_content() if html_part is not None else "",  # type: ignore[attr-defined]
    )


def reply_html(session: Session, case_id: int, outbox_id: int) -> str | None:
    row = session.get(Outbox, outbox_id)
    if row is None or row.case_id != case_id:
        return None
    return _reply_view(row).html_source


@dataclass(frozen=True)
class AccountRow:
    id: int
    email: str
    tier: str
    answered: int
    allowance: int
    remaining: int
    extra_answers: int
    active: bool
    created_at: datetime


@dataclass(frozen=True)
class AccountsPage:
    rows: list[AccountRow]
    total: int
    page: int
    pages: int
    q: str

    def query(self, page: int) -> str:
        return urlencode({k: v for k, v in {"q": self.q, "page": str(page)}.items() if v})


def accounts_page(session: Session, *, q: str, page: int, policy: QuotaPolicy, page_size: int = 50) -> AccountsPage:
    q = q.strip()[:320]
    conditions = [Account.email.ilike(_like(q), escape="\\")] if q else []  # type: ignore[attr-defined]
    total = session.exec(select(func.count()).select_from(Account).where(*conditions)).one()
    pages = max(math.ceil(total / page_size), 1)
    page = min(max(page, 1), pages)
    accounts = session.exec(
        select(Account).where(*conditions).order_by(Account.email).offset((page - 1) * page_size).limit(page_size)
    ).all()
    rows = []
    for a in accounts:
        assert a.id is not None
        allowance = policy.allowance(tier=a.tier, extra_answers=a.extra_answers)
        rows.append(AccountRow(a.id, a.email, a.tier.value, a.answered, allowance, max(allowance - a.answered, 0),
                               a.extra_answers, a.active, a.created_at))
    return AccountsPage(rows=rows, total=int(total), page=page, pages=pages, q=q)
