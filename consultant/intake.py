"""PARSE and RECORD for a fetched batch: every message becomes a case row.

Intake never answers anything. Each message's outcome is decided from its
bytes alone (`classify.py`; in the match helper process, a batch ahead, when
there is one), then the whole batch is recorded in one short transaction:

* already known under this (mailbox, UIDVALIDITY, UID): nothing new;
* oversized (only the header was fetched) or unparseable: `quarantined`
  with the reason (too_large, unparseable, no_sender, ...), and so is a
  message whose FETCH response the server garbled (`unreadable`);
* machine mail (bounces, auto-replies, lists, our own mail): `ignored`; a
  bounce of one of our replies also marks that reply failed (`bounces.py`);
* mail our receiving server says fails DMARC (or SPF without DKIM):
  `quarantined` as unauthenticated, never answered or charged;
* a copy of a message already handled under other UIDs (same Message-ID and
  same bytes, e.g. after a UIDVALIDITY reset): `ignored` as duplicate;
* otherwise `received`, with the raw message kept for the answering stage.

The batch costs two statements whatever its size (one SELECT of the known
UIDs and the finished copies, one multi-row INSERT ... ON CONFLICT DO
NOTHING), written with SQLAlchemy Core: through the ORM, intake was two
transactions per message and a quarter of the pipeline's CPU
(docs/BENCHMARKS.md). A crash before the commit records nothing, and the
next poll fetches the same messages again; a UID another worker recorded
first is left as it is.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from datetime import datetime

from sqlalchemy import select, tuple_
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, Engine

from consultant import cases
from consultant.bounces import record_bounces
from consultant.classify import Outcome, classify_safely
from consultant.faults import crash_point
from consultant.inbox import FetchedMessage, MailRef
from consultant.models import Case, CaseStatus

log = logging.getLogger(__name__)
CASE = Case.__table__  # type: ignore[attr-defined]
DUPLICATE_KEEPS = ("message_id", "content_hash", "sender", "subject", "attachments")


def intake_batch(
    engine: Engine, messages: Sequence[FetchedMessage], *, own_address: str, now: datetime, authserv_id: str = "",
    classified: Mapping[MailRef, Outcome] | None = None,
) -> dict[MailRef, CaseStatus]:
    """Record every message of `messages` not yet known; returns the status of each one recorded now.
    `classified` holds outcomes decided ahead (by the match helper); the rest are classified here."""
    messages = [m for m in messages if not m.known]
    if not messages:
        return {}
    known = cases.recorded(engine, [m.ref for m in messages])
    outcomes = []
    for message in messages:
        crash_point("after_fetch")
        if message.ref not in known:
            ahead = classified.get(message.ref) if classified is not None else None
            outcomes.append(ahead or classify_safely(message, own_address=own_address, authserv_id=authserv_id))
    if not outcomes:
        return {}
    with engine.begin() as conn:
        _mark_duplicates(conn, outcomes)
        recorded = _insert(conn, outcomes, now=now)
        bounced = record_bounces(conn, [o.bounce for o in outcomes if o.bounce and o.ref in recorded], now=now)
    if bounced:
        log.info("%d of our replies bounced: marked failed", bounced)
    for outcome in outcomes:
        crash_point("after_record")
        if outcome.ref in recorded and outcome.status != CaseStatus.received:
            log.info("uid %s: %s (%s)", outcome.ref.uid, outcome.status.value, outcome.reason)
    return {o.ref: o.status for o in outcomes if o.ref in recorded}


def intake_message(
    engine: Engine, message: FetchedMessage, *, own_address: str, now: datetime, authserv_id: str = ""
) -> CaseStatus | None:
    """Record one message; its status, or None when it was known already (or another worker recorded it)."""
    recorded = intake_batch(engine, [message], own_address=own_address, now=now, authserv_id=authserv_id)
    return recorded.get(message.ref)


def _mark_duplicates(conn: Connection, outcomes: list[Outcome]) -> None:
    """A question whose Message-ID and bytes match an earlier, finished case is that case again.
    Without a Message-ID, the same bytes alone (P04)."""
    asked = [o for o in outcomes if o.status == CaseStatus.received and o.fields["content_hash"]]
    if not asked:
        return
    pairs = {(o.fields["message_id"], o.fields["content_hash"]) for o in asked}
    finished = {
        (message_id, content_hash)
        for message_id, content_hash in conn.execute(
            select(CASE.c.message_id, CASE.c.content_hash).where(
                tuple_(CASE.c.message_id, CASE.c.content_hash).in_(sorted(pairs)),
                CASE.c.status.in_([s.value for s in cases.FINISHED]),
            )
        ).all()
    }
    for outcome in asked:
        if (outcome.fields["message_id"], outcome.fields["content_hash"]) in finished:
            outcome.status, outcome.reason = CaseStatus.ignored, "duplicate"
            outcome.fields = {k: v for k, v in outcome.fields.items() if k in DUPLICATE_KEEPS}


def _insert(conn: Connection, outcomes: list[Outcome], *, now: datetime) -> set[MailRef]:
    """Insert the batch; a UID another worker recorded first is skipped. Returns the refs written."""
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    stmt = (
        insert(CASE)
        .on_conflict_do_nothing(index_elements=["mailbox", "uidvalidity", "uid"])
        .returning(CASE.c.mailbox, CASE.c.uidvalidity, CASE.c.uid)
    )
    rows = conn.execute(stmt, [o.row(now) for o in outcomes]).all()
    return {MailRef(mailbox, uidvalidity, uid) for mailbox, uidvalidity, uid in rows}
