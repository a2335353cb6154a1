"""Privacy: question text never reaches the logs, and is purged after the retention period."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

from sqlmodel import Session, select

from consultant.models import Case, Outbox
from consultant.retention import purge_expired
from tests.fakes import KeywordMatcher, question
from tests.test_pipeline import make_services, run_once

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
CANARY = "PHI-CANARY-7f3a"


def canary_mail(sender: str) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Dr {CANARY} <{sender}>"
    msg["To"] = "consultant@caseconsultant.example"
    msg["Subject"] = f"{CANARY} what is 62310"
    msg["Message-ID"] = f"<{CANARY}-{sender}@clinic.example>"
    msg.set_content(f"Patient {CANARY} needs CPT 62310 boom")
    msg.add_attachment(b"%PDF-1.4", maintype="application", subtype="pdf", filename=f"{CANARY}.pdf")
    return msg.as_bytes()


def test_canary_never_appears_in_logs(engine, caplog) -> None:  # type: ignore[no-untyped-def]
    caplog.set_level(logging.DEBUG)
    matcher = KeywordMatcher()
    matcher.crash_on = "boom"  # the failure path logs a traceback too
    services = make_services(engine, matcher=matcher)
    services.inbox.deliver(canary_mail("a@clinic.example"))
    services.inbox.deliver(b"\x00\x01 " + CANARY.encode())
    matcher2 = make_services(engine)
    matcher2.inbox.deliver(question(f"{CANARY} 62310", sender="b@clinic.example"))
    run_once(services, now=lambda: NOW)
    run_once(matcher2, now=lambda: NOW)
    text = "\n".join(
        record.getMessage() + (caplog.text if record.exc_info else "") for record in caplog.records
    )
    assert caplog.records, "the flow logged nothing: the test would prove nothing"
    assert CANARY not in text
    assert CANARY not in caplog.text


def test_purge_removes_what_people_wrote_and_keeps_codes(engine) -> None:
    services = make_services(engine)
    services.inbox.deliver(canary_mail("c@clinic.example").replace(b" boom", b""))
    run_once(services, now=lambda: NOW)
    assert purge_expired(engine, now=NOW + timedelta(days=29), days=30) == 0
    assert purge_expired(engine, now=NOW + timedelta(days=31), days=30) == 1
    assert purge_expired(engine, now=NOW + timedelta(days=32), days=30) == 0
    with Session(engine) as session:
        case = session.exec(select(Case)).one()
        outbox = session.exec(select(Outbox)).one()
    assert case.question == "" and case.subject == "" and case.raw is None and case.attachments == []
    assert case.codes and case.codes[0]["code"] == "62310"
    assert case.purged_at is not None and case.sender == "c@clinic.example"
    assert CANARY.encode() not in outbox.raw
