"""The stages in order, and the one error boundary.

    fetch -> parse -> record -> match -> quota -> render -> send -> acknowledge

`run_once` is the only loop body: the scheduler, the CLI and the tests all
call it. For each fetched message `process_message`:

1. skips work already done (the case exists and is finished: just acknowledge);
2. parses; a SenderError quarantines the case with its reason;
3. ignores machine mail (bounces, auto-replies, lists, our own mail) and
   copies of a message already answered under another UID;
4. records the case as `received` (committed) before anything else;
5. matches, then in ONE transaction charges the quota, writes the reply to
   the outbox and closes the case (answered / over_quota);
6. returns the MailRef to acknowledge.

The mailbox is acknowledged (moved to Processed) only after that
transaction, and replies are sent from the outbox afterwards, so a crash at
any point either repeats harmless work or leaves the reply waiting in the
outbox, never a lost question or a second reply.

SenderErrors end a case; ServiceErrors (IMAP, SMTP, database) leave the
message in the mailbox for the next poll; any other exception on one message
marks that case failed and the batch goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone

from sqlalchemy.engine import Engine
from consultant import cases
from consultant.db import session_scope
from consultant.errors import SenderError, ServiceError
from consultant.inbox import FetchedMessage, Inbox, MailRef
from consultant.machine import machine_reason
from consultant.match.base import MatchResult, Matcher, Suggestion
from consultant.accounts import Command, confirm_registration, detect_command, start_registration
from consultant.models import Case, CaseStatus
from consultant.outbox import Transport, deliver_pending
from consultant.parse import Question, parse_message
from consultant.quota import QuotaPolicy, charge_answer
from consultant.replies import ReplyTarget, enqueue_reply

log = logging.getLogger(__name__)



@dataclass(frozen=True)
class ReviewPolicy:
    """Which replies wait for staff instead of going out (`needs_review`)."""

    below_confidence: float = 0.0  # hold replies whose best code is less sure than this
    no_codes: bool = False  # hold questions where nothing was found

    def hold_reason(self, result: MatchResult, shown: list[Suggestion]) -> str:
        if not shown:
            return "review_no_codes" if self.no_codes else ""
        if result.confidence < self.below_confidence:
            return "review_low_confidence"
        return ""


def utcnow() -> datetime:
    """The one clock: aware UTC, as the database columns require."""
    return datetime.now(timezone.utc)


@dataclass
class Services:
    """Everything run_once needs; built by services.py, or by tests with fakes."""

    engine: Engine
    inbox: Inbox
    transport: Transport
    matcher: Matcher
    address: str
    policy: QuotaPolicy = field(default_factory=QuotaPolicy)
    batch_size: int = 100
    send_attempts: int = 6
    keep_raw: bool = True
    review: ReviewPolicy = field(default_factory=ReviewPolicy)

    @property
    def domain(self) -> str:
        return self.address.rpartition("@")[2] or "localhost"


@dataclass(frozen=True)
class RunSummary:
    fetched: int = 0
    acknowledged: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    sent: int = 0
    send_retry: int = 0
    send_failed: int = 0


def run_once(services: Services, *, now: Callable[[], datetime] = utcnow) -> RunSummary:
    """Fetch one bounded batch, process each message, acknowledge, then send."""
    messages = services.inbox.fetch_batch(services.batch_size)
    done: list[MailRef] = []
    statuses: dict[str, int] = {}
    for message in messages:
        outcome = process_message(services, message, now=now())
        if outcome is not None:
            done.append(message.ref)
            statuses[outcome] = statuses.get(outcome, 0) + 1
    services.inbox.acknowledge(done)
    counts = deliver_pending(
        services.engine,
        services.transport,
        sender=services.address,
        now=now(),
        max_attempts=services.send_attempts,
    )
    return RunSummary(
        fetched=len(messages),
        acknowledged=len(done),
        statuses=statuses,
        sent=counts["sent"],
        send_retry=counts["retry"],
        send_failed=counts["failed"],
    )


def process_message(services: Services, message: FetchedMessage, *, now: datetime) -> str | None:
    """Handle one message; returns the case status to acknowledge, or None to leave it."""
    ref = message.ref
    try:
        return _process(services, message, now=now)
    except ServiceError as exc:
        log.warning("uid %s: service error, will retry on the next poll: %s", ref.uid, exc)
        return None
    except Exception:  # noqa: BLE001 - one bad message must never stop the worker
        log.exception("uid %s: unexpected error; case marked failed", ref.uid)
        return _mark_failed(services, ref, now=now)


def _process(services: Services, message: FetchedMessage, *, now: datetime) -> str | None:
    ref = message.ref
    engine = services.engine
    with session_scope(engine) as session:
        existing = cases.find_case(session, ref)
        if existing is not None and existing.status in cases.FINISHED:
            return existing.status.value  # handled before a crash or a failed acknowledge
    raw = message.raw if services.keep_raw else None

    if message.truncated:
        return _record_final(services, ref, CaseStatus.quarantined, "too_large", now=now, raw=None)
    try:
        question = parse_message(message.raw)
    except SenderError as exc:
        return _record_final(services, ref, CaseStatus.quarantined, exc.reason, now=now, raw=raw)

    meta = dict(
        message_id=question.message_id[:998],
        content_hash=question.content_hash,
        sender=question.sender,
        subject=question.subject,
        attachments=list(question.attachments),
    )
    reason = machine_reason(question, own_address=services.address)
    if reason is not None:
        return _record_final(services, ref, CaseStatus.ignored, reason, now=now, raw=raw, **meta)

    with session_scope(engine) as session:
        duplicate = cases.find_duplicate(
            session, message_id=question.message_id, content_hash=question.content_hash, ref=ref
        )
        if duplicate is not None:
            case = cases.record_case(session, ref, now=now, status=CaseStatus.ignored, reason="duplicate", **meta)
            return CaseStatus.ignored.value if case is not None else None
        case = existing or cases.record_case(session, ref, now=now, question=question.text, raw=raw, **meta)
        if case is None:
            return None  # another worker recorded it first and owns it
        case_id = case.id

    command = detect_command(question.subject, question.body)
    if command is not None:
        return _answer_command(services, case_id, question, command, now=now)
    result = services.matcher.match(question.text)
    return _answer(services, case_id, question, result, now=now)


def _target(question: Question) -> ReplyTarget:
    return ReplyTarget(
        to=question.sender,
        subject=question.subject,
        message_id=question.message_id,
        references=question.references,
        name=_first_name(question),
    )


def _answer(services: Services, case_id: int | None, question: Question, result: MatchResult, *, now: datetime) -> str:
    """Charge, reply (or hold for review) and close the case, in one transaction."""
    shown = [s for s in result.codes if s.report]
    hold_reason = services.review.hold_reason(result, shown)
    with session_scope(services.engine) as session:
        case = session.get(Case, case_id)
        assert case is not None
        if case.status in cases.FINISHED or case.status == CaseStatus.needs_review:
            return case.status.value
        if hold_reason:
            kind, status, reason = ("reply" if shown else "no_match"), CaseStatus.needs_review, hold_reason
        elif not shown:
            kind, status, reason = "no_match", CaseStatus.answered, "no_codes"
        elif charge_answer(session, question.sender, policy=services.policy, now=now):
            kind, status, reason = "reply", CaseStatus.answered, ""
        else:
            kind, status, reason = "over_quota", CaseStatus.over_quota, "over_quota"
        enqueue_reply(
            session,
            case,
            _target(question),
            kind=kind,
            policy=services.policy,
            address=services.address,
            now=now,
            codes=shown if kind == "reply" else (),
            findings=[f.text for f in result.findings],
            hold=status == CaseStatus.needs_review,
        )
        cases.close_case(
            session,
            case,
            status,
            now=now,
            reason=reason,
            confidence=result.confidence,
            codes=[code_record(s) for s in result.codes[:20]],
            findings=[
                {"text": f.text, "negated": f.negated, "uncertain": f.uncertain, "history": f.history,
                 "codes": list(f.codes)}
                for f in result.findings
            ],
        )
    log.info("case %s: %s", case_id, status.value)
    return status.value


def _answer_command(
    services: Services, case_id: int | None, question: Question, command: Command, *, now: datetime
) -> str:
    """register / confirmation code / balance / help: answered, never charged."""
    extra: dict[str, object] = {}
    with session_scope(services.engine) as session:
        case = session.get(Case, case_id)
        assert case is not None
        if case.status in cases.FINISHED:
            return case.status.value
        kind = command.kind
        if command.kind == "register":
            code = start_registration(session, question.sender, now=now)
            kind, extra = ("register", {"code": code}) if code else ("balance", {})
        elif command.kind == "confirm":
            kind = "registered" if confirm_registration(session, question.sender, command.code, now=now) else "register_failed"
        enqueue_reply(
            session, case, _target(question), kind=kind, policy=services.policy, address=services.address,
            now=now, extra=extra,
        )
        cases.close_case(session, case, CaseStatus.answered, now=now, reason=f"command_{command.kind}", kind=command.kind)
    return CaseStatus.answered.value


def code_record(s: Suggestion) -> dict[str, object]:
    """What the case keeps of a suggestion (codes and metadata outlive the purge of the text)."""
    return {
        "code": s.code,
        "system": s.system,
        "status": s.status,
        "score": round(s.score, 4),
        "confidence": round(s.confidence, 4),
        "report": s.report,
        "official": s.official,
        "replaced_by": list(s.replaced_by),
        "evidence": list(s.evidence),
        "more_specific": s.more_specific,
    }


def _first_name(question: Question) -> str:
    name = question.sender_name.strip().strip('"')
    if not name or "@" in name:
        return ""
    first = name.split(",")[-1].split()[0] if "," in name else name.split()[0]
    return first[:40] if first.isalpha() else ""


def _record_final(
    services: Services, ref: MailRef, status: CaseStatus, reason: str, *, now: datetime, raw: bytes | None, **meta: object
) -> str | None:
    with session_scope(services.engine) as session:
        case = cases.find_case(session, ref)
        if case is None:
            case = cases.record_case(session, ref, now=now, status=status, reason=reason, raw=raw, **meta)
            if case is None:
                return None
        else:
            cases.close_case(session, case, status, now=now, reason=reason)
    log.info("uid %s: %s (%s)", ref.uid, status.value, reason)
    return status.value


def _mark_failed(services: Services, ref: MailRef, *, now: datetime) -> str | None:
    try:
        with session_scope(services.engine) as session:
            case = cases.find_case(session, ref)
            if case is None:
                case = cases.record_case(session, ref, now=now, status=CaseStatus.failed, reason="internal_error")
            else:
                cases.close_case(session, case, CaseStatus.failed, now=now, reason="internal_error",
                                 error="unexpected error while processing; see the worker log")
        return CaseStatus.failed.value
    except Exception:  # noqa: BLE001 - the database itself is failing: retry next poll
        log.exception("uid %s: could not record the failure", ref.uid)
        return None
