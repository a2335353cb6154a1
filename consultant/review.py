"""Staff review: what staff may do to a case, each action recorded in the audit table.

A reply the pipeline was unsure of waits as case status `needs_review`, its
rendered reply in the outbox as `held` (never sent as is, never charged).
Staff can

* approve it: the answer is charged now (`quota.charge_answer`); the held
  reply becomes `pending` and the worker sends it on its next poll. If the
  sender has no answer left by then, the held reply is cancelled and the
  over-quota notice goes instead;
* edit its codes: the codes are looked up in the `code` table, the reply is
  rendered again from them (still held, so staff see it before approving);
* reject it, with a note: the sender gets the `rejected` email, nothing is
  charged;
* retry a failed send: the outbox row goes back to `pending`.

Every function takes the caller's session and never commits, so the action,
its outbox change and its audit entry are written together or not at all.
A request that cannot be carried out (wrong status, unknown code) raises
`ReviewError` with a message meant for the staff member.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime
from email import message_from_bytes
from email.policy import compat32
from typing import Any

from sqlmodel import Session, col, select

from consultant import cases
from consultant.codes.lookup import lookup
from consultant.errors import SenderError
from consultant.match.base import Suggestion
from consultant.models import AuditEntry, Case, CaseStatus, Code, Outbox, OutboxStatus
from consultant.parse import parse_message
from consultant.pipeline import code_record
from consultant.quota import QuotaPolicy, charge_answer
from consultant.replies import ReplyTarget, enqueue_reply

MAX_CODES = 20
MAX_NOTE = 2000
STAFF_EVIDENCE = "chosen by staff"
_SPLIT = re.compile(r"[,;\n]+")


class ReviewError(ValueError):
    """A staff request that cannot be carried out; the message is shown to them."""


def record_audit(
    session: Session,
    *,
    actor: str,
    action: str,
    now: datetime,
    case_id: int | None = None,
    account_email: str | None = None,
    detail: str = "",
) -> AuditEntry:
    entry = AuditEntry(at=now, actor=actor, action=action, case_id=case_id, account_email=account_email,
                       detail=detail[:2000])
    session.add(entry)
    return entry


def approve_case(
    session: Session, case_id: int, *, actor: str, policy: QuotaPolicy, address: str, now: datetime
) -> CaseStatus:
    """Send the held reply (charging one answer), or the over-quota notice if none is left."""
    case = _case_in_review(session, case_id)
    held = _held_rows(session, case_id)
    if not held:
        raise ReviewError("this case has no held reply to send")
    *older, reply = held
    _cancel(session, older)
    if reported_codes(case) and not charge_answer(session, case.sender, policy=policy, now=now):
        _cancel(session, [reply])
        enqueue_reply(session, case.id, reply_target(case, reply), kind="over_quota", policy=policy,
                      address=address, now=now)
        cases.close_case(session, case, CaseStatus.over_quota, now=now, reason="over_quota")
        record_audit(session, actor=actor, action="approve", now=now, case_id=case_id,
                     detail="no answer left on the account: the over-quota notice was sent instead")
        return CaseStatus.over_quota
    reply.status = OutboxStatus.pending
    reply.next_attempt_at = now
    session.add(reply)
    cases.close_case(session, case, CaseStatus.answered, now=now, reason="approved")
    codes = ", ".join(c["code"] for c in reported_codes(case)) or "no codes"
    record_audit(session, actor=actor, action="approve", now=now, case_id=case_id, detail=f"reply sent ({codes})")
    return CaseStatus.answered


def edit_codes(
    session: Session,
    case_id: int,
    codes: str | Sequence[str],
    *,
    actor: str,
    policy: QuotaPolicy,
    address: str,
    now: datetime,
) -> list[Suggestion]:
    """Replace the reply's codes with `codes` (looked up in the code table); the new reply stays held."""
    case = _case_in_review(session, case_id)
    wanted = parse_code_list(codes) if isinstance(codes, str) else [c for c in codes if c.strip()]
    if len(wanted) > MAX_CODES:
        raise ReviewError(f"at most {MAX_CODES} codes in one reply")
    chosen = [suggestion_for(session, item) for item in wanted]
    held = _held_rows(session, case_id)
    target = reply_target(case, held[-1] if held else None)
    _cancel(session, held)
    enqueue_reply(
        session,
        case.id,
        target,
        kind="reply" if chosen else "no_match",
        policy=policy,
        address=address,
        now=now,
        codes=chosen,
        findings=[str(f.get("text", "")) for f in case.findings],
        hold=True,
    )
    before = ", ".join(c["code"] for c in reported_codes(case)) or "none"
    case.codes = _merge_codes(chosen, case.codes)
    case.updated_at = now
    session.add(case)
    after = ", ".join(s.code for s in chosen) or "none"
    record_audit(session, actor=actor, action="edit_codes", now=now, case_id=case_id,
                 detail=f"codes {before} -> {after}")
    return chosen


def reject_case(
    session: Session, case_id: int, note: str, *, actor: str, policy: QuotaPolicy, address: str, now: datetime
) -> None:
    """Cancel the held reply and send the `rejected` email with the staff member's note."""
    case = _case_in_review(session, case_id)
    note = note.strip()[:MAX_NOTE]
    held = _held_rows(session, case_id)
    target = reply_target(case, held[-1] if held else None)
    _cancel(session, held)
    enqueue_reply(session, case.id, target, kind="rejected", policy=policy, address=address, now=now,
                  extra={"note": note})
    cases.close_case(session, case, CaseStatus.rejected, now=now, reason="staff_rejected")
    record_audit(session, actor=actor, action="reject", now=now, case_id=case_id, detail=note or "(no note)")


def retry_send(session: Session, outbox_id: int, *, actor: str, now: datetime) -> Outbox:
    """Put a failed reply back in the queue; its case gets back the status it had before the failure."""
    row = session.get(Outbox, outbox_id)
    if row is None or row.status != OutboxStatus.failed:
        raise ReviewError("only a failed reply can be sent again")
    error = row.last_error
    row.status = OutboxStatus.pending
    row.attempts = 0
    row.next_attempt_at = now
    session.add(row)
    if row.case_id is not None:
        case = session.get(Case, row.case_id)
        if case is not None and case.status == CaseStatus.failed and case.reason != "internal_error":
            cases.close_case(session, case, _status_before_failure(case), now=now, error="")
    record_audit(session, actor=actor, action="retry_send", now=now, case_id=row.case_id,
                 detail=f"reply {row.message_id} queued again after: {error or 'unknown error'}")
    return row


def reported_codes(case: Case) -> list[dict[str, Any]]:
    """The codes the case's reply shows (the matcher's `report` set, or staff's choice)."""
    return [c for c in case.codes if c.get("report")]


def parse_code_list(text: str) -> list[str]:
    """'E11.9, cpt 62310\\nICD-10-CM:I10' -> ['E11.9', 'cpt 62310', 'ICD-10-CM:I10']."""
    return [piece.strip() for piece in _SPLIT.split(text) if piece.strip()]


def suggestion_for(session: Session, item: str) -> Suggestion:
    """The code table's row for one entry ('E11.9', 'CPT 62310', 'HCPCS:J3301') as a Suggestion."""
    parts = item.replace(":", " ").split()
    if len(parts) not in (1, 2):
        raise ReviewError(f"{item!r}: write a code, optionally after its system (CPT 62310)")
    system, code = (None, parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    try:
        rows = lookup(session, code, system)
    except ValueError:
        raise ReviewError(f"{item!r}: unknown code system {system!r}") from None
    if not rows:
        raise ReviewError(f"{item!r} is not in the code tables")
    if len({row.system for row in rows}) > 1:
        # A dot settles it: only ICD-10-CM is written with one (E11.9 is not HCPCS E119).
        as_written = [row for row in rows if "." in code and row.display.upper() == code.upper()]
        if len({row.system for row in as_written}) != 1:
            systems = ", ".join(sorted({row.system for row in rows}))
            raise ReviewError(
                f"{item!r} is a code in several systems ({systems}): write the system first, e.g. {rows[0].system} {code}"
            )
        rows = as_written
    return _suggestion(rows[0])


def _suggestion(row: Code) -> Suggestion:
    return Suggestion(
        code=row.display,
        system=row.system,
        status=row.status if row.status == "deleted" or row.billable or row.kind == "code" else "header",
        score=1.0,
        confidence=1.0,
        official=row.official,
        plain=row.plain,
        billable=row.billable,
        release=row.release,
        replaced_by=tuple(row.replaced_by),
        deleted_on=row.deleted_on or "",
        evidence=(STAFF_EVIDENCE,),
        new=row.change == "new",
    )


def _merge_codes(chosen: list[Suggestion], previous: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Staff's codes first; the matcher's other suggestions are kept, no longer reported, for the record."""
    keys = {(s.system, s.code) for s in chosen}
    kept = [
        {**c, "report": False}
        for c in previous
        if (c.get("system"), c.get("code")) not in keys and STAFF_EVIDENCE not in c.get("evidence", [])
    ]
    return [code_record(s) for s in chosen] + kept


def reply_target(case: Case, held: Outbox | None) -> ReplyTarget:
    """Who a reply to `case` goes to, threaded as the held reply was, greeting the sender as before."""
    references: tuple[str, ...] = ()
    if held is not None:
        headers = message_from_bytes(held.raw, policy=compat32)
        references = tuple(str(headers.get("References", "")).split())
    return ReplyTarget(
        to=case.sender,
        subject=case.subject,
        message_id=case.message_id,
        references=references,
        name=_greeting_name(case),
    )


def _greeting_name(case: Case) -> str:
    if not case.raw:
        return ""
    try:
        display = parse_message(case.raw).sender_name.strip().strip('"')
    except SenderError:
        return ""
    if not display or "@" in display:
        return ""
    first = display.split(",")[-1].split() if "," in display else display.split()
    name = first[0] if first else ""
    return name[:40] if name.isalpha() else ""


def _case_in_review(session: Session, case_id: int) -> Case:
    # The row lock makes a second staff member's simultaneous action wait, then see the new status
    # (SQLite has no FOR UPDATE, but its BEGIN IMMEDIATE serialises the two transactions the same way).
    case = session.exec(
        select(Case).where(Case.id == case_id).with_for_update().execution_options(populate_existing=True)
    ).first()
    if case is None:
        raise ReviewError(f"there is no case #{case_id}")
    if case.status != CaseStatus.needs_review:
        raise ReviewError(f"case #{case_id} is {case.status.value}, not waiting for review")
    return case


def _held_rows(session: Session, case_id: int) -> list[Outbox]:
    return list(
        session.exec(
            select(Outbox).where(Outbox.case_id == case_id, Outbox.status == OutboxStatus.held).order_by(col(Outbox.id))
        ).all()
    )


def _cancel(session: Session, rows: Sequence[Outbox]) -> None:
    for row in rows:
        row.status = OutboxStatus.cancelled
        session.add(row)


def _status_before_failure(case: Case) -> CaseStatus:
    if case.reason == "over_quota":
        return CaseStatus.over_quota
    if case.reason == "staff_rejected":
        return CaseStatus.rejected
    return CaseStatus.answered
