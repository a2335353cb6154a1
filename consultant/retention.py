"""Retention: purge what people wrote once it is older than the retention period.

Questions may carry patient information, so after `days` (default 30) a
case keeps only its metadata (status, reason, sender, times, message ids)
and the codes it was answered with; the question text, subject, the
sender's display name, attachment names, findings text, raw message and the
stored copy of the reply are removed. Purged cases are stamped `purged_at` and never purged twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import update
from sqlalchemy.engine import Engine

from consultant.db import session_scope
from consultant.models import Case, Outbox, OutboxStatus


def purge_expired(engine: Engine, *, now: datetime, days: int) -> int:
    """Purge cases received more than `days` ago; returns how many were purged."""
    cutoff = now - timedelta(days=days)
    with session_scope(engine) as session:
        expired = [
            case_id
            for (case_id,) in session.execute(
                Case.__table__.select()  # type: ignore[attr-defined]
                .with_only_columns(Case.id)
                .where(Case.received_at < cutoff, Case.purged_at.is_(None))  # type: ignore[union-attr]
            ).all()
        ]
        for start in range(0, len(expired), 500):
            chunk = expired[start : start + 500]
            session.execute(
                update(Case)
                .where(Case.id.in_(chunk))  # type: ignore[union-attr]
                .values(question="", subject="", sender_name="", reference_ids=[], raw=None, attachments=[],
                        findings=[], purged_at=now)
                .execution_options(synchronize_session=False)
            )
            session.execute(
                update(Outbox)
                .where(Outbox.case_id.in_(chunk), Outbox.status != OutboxStatus.pending)  # type: ignore[union-attr]
                .values(raw=b"")
                .execution_options(synchronize_session=False)
            )
    return len(expired)
