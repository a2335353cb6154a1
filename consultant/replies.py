"""Compose a reply for a case and put it in the outbox: shared by the pipeline and staff review.

`enqueue_reply` builds the template context (codes described from the code
table, the sender's quota), renders the kind of reply asked for and writes
it to the outbox, `pending` to be sent or `held` for staff review. It never
commits: the caller's transaction decides, so the reply and the case's new
status are written together or not at all.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlmodel import Session, select

from consultant.match.base import Suggestion
from consultant.models import Case, Code, Outbox, OutboxStatus
from consultant.quota import QuotaPolicy, quota_state
from consultant.render import CodeView, Reply, build_message, render_reply

MAX_CODES_IN_REPLY = 8


@dataclass(frozen=True)
class ReplyTarget:
    """Who the reply goes to and what it answers."""

    to: str
    subject: str
    message_id: str = ""
    references: tuple[str, ...] = ()
    name: str = ""

    @classmethod
    def for_case(cls, case: Case) -> "ReplyTarget":
        return cls(to=case.sender, subject=case.subject, message_id=case.message_id)


def code_views(session: Session, suggestions: Sequence[Suggestion]) -> list[CodeView]:
    """What the reply shows of each suggestion, with replacement codes described too."""
    wanted = {r for s in suggestions for r in s.replaced_by}
    described: dict[tuple[str, str], str] = {}
    if wanted:
        rows = session.exec(select(Code.system, Code.display, Code.official).where(Code.display.in_(wanted))).all()  # type: ignore[attr-defined]
        described = {(system, display): official for system, display, official in rows}
    return [
        CodeView(
            code=s.code,
            system=s.system,
            status=s.status,
            official=s.official,
            plain=s.plain,
            release=s.release,
            deleted_on=s.deleted_on,
            replacements=tuple(
                CodeView(code=r, system=s.system, status="valid", official=described.get((s.system, r), ""))
                for r in s.replaced_by
            ),
            near=s.near,
            more_specific=s.more_specific,
            new=s.new,
        )
        for s in suggestions
    ]


def enqueue_reply(
    session: Session,
    case: Case,
    target: ReplyTarget,
    *,
    kind: str,
    policy: QuotaPolicy,
    address: str,
    now: datetime,
    codes: Sequence[Suggestion] = (),
    findings: Sequence[str] = (),
    hold: bool = False,
    extra: dict[str, Any] | None = None,
) -> Reply:
    state = quota_state(session, target.to, policy=policy)
    context: dict[str, Any] = {
        "name": target.name,
        "codes": code_views(session, list(codes)[:MAX_CODES_IN_REPLY]),
        "findings": list(findings),
        "quota_remaining": state.remaining,
        "allowance": state.allowance,
        "tier": state.tier.value,
        "free_answers": policy.free_answers,
        "consultant_address": address,
        **(extra or {}),
    }
    reply = render_reply(
        kind,
        to=target.to,
        subject=target.subject,
        context=context,
        domain=address.rpartition("@")[2] or "localhost",
        in_reply_to=target.message_id,
        references=target.references,
    )
    session.add(
        Outbox(
            case_id=case.id,
            message_id=reply.message_id,
            recipient=reply.to,
            raw=build_message(reply, sender=address, now=now),
            status=OutboxStatus.held if hold else OutboxStatus.pending,
            next_attempt_at=now,
            created_at=now,
        )
    )
    return reply
