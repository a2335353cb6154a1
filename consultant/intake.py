"""PARSE and RECORD for one fetched message: every message becomes a case row.

`intake_message` never answers anything. It parses the raw bytes and
records the outcome in one short transaction:

* already known under this (mailbox, UIDVALIDITY, UID): nothing new;
* oversized (only the header was fetched) or unparseable: `quarantined`
  with the reason (too_large, unparseable, no_sender, ...);
* machine mail (bounces, auto-replies, lists, our own mail): `ignored`;
* mail our receiving server says fails DMARC (or SPF without DKIM):
  `quarantined` as unauthenticated, never answered or charged;
* a copy of a message already handled under other UIDs (same Message-ID and
  same bytes, e.g. after a UIDVALIDITY reset): `ignored` as duplicate;
* otherwise `received`, with the raw message kept for the answering stage.

It returns the case's status so the caller knows whether the message may be
acknowledged yet (everything but `received` is final or held by staff).
"""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.engine import Engine

from consultant import cases
from consultant.accounts import detect_command
from consultant.db import session_scope
from consultant.errors import SenderError
from consultant.inbox import FetchedMessage, MailRef
from consultant.machine import machine_reason
from consultant.models import CaseStatus
from consultant.parse import parse_message
from consultant.senderauth import authentication_verdict

log = logging.getLogger(__name__)


def intake_message(
    engine: Engine, message: FetchedMessage, *, own_address: str, now: datetime, authserv_id: str = ""
) -> CaseStatus | None:
    """Record `message` as a case; returns its status, or None if another worker owns the insert."""
    ref = message.ref
    with session_scope(engine) as session:
        existing = cases.find_case(session, ref)
        if existing is not None:
            return existing.status

    if message.truncated:
        return _record(engine, ref, CaseStatus.quarantined, "too_large", now=now)
    try:
        question = parse_message(message.raw)
    except SenderError as exc:
        return _record(engine, ref, CaseStatus.quarantined, exc.reason, now=now, raw=message.raw)

    meta = dict(
        message_id=question.message_id[:998],
        content_hash=question.content_hash,
        sender=question.sender,
        subject=question.subject,
        attachments=list(question.attachments),
    )
    reason = machine_reason(question, own_address=own_address)
    if reason is not None:
        return _record(engine, ref, CaseStatus.ignored, reason, now=now, **meta)
    if authentication_verdict(question.headers, authserv_id=authserv_id) == "fail":
        return _record(engine, ref, CaseStatus.quarantined, "unauthenticated", now=now, raw=message.raw, **meta)

    with session_scope(engine) as session:
        duplicate = cases.find_duplicate(
            session, message_id=question.message_id, content_hash=question.content_hash, ref=ref
        )
        if duplicate is not None:
            case = cases.record_case(session, ref, now=now, status=CaseStatus.ignored, reason="duplicate", **meta)
            return CaseStatus.ignored if case is not None else None
        command = detect_command(question.subject, question.body)
        case = cases.record_case(
            session, ref, now=now, question=question.text, raw=message.raw,
            kind=command.kind if command else "question", **meta,
        )
    return CaseStatus.received if case is not None else None


def _record(
    engine: Engine, ref: MailRef, status: CaseStatus, reason: str, *, now: datetime, **fields: object
) -> CaseStatus | None:
    with session_scope(engine) as session:
        case = cases.record_case(session, ref, now=now, status=status, reason=reason, **fields)
    if case is None:
        return None
    log.info("uid %s: %s (%s)", ref.uid, status.value, reason)
    return status
