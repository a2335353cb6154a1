"""The stages in order, and the one error boundary.

    fetch -> parse -> record -> match -> quota -> render -> send -> acknowledge

`run_once` is the only loop body: the scheduler, the CLI and the tests all
call it. One pass:

1. **fetch + record** (only the holder of the mailbox lease, `Intake`):
   fetch one bounded batch and record every message as a case, the batch in
   one transaction (`intake.py`); machine mail, duplicates and unreadable
   mail end there. Later batches are fetched while cases still wait, and
   with a match helper process they are fetched on a thread of the pass
   and parsed in the helper meanwhile;
2. **answer**: claim `received` cases ten at a time (any worker; claims
   skip rows other workers hold), match them, then in ONE transaction for
   the chunk charge each sender's quota, write each reply to the outbox (or
   hold it for staff review) and close each case; should one case fail,
   nothing of the chunk is committed and each is answered alone
   (`_answer_group`), so one case's error is still its own;
3. **acknowledge** (lease holder): move the messages whose cases are closed
   to the processed folder, one command for the batch;
4. **send**: drain the outbox over one SMTP connection (`outbox.py`), here,
   or on the background sender's threads, a connection each (`consultant
   run`), which the answering step wakes every few replies.

Because the reply is in the outbox before the mailbox changes, and the
outbox row is marked sent only after the SMTP server took it, a crash at any
point repeats harmless work or leaves a reply waiting, never a lost question
or a second reply (except the unavoidable crash between the server's 250
and our commit, which resends the same Message-ID once and flags the case:
one message per SMTP connection can be in that window).

SenderErrors end a case; ServiceErrors (IMAP, SMTP, database) abandon the
pass for a retry on the next poll; any other exception on one case marks
that case failed and the rest of the batch goes on.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta

from sqlalchemy import bindparam
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlmodel import select

from consultant import cases
from consultant.accounts import confirm_registration, start_registration
from consultant.classify import Outcome
from consultant.commands import Command, detect_command
from consultant.db import Db, connection_of, session_scope
from consultant.errors import SenderError, ServiceError
from consultant.faults import crash_point
from consultant.inbox import FetchedMessage, Inbox, MailRef
from consultant.intake import intake_batch
from consultant.lease import acquire_lease, worker_identity
from consultant.match.base import Matcher, MatchResult, Suggestion
from consultant.models import Case, CaseStatus, Outbox
from consultant.outbox import BackgroundSender, Transport, deliver_pending
from consultant.parse import Question, parse_message
from consultant.prepared import Prepared, typed_param
from consultant.quota import QuotaPolicy, QuotaState, charge_answer, lock_account
from consultant.replies import ReplyTarget, enqueue_reply

log = logging.getLogger(__name__)

CLAIM_TTL = timedelta(minutes=5)
OUTBOX = Outbox.__table__  # type: ignore[attr-defined]
CASE = Case.__table__  # type: ignore[attr-defined]
# Cases are claimed a few at a time: the lease holder refills before the others run dry, and
# at the end of a burst no worker still holds a pile that another, idle, could have shared.
CLAIM_CHUNK = 10
# A matcher that works ahead (`MatchHelper`) is kept this many chunks ahead of the answering:
# a run of clinic notes takes it longer than answering them takes this thread.
MATCH_AHEAD = 3
ANSWERS_PER_PASS = 200  # a pass ends after this many, so a stop request or the lease renewal comes soon


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


@dataclass(frozen=True)
class ReplyCaps:
    """Automatic replies per sender: stops ping-pong with a naive autoresponder (L12, L15)."""

    per_hour: int = 5
    per_day: int = 20
    over_quota_window: timedelta = timedelta(days=1)  # one over-quota notice per sender per window


def utcnow() -> datetime:
    """The one clock: aware UTC, as the database columns require."""
    return datetime.now(UTC)


def new_worker_id() -> str:
    return worker_identity()


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
    send_connections: int = 1  # SMTP connections of a background sender (`scheduling.start_background_sender`)
    review: ReviewPolicy = field(default_factory=ReviewPolicy)
    worker_id: str = field(default_factory=new_worker_id)
    lease_ttl: timedelta = timedelta(minutes=2)
    mailbox_name: str = "INBOX"
    authserv_id: str = ""  # trust Authentication-Results only from this server
    caps: ReplyCaps = field(default_factory=lambda: ReplyCaps())
    sender: BackgroundSender | None = None  # sends on threads of its own (`consultant run`); inline when None

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
    polled: bool = True


def run_once(services: Services, *, now: Callable[[], datetime] = utcnow) -> RunSummary:
    """One pass: fetch and record (lease holder), answer claimed cases, acknowledge, send."""
    polled = acquire_lease(
        services.engine, f"poll:{services.address}:{services.mailbox_name}",
        holder=services.worker_id, ttl=services.lease_ttl, now=now(),
    )
    intake = Intake(services, now=now) if polled else None
    try:
        if intake is not None:
            intake.start()
        statuses = answer_claimed(services, now=now, refill=intake)
        if intake is not None:
            intake.record_ahead()  # a batch still being classified ahead is recorded before the pass ends
            intake.acknowledge_closed()
    finally:
        if intake is not None:
            intake.close()
    acknowledged = intake.acknowledged if intake is not None else 0
    if services.sender is not None:
        services.sender.wake()
        counts = {"sent": 0, "retry": 0, "failed": 0}
    else:
        counts = deliver_pending(
            services.engine, services.transport, sender=services.address, now=now(),
            max_attempts=services.send_attempts, holder=services.worker_id,
        )
    return RunSummary(
        fetched=intake.new if intake is not None else 0,
        acknowledged=acknowledged,
        statuses=statuses,
        sent=counts["sent"],
        send_retry=counts["retry"],
        send_failed=counts["failed"],
        polled=polled,
    )


class Intake:
    """The mailbox lease holder's fetching and recording during one pass.

    Without help, a batch is fetched and recorded at once whenever fewer than half a batch
    of cases wait (`refill`). With a matcher that also classifies (`MatchHelper.classify_ahead`),
    the next batch is fetched as soon as fewer than a whole batch wait and is parsed and
    sorted in the helper process while this thread answers; it is recorded once fewer than
    half a batch wait and the helper has finished it, when there is nothing else to answer
    (then it is waited for), or when the pass ends. The pass's first batch goes the same way
    (`start`), so with a helper this thread does not parse the batches itself. Recording is
    the same either way (`intake_batch`, which classifies here whatever the helper could not).
    With the helper, the mailbox is used from one IMAP thread of the pass only (`_imap`): a
    fetch is started there and this thread answers on until it has come back, and the
    acknowledgements go the same way, in order after it. Waiting for fetches and moves
    took the answering thread an eighth of a round before (py-spy, bench/run.py).
    A fetch that finds nothing new ends the fetching for the pass: the mailbox is not searched
    again before every claim. Messages stay in the folder until their cases close, and a fetch
    looks for new mail among the first few batches' worth of UIDs only (`inbox.SCAN_BATCHES`):
    when those are all recorded, the closed ones are acknowledged there and then, and the
    fetch looks again behind them. Otherwise a pass in which other workers answer most of the
    questions would stop fetching after those few batches, and the others would wait for the
    pass to end."""

    def __init__(self, services: Services, *, now: Callable[[], datetime]) -> None:
        self.services = services
        self.now = now
        self.seen: dict[MailRef, None] = {}  # every message looked at this pass and not yet acknowledged
        self.new = 0
        self.acknowledged = 0
        self._classify_ahead = getattr(services.matcher, "classify_ahead", None)
        self._ahead: tuple[list[FetchedMessage], int] | None = None  # fetched, being classified
        self._drained = False  # a fetch found nothing new: no more fetching this pass
        self._imap = ThreadPoolExecutor(1, thread_name_prefix="imap") if self._classify_ahead else None
        self._fetching: Future[list[FetchedMessage]] | None = None

    def close(self) -> None:
        """End the pass's IMAP thread, after what it is doing (a fetch never collected is
        simply fetched again by the next pass: nothing was recorded of it)."""
        if self._imap is not None:
            self._imap.shutdown(wait=True)

    def start(self) -> None:
        """The pass's first fetch. With a helper that classifies, the batch goes to it like any
        other (this thread does not parse it), and is recorded when the claims run dry."""
        if self._classify_ahead is None:
            self._record(self._fetch())
        else:
            self._fetch_ahead()

    def refill(self) -> None:
        """Called before each claim: fetch (and record, or classify ahead) by how many cases
        wait unclaimed; once the mailbox is drained for this pass, not even that is counted."""
        self._fetched(wait=False)
        if self._drained:
            return
        batch_size = self.services.batch_size
        waiting = cases.waiting(self.services.engine, now=self.now())
        if self._classify_ahead is None:
            if waiting < batch_size // 2:
                self._record(self._fetch())
            return
        if self._ahead is not None and waiting < batch_size // 2:
            self.record_ahead(wait=False)
        if self._ahead is None and self._fetching is None and waiting < batch_size:
            self._fetch_ahead()

    def _fetch_ahead(self) -> None:
        """Fetch a batch on the IMAP thread; its new messages go to the helper (`_fetched`)."""
        assert self._imap is not None
        self._fetching = self._imap.submit(self._fetch)

    def _fetched(self, *, wait: bool) -> None:
        """Hand the fetched batch's new messages to the helper once the fetch is back (with
        `wait`, once it is); a fetch that failed raises here, as it would have in `_fetch`."""
        if self._fetching is None or not (wait or self._fetching.done()):
            return
        batch = self._fetching.result()
        self._fetching = None
        fresh = [m for m in batch if not m.known]
        if fresh:
            self._ahead = batch, self._classify_ahead(  # type: ignore[misc]
                fresh, own_address=self.services.address, authserv_id=self.services.authserv_id)

    def record_ahead(self, *, wait: bool = True) -> bool:
        """Record the batch being classified ahead, if there is one (True then). With `wait`
        false, only if the helper has finished it: this thread has claimed cases to answer
        meanwhile, and stalled here for a fifth of a round before (py-spy, bench/run.py)."""
        self._fetched(wait=wait)
        if self._ahead is None:
            return False
        batch, ticket = self._ahead
        if not wait and not self.services.matcher.classified_ready(ticket):  # type: ignore[attr-defined]
            return False
        self._ahead = None
        self._record(batch, self.services.matcher.classified(ticket))  # type: ignore[attr-defined]
        return True

    def _fetch(self) -> list[FetchedMessage]:
        batch = self._fetch_once()
        if batch and all(m.known for m in batch) and self._acknowledge_closed():
            batch = self._fetch_once()  # the closed ones made room: look behind them
        self._drained = all(m.known for m in batch)
        return batch

    def _fetch_once(self) -> list[FetchedMessage]:
        engine = self.services.engine
        batch = self.services.inbox.fetch_batch(self.services.batch_size, known=lambda refs: cases.recorded(engine, refs))
        self.seen.update(dict.fromkeys(m.ref for m in batch))
        return batch

    def acknowledge_closed(self) -> bool:
        """Move the messages seen this pass whose cases are closed (at the end of the pass, and
        during it when a fetch finds no room); whether there were any."""
        if self._imap is not None:
            return self._imap.submit(self._acknowledge_closed).result()
        return self._acknowledge_closed()

    def _acknowledge_closed(self) -> bool:
        """`acknowledge_closed` on the thread that holds the mailbox (`_fetch` calls it there)."""
        moved = acknowledge(self.services, list(self.seen))
        for ref in moved:
            del self.seen[ref]
        self.acknowledged += len(moved)
        return bool(moved)

    def _record(self, batch: list[FetchedMessage], classified: dict[MailRef, Outcome] | None = None) -> None:
        services = self.services
        intake_batch(services.engine, batch, own_address=services.address, now=self.now(),
                     authserv_id=services.authserv_id, classified=classified)
        self.new += sum(not m.known for m in batch)


def acknowledge(services: Services, refs: list[MailRef]) -> list[MailRef]:
    """Move the fetched messages whose cases are closed (anything but `received`); returns them."""
    if not refs:
        return []
    with session_scope(services.engine) as session:
        rows = session.exec(
            select(Case.uid, Case.status).where(
                Case.mailbox == refs[0].mailbox,
                Case.uidvalidity == refs[0].uidvalidity,
                Case.uid.in_([r.uid for r in refs]),  # type: ignore[attr-defined]
            )
        ).all()
    done = {uid for uid, status in rows if status != CaseStatus.received}
    ready = [r for r in refs if r.uid in done]
    services.inbox.acknowledge(ready)
    return ready


def answer_claimed(
    services: Services, *, now: Callable[[], datetime] = utcnow, limit: int = ANSWERS_PER_PASS,
    refill: Intake | None = None,
) -> dict[str, int]:
    """Claim received cases and answer each; returns counts per resulting status. The mailbox
    lease holder passes `refill` (its `Intake`), asked before each claim, which counts the cases
    waiting unclaimed: it fetches and records the next batch before they run out, so the other
    workers always find cases to claim instead of idling while it fetches. A matcher that works ahead
    (`MatchHelper.prefetch`) is given each chunk's questions as soon as it is claimed, and
    MATCH_AHEAD chunks are kept claimed ahead of the one being answered, so the helper
    matches those while this thread answers this one."""
    statuses: dict[str, int] = {}
    prefetch: Callable[[list[str]], None] | None = getattr(services.matcher, "prefetch", None)
    unclaimed = limit  # of this pass's answers, those not claimed yet
    chunks: deque[list[int]] = deque()
    taken: list[int] = []  # every case this pass claimed

    def claim_ahead(first: bool, busy: bool = False) -> None:
        """`busy`: a chunk taken from `chunks` waits to be answered."""
        nonlocal unclaimed
        while unclaimed > 0 and len(chunks) < (MATCH_AHEAD if prefetch is not None else 1):
            if refill is not None and not first:
                refill.refill()
            first = False
            claimed = cases.claim_cases(
                services.engine, holder=services.worker_id, limit=min(unclaimed, CLAIM_CHUNK), ttl=CLAIM_TTL,
                now=now(),
            )
            if not claimed:
                if refill is not None and refill.record_ahead(wait=not (busy or chunks)):
                    continue  # the batch classified ahead has arrived: claim from it
                return  # (or it has not, and there are claimed cases to answer meanwhile)
            unclaimed -= len(claimed)
            chunks.append(claimed)
            taken.extend(claimed)
            if prefetch is not None:
                prefetch(cases.questions(services.engine, claimed))

    started: dict[int, cases.Started | cases.TriedBefore] = {}  # begun with the chunk before
    try:
        claim_ahead(first=True)
        while chunks:
            claimed = chunks.popleft()
            if prefetch is not None:
                claim_ahead(first=False, busy=True)  # the helper matches those while this thread answers these
            for outcome in _answer_chunk(services, claimed, started, chunks[0] if chunks else [], now=now()):
                statuses[outcome] = statuses.get(outcome, 0) + 1
            if services.sender is not None:
                services.sender.wake()  # this chunk's replies go out while the next is answered
            claim_ahead(first=False)
    except Exception:
        # the pass stops (the mail server or the database failed): its unanswered cases wait
        # for the next pass, not for their claims to run out
        try:
            cases.release_cases(services.engine, taken, holder=services.worker_id, now=now())
            cases.unbegin(services.engine, [a for a in started.values() if isinstance(a, cases.Attempt)],
                          holder=services.worker_id)
        except Exception as exc:  # noqa: BLE001 - the database may be what failed: then the TTL frees them
            log.warning("could not give back this pass's claims (%s)", type(exc).__name__)
        raise
    return statuses


def _answer_chunk(
    services: Services, claimed: list[int], started: dict[int, cases.Started | cases.TriedBefore],
    following: list[int], *, now: datetime,
) -> list[str]:
    """Answer one claimed chunk, its questions in ONE transaction (`_answer_group`), which also
    begins the `following` chunk's cases (into `started`). A case that a worker died on before
    (`cases.TRIED_BEFORE`) and a command or a message that is not a plain question are answered
    alone, in order, as `answer_case` would: a case that kills the worker again is then the only
    one to count it, and is quarantined after POISON_AFTER, never its chunk with it."""
    missing = [case_id for case_id in claimed if case_id not in started]
    if missing:
        with services.engine.begin() as conn:
            for case_id in missing:
                started[case_id] = cases.begin_attempt(conn, case_id, holder=services.worker_id, now=now,
                                                       alone_if_tried=True)
    outcomes: list[str] = []
    group: list[cases.Attempt] = []
    try:
        for case_id in claimed:
            attempt = started.pop(case_id)
            if attempt is None:
                outcomes.append("skipped")
            elif isinstance(attempt, CaseStatus):
                log.warning("case %s: quarantined as poison", case_id)
                outcomes.append(attempt.value)
            elif isinstance(attempt, cases.Attempt) and attempt.kind == "question" and attempt.question:
                group.append(attempt)
            else:
                outcomes += _answer_group(services, group, [], started, now=now)
                group = []
                outcomes.append(_answer_one(services, case_id, now=now,
                                            started=NOT_STARTED if attempt is cases.TRIED_BEFORE else attempt))
        outcomes += _answer_group(services, group, following, started, now=now)
    except Exception:
        started.update((a.id, a) for a in group)  # begun, never answered: the pass takes their marks back
        raise
    return outcomes


def _answer_group(
    services: Services, attempts: list[cases.Attempt], following: list[int],
    started: dict[int, cases.Started | cases.TriedBefore], *, now: datetime,
) -> list[str]:
    """Match each question, then charge, reply and close them all in one transaction, which also
    begins the `following` cases. Should any case of it fail (an error of ours, a claim lost,
    a question whose matching failed), the transaction rolls back and each case is answered
    again alone, inside `_answer_one`'s error boundary, so that one case's error is still that
    case's alone; the `following` cases are then begun with their own chunk. Cases are taken by
    sender, so two workers lock accounts in one order (never a deadlock on PostgreSQL), one
    sender's questions in their order. One commit per chunk instead of one per case
    (docs/BENCHMARKS.md); a crash loses the chunk's work, never a reply: its cases are answered
    again."""
    if not attempts:
        return []
    matched: list[tuple[cases.Attempt, ReplyTarget, MatchResult | Exception]] = []
    for attempt in attempts:
        try:
            result: MatchResult | Exception = services.matcher.match(attempt.question)
        except (ServiceError, OperationalError, InterfaceError):
            raise
        except Exception as exc:  # noqa: BLE001 - that question fails, alone (below)
            result = exc
        crash_point("during_match")
        matched.append((attempt, _target_of(attempt), result))
    matched.sort(key=lambda m: (m[0].sender, m[0].id))
    outcomes: list[str] = []
    begun: dict[int, cases.Started | cases.TriedBefore] = {}
    try:
        with services.engine.begin() as conn:
            for attempt, target, result in matched:
                if isinstance(result, Exception):
                    raise result  # its matching failed: the chunk goes case by case
                outcomes.append(_answer_in(services, conn, attempt, target, result, now=now).value)
            for case_id in following:
                begun[case_id] = cases.begin_attempt(conn, case_id, holder=services.worker_id, now=now,
                                                     alone_if_tried=True)
    except (ServiceError, OperationalError, InterfaceError):
        raise  # the database or a service, not a question: the pass stops
    except Exception:  # noqa: BLE001 - a case failed: nothing of the chunk was committed; each alone now
        return [_within_boundary(services, attempt.id, lambda a=attempt, t=target, r=result: _answer_matched(
                    services, a, t, r, now=now), now=now) for attempt, target, result in matched]
    started.update(begun)
    crash_point("after_outbox_commit")
    for (attempt, _, _), outcome in zip(matched, outcomes, strict=True):
        log.info("case %s: %s", attempt.id, outcome)
    return outcomes


def _answer_matched(services: Services, attempt: cases.Attempt, target: ReplyTarget,
                    result: MatchResult | Exception, *, now: datetime) -> str:
    if isinstance(result, Exception):
        raise result
    return _answer(services, attempt, target, result, now=now)


class _NotStarted:
    """The case's attempt is not begun yet."""


NOT_STARTED = _NotStarted()


def answer_case(services: Services, case_id: int, *, now: datetime) -> str:
    """Match and answer one claimed case; the error boundary for one question."""
    return _answer_one(services, case_id, now=now)


def _answer_one(
    services: Services, case_id: int, *, now: datetime, started: cases.Started | _NotStarted = NOT_STARTED,
) -> str:
    """Answer `case_id` alone (begun already when `started` says so); returns the outcome."""

    def work() -> str:
        attempt = started
        if isinstance(attempt, _NotStarted):
            attempt = cases.start_attempt(services.engine, case_id, holder=services.worker_id, now=now)
        if attempt is None:
            return "skipped"
        if isinstance(attempt, CaseStatus):
            log.warning("case %s: quarantined as poison", case_id)
            return attempt.value
        if attempt.kind != "question" or not attempt.question:
            question = parse_message(attempt.raw)
            command = detect_command(question.subject, question.body)
            if command is not None:
                return _answer_command(services, attempt, _target(question), command, now=now)
            target, text = _target(question), question.text
        else:  # what intake kept: the message is not parsed a second time
            target, text = _target_of(attempt), attempt.question
        result = services.matcher.match(text)
        crash_point("during_match")
        return _answer(services, attempt, target, result, now=now)

    return _within_boundary(services, case_id, work, now=now)


def _within_boundary(services: Services, case_id: int, work: Callable[[], str], *, now: datetime) -> str:
    """The error boundary for one question: its own errors close it, never the pass."""
    try:
        return work()
    except cases.ClaimLost:
        return "skipped"
    except (ServiceError, OperationalError, InterfaceError):
        # the mail server or the database, not this question: the pass stops (`scheduling.poll`
        # logs it) and the case, still `received`, is answered on a later pass
        raise
    except SenderError as exc:
        return _close(services, case_id, CaseStatus.quarantined, exc.reason, now=now)
    except Exception:  # noqa: BLE001 - one bad case must never stop the worker
        log.exception("case %s: unexpected error; marked failed", case_id)
        return _close(services, case_id, CaseStatus.failed, "internal_error", now=now,
                      error="unexpected error while answering; see the worker log")


def _target(question: Question) -> ReplyTarget:
    return _reply_target(question.sender, question.subject, question.message_id, question.references,
                         question.sender_name)


def _target_of(attempt: cases.Attempt) -> ReplyTarget:
    return _reply_target(attempt.sender, attempt.subject, attempt.message_id, attempt.reference_ids,
                         attempt.sender_name)


def _reply_target(
    sender: str, subject: str, message_id: str, references: tuple[str, ...], sender_name: str
) -> ReplyTarget:
    return ReplyTarget(to=sender, subject=subject, message_id=message_id, references=references,
                       name=first_name(sender_name))


def _answer(services: Services, attempt: cases.Attempt, target: ReplyTarget, result: MatchResult, *,
            now: datetime) -> str:
    """Charge, reply (or hold for review) and close the case, in one transaction that commits
    only while the claim is still ours (cases.finish_attempt raises ClaimLost otherwise)."""
    with services.engine.begin() as conn:
        status = _answer_in(services, conn, attempt, target, result, now=now)
    crash_point("after_outbox_commit")
    log.info("case %s: %s", attempt.id, status.value)
    return status.value


def _answer_in(services: Services, conn: Connection, attempt: cases.Attempt, target: ReplyTarget,
               result: MatchResult, *, now: datetime) -> CaseStatus:
    """`_answer`'s work in the caller's transaction; raises ClaimLost when the claim is gone. Core,
    not an ORM session: every statement here is prepared, and a session's bookkeeping cost more
    than they did."""
    shown = reply_codes(result)
    hold_reason = services.review.hold_reason(result, shown)
    quota = None
    if hold_reason:
        kind, status, reason = ("reply" if shown else "no_match"), CaseStatus.needs_review, hold_reason
    elif (capped := reply_cap_reason(conn, target.to, caps=services.caps, now=now)) is not None:
        kind, status, reason = "", CaseStatus.ignored, capped
    elif not shown:
        kind, status, reason = "no_match", CaseStatus.answered, "no_codes"
    else:
        kind, status, reason, quota = _spend_or_refuse(services, conn, target.to, now=now)
    if kind:
        enqueue_reply(
            conn,
            attempt.id,
            target,
            kind=kind,
            policy=services.policy,
            address=services.address,
            now=now,
            codes=shown if kind == "reply" else (),
            findings=[f.text for f in result.findings],
            hold=status == CaseStatus.needs_review,
            quota=quota,
        )
    cases.finish_attempt(
        conn,
        attempt,
        status,
        holder=services.worker_id,
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
    return status


def _answer_command(
    services: Services, attempt: cases.Attempt, target: ReplyTarget, command: Command, *, now: datetime
) -> str:
    """register / confirmation code / balance / help: answered, never charged."""
    extra: dict[str, object] = {}
    holder = services.worker_id
    with session_scope(services.engine) as session:
        capped = reply_cap_reason(session, target.to, caps=services.caps, now=now)
        if capped is not None:
            cases.finish_attempt(session, attempt, CaseStatus.ignored, holder=holder, now=now, reason=capped)
            return CaseStatus.ignored.value
        kind = command.kind
        if command.kind == "register":
            code = start_registration(session, target.to, now=now)
            kind, extra = ("register", {"code": code}) if code else ("balance", {})
        elif command.kind == "confirm":
            confirmed = confirm_registration(session, target.to, command.code, now=now)
            kind = "registered" if confirmed else "register_failed"
        enqueue_reply(
            session, attempt.id, target, kind=kind, policy=services.policy, address=services.address,
            now=now, extra=extra,
        )
        cases.finish_attempt(session, attempt, CaseStatus.answered, holder=holder, now=now,
                             reason=f"command_{command.kind}")
    crash_point("after_outbox_commit")
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


def _spend_or_refuse(
    services: Services, db: Db, sender: str, *, now: datetime
) -> tuple[str, CaseStatus, str, QuotaState]:
    """Spend an answer, or refuse with at most one over-quota notice per window. The sender's
    account row is locked first, so concurrent workers decide one sender's answers in turn.
    Also returns the account's state after the decision, for the reply's quota line."""
    state = lock_account(db, sender, now=now, policy=services.policy)
    if charge_answer(db, sender, policy=services.policy, now=now, account_exists=True):
        return "reply", CaseStatus.answered, "", replace(state, answered=state.answered + 1)
    if recent_over_quota_notice(db, sender, window=services.caps.over_quota_window, now=now):
        return "", CaseStatus.over_quota, "over_quota_notice_suppressed", state
    return "over_quota", CaseStatus.over_quota, "over_quota", state


def reply_codes(result: MatchResult) -> list[Suggestion]:
    """What the reply lists: the codes to report, and every code asked about that is not
    usable (deleted, not found, a heading), so the sender learns its status and replacements."""
    return [s for s in result.codes if s.report or s.status in ("deleted", "not_found", "header")]


_OVER_QUOTA_SINCE = select(CASE.c.id).where(
    CASE.c.sender == bindparam("p_sender"), CASE.c.reason == "over_quota",
    CASE.c.updated_at > typed_param("p_since", CASE.c.updated_at),
).limit(1)
_SENT_TO = Prepared(select(OUTBOX.c.created_at).where(
    OUTBOX.c.recipient == bindparam("p_to"), OUTBOX.c.created_at > typed_param("p_since", OUTBOX.c.created_at)
))


def reply_cap_reason(db: Db, sender: str, *, caps: ReplyCaps, now: datetime) -> str | None:
    """`reply_cap` when `sender` already had its automatic replies for the hour or the day."""
    day = _SENT_TO.run(connection_of(db), {"p_to": sender, "p_since": now - timedelta(days=1)}).scalars()
    hour = [at for at in day if cases.aware(at) > now - timedelta(hours=1)]
    if len(hour) >= caps.per_hour or len(day) >= caps.per_day:
        log.warning("reply cap reached for a sender; no automatic reply (possible mail loop)")
        return "reply_cap"
    return None


def recent_over_quota_notice(db: Db, sender: str, *, window: timedelta, now: datetime) -> bool:
    return connection_of(db).execute(_OVER_QUOTA_SINCE, {"p_sender": sender, "p_since": now - window}).first() is not None


def first_name(display_name: str) -> str:
    """The greeting's name: the first word of "Pat Coder" or of "Coder, Pat"; nothing doubtful."""
    name = display_name.strip().strip('"')
    if not name or "@" in name:
        return ""
    words = (name.split(",")[-1] if "," in name else name).split()
    first = words[0] if words else ""
    return first[:40] if first.isalpha() else ""


def _close(services: Services, case_id: int, status: CaseStatus, reason: str, *, now: datetime, error: str = "") -> str:
    with session_scope(services.engine) as session:
        case = session.get(Case, case_id)
        if case is not None and case.status == CaseStatus.received:
            cases.close_case(session, case, status, now=now, reason=reason, error=error or case.error)
    return status.value
