"""Growth (issue 7, part 4): the cost of a poll and of a message must not grow with history.

The Processed folder is filled with 50,000 messages once; the database gets
0, then 10,000, then 100,000 closed cases of history (each with its sent
reply, spread over 60 days, the newest from today, so the reply-cap and
duplicate queries have rows to look through). At each size, in this process
and on the real servers:

* empty poll: `scheduling.poll` (lease, SELECT + SEARCH, claims, outbox
  drain, poll-state row) with nothing new, repeated; p50/p95 in ms;
* per message: a batch of new questions appended, then polls until INBOX is
  empty and the replies are out; wall time per message.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select
from sqlalchemy.engine import Engine

from bench.procs import percentile
from bench.servers import Dovecot, Sink, append_all, folder_count

HISTORY_UIDVALIDITY = 1  # history lives under an older UIDVALIDITY than the live folder's


def seed_history(engine: Engine, *, count: int, first_uid: int, seed: int = 5) -> None:
    """Add `count` answered cases with their sent replies, in chunks, through SQLAlchemy Core."""
    from consultant.models import Case, Outbox

    rng = random.Random(seed + first_uid)
    now = datetime.now(UTC)
    raw_question = b"From: someone@clinic.example\r\nSubject: dx code\r\n\r\n" + b"What is the code for HTN? " * 24
    raw_reply = b"From: consultant@localhost\r\nSubject: Re: dx code\r\n\r\n" + b"I10 Essential hypertension. " * 50
    for start in range(0, count, 5000):
        chunk = range(first_uid + start, first_uid + min(start + 5000, count))
        cases, replies = [], []
        for uid in chunk:
            at = now - timedelta(days=60 * rng.random() ** 2)  # denser towards today
            sender = f"history{uid}@clinic{uid % 97}.example"
            cases.append({
                "mailbox": "INBOX", "uidvalidity": HISTORY_UIDVALIDITY, "uid": uid,
                "message_id": f"<history-{uid}@clinic.example>", "content_hash": f"{uid:064x}",
                "sender": sender, "subject": "dx code", "question": "What is the code for HTN?",
                "raw": raw_question, "attachments": [], "status": "answered", "reason": "", "kind": "question",
                "confidence": 0.9, "codes": [{"code": "I10", "report": True}], "findings": [], "error": "",
                "flags": [], "received_at": at, "updated_at": at, "replied_at": at,
            })
        with engine.begin() as conn:
            conn.execute(insert(Case.__table__), cases)
            ids = dict(conn.execute(
                select(Case.__table__.c.uid, Case.__table__.c.id).where(
                    Case.__table__.c.uidvalidity == HISTORY_UIDVALIDITY, Case.__table__.c.uid.in_(list(chunk)))
            ).all())
            for row in cases:
                replies.append({
                    "case_id": ids[row["uid"]], "message_id": f"<reply-{row['uid']}@localhost>",
                    "recipient": row["sender"], "raw": raw_reply, "status": "sent", "attempts": 1,
                    "next_attempt_at": row["received_at"], "last_error": "", "created_at": row["received_at"],
                    "sent_at": row["received_at"],
                })
            conn.execute(insert(Outbox.__table__), replies)


def case_count(engine: Engine) -> int:
    from consultant.models import Case

    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(Case.__table__)).scalar_one())


def measure(services, server: Dovecot, sink: Sink, batch: list[bytes], *, polls: int) -> dict:  # type: ignore[no-untyped-def]
    """Empty-poll times, then the wall time per message for `batch` (see the module docstring)."""
    from consultant.scheduling import poll

    poll(services)  # connections open, caches warm
    empty = []
    for _ in range(polls):
        started = time.perf_counter()
        poll(services)
        empty.append((time.perf_counter() - started) * 1000)
    sink.take()
    append_all(server, batch)
    watcher = server.client()
    started = time.perf_counter()
    rounds = 0
    while rounds < 200:
        summary = poll(services)
        rounds += 1
        if summary is not None and not summary.fetched and not summary.sent and folder_count(watcher, "INBOX") == 0:
            break
    elapsed = time.perf_counter() - started
    watcher.logout()
    return {
        "empty_poll_p50_ms": round(percentile(empty, 50), 2),
        "empty_poll_p95_ms": round(percentile(empty, 95), 2),
        "per_message_ms": round(elapsed * 1000 / len(batch), 2),
        "replies": len(sink.take()),
        "batch": len(batch),
    }
