"""PARSE: what one fetched message becomes, decided from its bytes alone.

`classify` reads a message (parse, machine mail, sender authentication,
commands) and says what its case row will hold: `received` with the question
text, or quarantined / ignored with the reason; `intake.py` then records a
whole batch at once. It needs no database, so it also runs in the match
helper process (`match/helper.py`), a batch ahead of the recording.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from consultant.bounces import Bounce, find_bounce
from consultant.commands import detect_command
from consultant.errors import SenderError
from consultant.inbox import FetchedMessage, MailRef
from consultant.machine import machine_reasons
from consultant.parse import parse_message
from consultant.senderauth import authentication_verdict
from consultant.statuses import CaseStatus

log = logging.getLogger(__name__)
MAX_REFERENCES = 11  # the reply's References keep the last 10 and the In-Reply-To


@dataclass
class Outcome:
    """What one message becomes: the case row's values, before the batch is written."""

    ref: MailRef
    status: CaseStatus
    reason: str = ""
    fields: dict[str, Any] = field(default_factory=dict)
    bounce: Bounce | None = None  # a delivery report's permanent failure of one of our replies

    def row(self, now: datetime) -> dict[str, Any]:
        values: dict[str, Any] = {
            "message_id": "", "content_hash": "", "sender": "", "sender_name": "", "subject": "", "question": "",
            "reference_ids": [], "raw": None, "attachments": [], "kind": "question", **self.fields,
        }
        return {
            **values,
            "mailbox": self.ref.mailbox, "uidvalidity": self.ref.uidvalidity, "uid": self.ref.uid,
            "status": self.status, "reason": self.reason, "confidence": 0.0, "codes": [], "findings": [],
            "error": "", "flags": [], "received_at": now, "updated_at": now,
        }


def classify_safely(message: FetchedMessage, *, own_address: str, authserv_id: str) -> Outcome:
    """`classify`, with a bug in it costing one message, not the batch: a message our own
    code fails on is quarantined with the reason, and the rest of the batch goes on."""
    try:
        return classify(message, own_address=own_address, authserv_id=authserv_id)
    except Exception as exc:  # noqa: BLE001 - one message must never block the mailbox
        # The type only: an exception's text may quote the message.
        log.error("uid %s: intake failed (%s); quarantined", message.ref.uid, type(exc).__name__)
        return Outcome(message.ref, CaseStatus.quarantined, "intake_error", {"raw": message.raw})


def classify(message: FetchedMessage, *, own_address: str, authserv_id: str = "") -> Outcome:
    """The outcome of one message from its bytes alone (the duplicate check comes later)."""
    ref = message.ref
    if message.truncated:
        return Outcome(ref, CaseStatus.quarantined, "too_large")
    if message.unreadable:  # the server's response was garbled: staff find it in the processed folder
        return Outcome(ref, CaseStatus.quarantined, "unreadable")
    try:
        question = parse_message(message.raw)
    except SenderError as exc:
        return Outcome(ref, CaseStatus.quarantined, exc.reason, {"raw": message.raw})
    meta: dict[str, Any] = {
        "message_id": question.message_id[:998],
        "content_hash": question.content_hash,
        "sender": question.sender,
        "subject": question.subject,
        "attachments": list(question.attachments),
    }
    reply_fields = {  # what answering needs besides the text, so it never parses the message again
        "sender_name": question.sender_name[:200],
        "reference_ids": [r[:998] for r in question.references[-MAX_REFERENCES:]],
    }
    # every check runs for a person's mail anyway; machine mail gets them all for the bounce test
    reasons = machine_reasons(question, own_address=own_address)
    if reasons:
        bounce = None
        if "delivery_report" in reasons:
            bounce = find_bounce(message.raw, own_domain=own_address.rpartition("@")[2].lower())
        return Outcome(ref, CaseStatus.ignored, reasons[0], meta, bounce=bounce)
    if authentication_verdict(question.headers, authserv_id=authserv_id) == "fail":
        return Outcome(ref, CaseStatus.quarantined, "unauthenticated", {**meta, "raw": message.raw})
    command = detect_command(question.subject, question.body)
    return Outcome(ref, CaseStatus.received, "", {
        **meta, **reply_fields, "question": question.text, "raw": message.raw,
        "kind": command.kind if command else "question",
    })
