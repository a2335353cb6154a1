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

from sqlalchemy import bindparam, insert, select

from consultant.codes.lookup import normalize_code
from consultant.db import Db, connection_of
from consultant.match.base import Suggestion
from consultant.models import Case, Code, Outbox, OutboxStatus
from consultant.prepared import Prepared
from consultant.quota import QuotaPolicy, QuotaState, quota_state
from consultant.render import CodeView, Reply, build_message, render_reply

MAX_CODES_IN_REPLY = 8
CODE = Code.__table__  # type: ignore[attr-defined]
# Built once (Core, not the ORM): building a statement costs more than running it here.
_DESCRIBE = select(CODE.c.system, CODE.c.display, CODE.c.official, CODE.c.plain, CODE.c.release,
                   CODE.c.deleted_on).where(CODE.c.code.in_(bindparam("p_keys", expanding=True)))
OUTBOX = Outbox.__table__  # type: ignore[attr-defined]
# Every column named, so that no default is left to fill in: it runs prepared (consultant/prepared.py).
_NEW_REPLY = Prepared(
    insert(OUTBOX).values({c.name: bindparam(c.name, type_=c.type) for c in OUTBOX.c if c.name != "id"})
)


@dataclass(frozen=True)
class ReplyTarget:
    """Who the reply goes to and what it answers."""

    to: str
    subject: str
    message_id: str = ""
    references: tuple[str, ...] = ()
    name: str = ""

    @classmethod
    def for_case(cls, case: Case) -> ReplyTarget:
        return cls(to=case.sender, subject=case.subject, message_id=case.message_id)


def code_views(db: Db, suggestions: Sequence[Suggestion]) -> list[CodeView]:
    """What the reply shows of each suggestion. The code table fills in what the matcher
    left out (descriptions, deletion date, release) and describes each replacement code."""
    # Only what the matcher left out is looked up: nearly every reply needs no row at all.
    wanted = {s.code for s in suggestions if not _complete(s)} | {r for s in suggestions for r in s.replaced_by}
    # Looked up by the indexed canonical key: `display` has no index, and scanning
    # the whole code table cost 0.1-0.3 s per reply (bench/, docs/BENCHMARKS.md).
    keys = sorted({normalize_code(c) for c in wanted})
    rows = connection_of(db).execute(_DESCRIBE, {"p_keys": keys}).all() if keys else []
    known = {(row.system, row.display): row for row in rows}

    def view(code: str, system: str, status: str, s: Suggestion | None = None) -> CodeView:
        row = known.get((system, code))
        official = (s.official if s else "") or (row.official if row else "")
        plain = (s.plain if s else "") or (row.plain if row else "")
        return CodeView(
            code=code,
            system=system,
            status=status,
            official=official,
            plain=plain if plain.strip().lower() != official.strip().lower() else "",
            release=(s.release if s else "") or (row.release if row else ""),
            deleted_on=(s.deleted_on if s else "") or (row.deleted_on if row and status == "deleted" else "") or "",
            replacements=tuple(view(r, system, "valid") for r in s.replaced_by) if s else (),
            near=s.near if s else (),
            more_specific=s.more_specific if s else "",
            new=s.new if s else False,
        )

    return [view(s.code, s.system, s.status, s) for s in suggestions]


def _complete(s: Suggestion) -> bool:
    """Whether `code_views` takes nothing from the code table for `s` (its replacements aside)."""
    return bool(s.official and s.plain and s.release and (s.deleted_on or s.status != "deleted"))


def enqueue_reply(
    db: Db,
    case_id: int | None,
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
    quota: QuotaState | None = None,
) -> Reply:
    """`quota`: the sender's state when the caller has just read it (the answering path)."""
    state = quota or quota_state(db, target.to, policy=policy)
    context: dict[str, Any] = {
        "name": target.name,
        "codes": code_views(db, list(codes)[:MAX_CODES_IN_REPLY]),
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
    _NEW_REPLY.run(connection_of(db), {
        "case_id": case_id,
        "message_id": reply.message_id,
        "recipient": reply.to,
        "raw": build_message(reply, sender=address, now=now),
        "status": OutboxStatus.held if hold else OutboxStatus.pending,
        "next_attempt_at": now,
        "created_at": now,
        "attempts": 0,
        "last_error": "",
        "claimed_by": None,
        "claimed_until": None,
        "sending_since": None,
        "sent_at": None,
    })
    return reply
