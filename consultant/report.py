"""What staff see in the terminal: counts per status, the oldest waiting, recent failures."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import func
from sqlmodel import Session, select

from consultant.models import Case, CaseStatus, Outbox, OutboxStatus, PollState


@dataclass(frozen=True)
class QueueReport:
    counts: dict[str, int]
    pending_replies: int
    oldest_waiting: list[tuple[int, datetime, str]]
    recent_failures: list[tuple[int, datetime, str]]
    mailboxes: list[tuple[str, str]]


def build_report(session: Session, *, limit: int = 10) -> QueueReport:
    counts = {status.value: 0 for status in CaseStatus}
    for status, count in session.exec(select(Case.status, func.count()).group_by(Case.status)).all():
        counts[CaseStatus(status).value] = count
    pending = session.exec(
        select(func.count()).select_from(Outbox).where(Outbox.status == OutboxStatus.pending)
    ).one()
    waiting = session.exec(
        select(Case.id, Case.received_at, Case.reason)
        .where(Case.status == CaseStatus.received)
        .order_by(Case.received_at)
        .limit(limit)
    ).all()
    failures = session.exec(
        select(Case.id, Case.updated_at, Case.reason)
        .where(Case.status.in_([CaseStatus.failed.value, CaseStatus.quarantined.value]))  # type: ignore[attr-defined]
        .order_by(Case.updated_at.desc())  # type: ignore[union-attr]
        .limit(limit)
    ).all()
    polls = session.exec(select(PollState)).all()
    mailboxes = [(p.mailbox, "ok" if p.consecutive_failures == 0 else f"failing: {p.last_error}") for p in polls]
    return QueueReport(counts, int(pending), list(waiting), list(failures), mailboxes)


def format_report(report: QueueReport) -> str:
    lines = ["Cases by status:"]
    width = max(len(s) for s in report.counts)
    for status, count in report.counts.items():
        lines.append(f"  {status:<{width}}  {count}")
    lines.append(f"Replies waiting to be sent: {report.pending_replies}")
    lines.append("Oldest waiting cases:")
    lines += [f"  #{cid}  received {at:%Y-%m-%d %H:%M}" for cid, at, _ in report.oldest_waiting] or ["  none"]
    for mailbox, health in report.mailboxes:
        lines.append(f"Mailbox {mailbox}: {health}")
    lines.append("Recent failures and quarantines:")
    lines += [f"  #{cid}  {at:%Y-%m-%d %H:%M}  {reason}" for cid, at, reason in report.recent_failures] or ["  none"]
    return "\n".join(lines)
