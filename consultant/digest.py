"""The daily digest for staff: build the summary (data), render it, queue it as email.

    build_digest(session, now=...)   -> Digest (counts for the last day, cases
                                        waiting for review, failures, accounts
                                        at their limit)
    render_digest(digest)            -> (subject, text, html) from
                                        templates/email/digest.txt/.html
    queue_digest(session, digest, recipients=...)
                                     -> one outbox row per staff address

The worker's scheduler calls `send_daily_digest` once a day; the rows go
out with the next poll's send step, with the outbox's retries. Each row's
Message-ID is derived from the day and the recipient, so a job that runs
twice on one day queues nothing the second time. `consultant report`
prints the text part and `consultant report --html FILE` writes the HTML
part as a page.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime

from sqlalchemy import case as sql_case
from sqlalchemy import func
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from consultant.db import session_scope
from consultant.models import Account, Case, CaseStatus, Outbox, OutboxStatus, Tier
from consultant.quota import QuotaPolicy
from consultant.render import clean_header, render_parts

log = logging.getLogger(__name__)

WINDOW = timedelta(hours=24)
FAILED = (CaseStatus.failed, CaseStatus.quarantined)


@dataclass(frozen=True)
class CaseLine:
    id: int
    at: datetime
    sender: str
    subject: str
    status: str
    reason: str
    url: str


@dataclass(frozen=True)
class AccountLine:
    email: str
    tier: str
    answered: int
    allowance: int


@dataclass(frozen=True)
class Digest:
    since: datetime
    until: datetime
    counts: dict[str, int]  # cases received in the window, per status
    waiting: list[CaseLine]  # needs_review, oldest first
    waiting_total: int
    failures: list[CaseLine]  # failed or quarantined in the window, newest first
    failed_sends: int  # replies that could not be delivered and wait for a retry by staff
    at_limit: list[AccountLine]  # registered accounts with no answer left
    guests_at_limit: int
    admin_url: str

    @property
    def received(self) -> int:
        return sum(self.counts.values())


def build_digest(
    session: Session,
    *,
    now: datetime,
    admin_url: str = "",
    policy: QuotaPolicy | None = None,
    window: timedelta = WINDOW,
    limit: int = 50,
) -> Digest:
    policy = policy or QuotaPolicy()
    since = now - window
    base = admin_url.rstrip("/")
    counts = {status.value: 0 for status in CaseStatus}
    in_window = (Case.received_at > since) & (Case.received_at <= now)
    for status, count in session.exec(select(Case.status, func.count()).where(in_window).group_by(Case.status)):
        counts[CaseStatus(status).value] = count
    waiting_query = select(Case).where(Case.status == CaseStatus.needs_review)
    waiting = session.exec(waiting_query.order_by(col(Case.received_at), col(Case.id)).limit(limit)).all()
    waiting_total = session.exec(
        select(func.count()).select_from(Case).where(Case.status == CaseStatus.needs_review)
    ).one()
    failures = session.exec(
        select(Case)
        .where(col(Case.status).in_([s.value for s in FAILED]), Case.updated_at > since)
        .order_by(col(Case.updated_at).desc(), col(Case.id).desc())
        .limit(limit)
    ).all()
    failed_sends = session.exec(
        select(func.count()).select_from(Outbox).where(Outbox.status == OutboxStatus.failed)
    ).one()
    bonus = sql_case((col(Account.tier) == Tier.guest, 0), else_=policy.free_answers)
    allowance = policy.guest_answers + bonus + Account.extra_answers
    full = select(Account, allowance).where(Account.active.is_(True), Account.answered >= allowance)  # type: ignore[attr-defined]
    at_limit = [
        AccountLine(account.email, account.tier.value, account.answered, int(allowed))
        for account, allowed in session.exec(full.where(Account.tier != Tier.guest).order_by(Account.email).limit(limit))
    ]
    guests = session.exec(
        select(func.count()).select_from(Account).where(
            Account.tier == Tier.guest, Account.active.is_(True), Account.answered >= allowance  # type: ignore[attr-defined]
        )
    ).one()
    return Digest(
        since=since,
        until=now,
        counts=counts,
        waiting=[_line(c, c.received_at, base) for c in waiting],
        waiting_total=int(waiting_total),
        failures=[_line(c, c.updated_at, base) for c in failures],
        failed_sends=int(failed_sends),
        at_limit=at_limit,
        guests_at_limit=int(guests),
        admin_url=base,
    )


def _line(case: Case, at: datetime, base: str) -> CaseLine:
    assert case.id is not None
    return CaseLine(
        id=case.id,
        at=at,
        sender=case.sender,
        subject=clean_header(case.subject, limit=80),
        status=case.status.value,
        reason=case.reason,
        url=f"{base}/cases/{case.id}" if base else "",
    )


def digest_subject(digest: Digest) -> str:
    return f"CaseConsultant daily digest {digest.until:%Y-%m-%d}: {digest.waiting_total} waiting for review"


def render_digest(digest: Digest) -> tuple[str, str, str]:
    """The digest as (subject, text, html); the HTML is a whole page, fit for email or a file."""
    text, html = render_parts("digest", {"d": digest, "subject": digest_subject(digest)})
    return digest_subject(digest), text, html


def digest_message(digest: Digest, *, sender: str, to: str, message_id: str, now: datetime) -> bytes:
    subject, text, html = render_digest(digest)
    msg = EmailMessage()
    msg["From"] = f"CaseConsultant <{sender}>"
    msg["To"] = to
    msg["Subject"] = subject
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg.set_content(text)
    msg.add_alternative(html, subtype="html")
    return msg.as_bytes(policy=SMTP)


def queue_digest(
    session: Session, digest: Digest, *, recipients: tuple[str, ...] | list[str], address: str, now: datetime
) -> int:
    """One pending outbox row per recipient; none for a recipient who already has today's."""
    domain = address.rpartition("@")[2] or "localhost"
    queued = 0
    for recipient in recipients:
        tag = hashlib.sha256(recipient.lower().encode()).hexdigest()[:12]
        message_id = f"<digest-{digest.until:%Y%m%d}-{tag}@{domain}>"
        if session.exec(select(Outbox.id).where(Outbox.message_id == message_id)).first() is not None:
            continue
        raw = digest_message(digest, sender=address, to=recipient, message_id=message_id, now=now)
        session.add(Outbox(message_id=message_id, recipient=recipient, raw=raw, next_attempt_at=now, created_at=now))
        queued += 1
    return queued


def send_daily_digest(
    engine: Engine,
    *,
    recipients: tuple[str, ...] | list[str],
    address: str,
    admin_url: str,
    policy: QuotaPolicy,
    now: datetime,
) -> int:
    """The scheduled job: build today's digest and queue it for every staff address."""
    if not recipients:
        return 0
    with session_scope(engine) as session:
        digest = build_digest(session, now=now, admin_url=admin_url, policy=policy)
        queued = queue_digest(session, digest, recipients=recipients, address=address, now=now)
    log.info("daily digest queued for %d staff address(es)", queued)
    return queued
