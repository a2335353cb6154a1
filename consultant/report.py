"""What staff see in the terminal: counts per status, the oldest waiting, recent failures.

`summary_text` adds the daily digest's summary (the last 24 hours, cases
waiting for review, accounts at their limit); `write_html` writes that
digest as a page (`consultant report --html FILE`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from sqlalchemy import func
from sqlmodel import Session, select

from consultant.digest import build_digest, render_digest
from consultant.models import Case, CaseStatus, Outbox, OutboxStatus, PollState
from consultant.quota import QuotaPolicy


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


def summary_text(session: Session, *, now: datetime, admin_url: str = "", policy: QuotaPolicy | None = None) -> str:
    """The queue report, then the daily digest's text: what `consultant report` prints."""
    _, digest, _ = render_digest(build_digest(session, now=now, admin_url=admin_url, policy=policy))
    return format_report(build_report(session)) + "\n\n" + digest.rstrip("\n")


def write_html(
    session: Session, path: Path, *, now: datetime, admin_url: str = "", policy: QuotaPolicy | None = None
) -> None:
    """Write the daily digest as an HTML page to `path`."""
    _, _, html = render_digest(build_digest(session, now=now, admin_url=admin_url, policy=policy))
    path.write_text(html, encoding="utf-8")
