"""Bounces of our own replies (checklist S11): the coder never got the answer.

A delivery report (multipart/report, or a message with X-Failed-Recipients)
is machine mail: intake never answers it. When it also names one of our own
Message-IDs (a `Message-ID:` line of the returned headers of the reply it
reports on: every reply's Message-ID is on our domain) and says the failure is permanent (a `Status:
5.x.x` line, or X-Failed-Recipients without a status), that reply is marked
failed with the status as its error, and its case is flagged
`reply_bounced`: staff see it on the case page and in the daily digest's
replies that could not be sent, and can send it again. A delay notice
(4.x.x) or a success report (2.x.x) changes nothing.

We read the report's bytes, not its parsed text: the returned headers sit in
a `text/rfc822-headers` or `message/rfc822` part the question text leaves
out. The scan is bounded (SCAN_BYTES), and only identifiers on our own
domain that belong to a reply we sent are touched, so a forged report can at
most mark one of our replies as undelivered.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection

SCAN_BYTES = 256 * 1024
_STATUS = re.compile(rb"^Status:[ \t]*([245])\.(\d{1,3})\.(\d{1,3})", re.IGNORECASE | re.MULTILINE)
_FAILED_RECIPIENTS = re.compile(rb"^X-Failed-Recipients:", re.IGNORECASE | re.MULTILINE)


@dataclass(frozen=True)
class Bounce:
    message_ids: tuple[str, ...]  # ours, as the report returned them
    status: str  # "5.1.1", or "" when only X-Failed-Recipients says it failed


def find_bounce(raw: bytes, *, own_domain: str) -> Bounce | None:
    """The permanent failure a delivery report reports for our mail, if it reports one."""
    head = raw[:SCAN_BYTES]
    found = _STATUS.search(head)
    if found is not None:
        if found.group(1) != b"5":
            return None
        status = b".".join(found.groups()).decode("ascii")
    elif _FAILED_RECIPIENTS.search(head):
        status = ""
    else:
        return None
    ours = re.compile(rb"^Message-ID:[ \t]*(?:\r?\n[ \t]+)?(<[^<>\s@]{1,200}@"
                      + re.escape(own_domain.encode("ascii", "ignore")) + rb">)", re.IGNORECASE | re.MULTILINE)
    ids = tuple(dict.fromkeys(match.decode("ascii", "replace") for match in ours.findall(head)))
    return Bounce(ids, status) if ids and own_domain else None


def record_bounces(conn: Connection, bounces: list[Bounce], *, now: datetime) -> int:
    """Mark the replies the reports name as failed and flag their cases; how many were ours."""
    # imported here: `find_bounce` also runs in the match helper process, which has no database
    from sqlalchemy import select, update

    from consultant.cases import flag_case
    from consultant.models import OutboxStatus
    from consultant.outbox import OUTBOX

    marked = 0
    for bounce in bounces:
        rows = conn.execute(
            select(OUTBOX.c.id, OUTBOX.c.case_id).where(
                OUTBOX.c.message_id.in_(bounce.message_ids), OUTBOX.c.status == OutboxStatus.sent
            )
        ).all()
        error = f"bounced by the recipient's server ({bounce.status or 'permanent failure'})"
        for outbox_id, case_id in rows:
            conn.execute(update(OUTBOX).where(OUTBOX.c.id == outbox_id)
                         .values(status=OutboxStatus.failed, last_error=error, claimed_until=None))
            if case_id is not None:
                flag_case(conn, case_id, "reply_bounced")
            marked += 1
    return marked
