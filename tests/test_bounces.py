"""Bounces of our replies (checklist S11): a delivery report naming a reply we sent marks it
failed and flags its case; the report itself is never answered; delays change nothing."""

from __future__ import annotations

from email import message_from_bytes

import pytest
from sqlmodel import Session, select

from consultant.bounces import find_bounce
from consultant.inbox import MemoryInbox
from consultant.models import Case, CaseStatus, Outbox, OutboxStatus
from tests.test_pipeline import make_services, question, run_once

DOMAIN = "caseconsultant.example"


def report(reply_id: str, *, status: str = "5.1.1", to: str = "pat@clinic.example") -> bytes:
    """A Postfix-style delivery report for our reply `reply_id`."""
    return (
        "Return-Path: <>\r\nFrom: MAILER-DAEMON@mx.clinic.example (Mail Delivery System)\r\n"
        f"To: consultant@{DOMAIN}\r\nSubject: Undelivered Mail Returned to Sender\r\n"
        "Auto-Submitted: auto-replied\r\nMIME-Version: 1.0\r\nMessage-ID: <dsn-1@mx.clinic.example>\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        "--B\r\nContent-Type: text/plain\r\n\r\nYour message could not be delivered.\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.clinic.example\r\n\r\n"
        f"Final-Recipient: rfc822; {to}\r\nAction: failed\r\nStatus: {status}\r\n"
        f"Diagnostic-Code: smtp; 550 {status} <{to}>: User unknown\r\n"
        "--B\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        f"From: Coding Desk <consultant@{DOMAIN}>\r\nTo: {to}\r\nSubject: Re: CPT 62310\r\n"
        f"Message-ID: {reply_id}\r\nIn-Reply-To: <q-1@clinic.example>\r\n"
        "--B--\r\n"
    ).encode()


def answered_once(engine):  # type: ignore[no-untyped-def]
    services = make_services(engine, inbox=MemoryInbox(), address=f"consultant@{DOMAIN}")
    services.inbox.deliver(question("What is CPT 62310?", sender="pat@clinic.example", message_id="<q-1@clinic.example>"))
    run_once(services)
    (sent,) = services.transport.sent
    return services, str(message_from_bytes(sent.raw)["Message-ID"])


def test_a_bounced_reply_is_marked_failed_and_its_case_flagged(engine) -> None:  # type: ignore[no-untyped-def]
    services, reply_id = answered_once(engine)
    services.inbox.deliver(report(reply_id))
    run_once(services)

    assert len(services.transport.sent) == 1  # the report is never answered
    with Session(engine) as session:
        reply = session.exec(select(Outbox)).one()
        question_case, report_case = session.exec(select(Case).order_by(Case.id)).all()
    assert reply.status == OutboxStatus.failed and "5.1.1" in reply.last_error
    assert "reply_bounced" in question_case.flags and question_case.status == CaseStatus.answered
    assert report_case.status == CaseStatus.ignored


@pytest.mark.parametrize("status", ["4.4.7", "2.0.0"])
def test_a_delay_or_success_report_changes_nothing(engine, status: str) -> None:  # type: ignore[no-untyped-def]
    services, reply_id = answered_once(engine)
    services.inbox.deliver(report(reply_id, status=status))
    run_once(services)
    with Session(engine) as session:
        reply = session.exec(select(Outbox)).one()
        question_case = session.exec(select(Case).order_by(Case.id)).first()
    assert reply.status == OutboxStatus.sent and not reply.last_error
    assert question_case is not None and "reply_bounced" not in question_case.flags


def test_only_our_own_message_ids_are_taken() -> None:
    theirs = report("<r-1@elsewhere.example>")
    assert find_bounce(theirs, own_domain=DOMAIN) is None
    ours = find_bounce(report(f"<r-2@{DOMAIN}>"), own_domain=DOMAIN)
    assert ours is not None and ours.message_ids == (f"<r-2@{DOMAIN}>",) and ours.status == "5.1.1"
    # X-Failed-Recipients without a Status line (Exim) is a permanent failure too
    exim = (f"From: Mail Delivery System <Mailer-Daemon@mx.example>\r\nX-Failed-Recipients: pat@clinic.example\r\n"
            f"Subject: Mail delivery failed\r\n\r\n------ This is a copy of the message, including all the headers.\r\n"
            f"Message-ID: <r-3@{DOMAIN}>\r\n").encode()
    found = find_bounce(exim, own_domain=DOMAIN)
    assert found is not None and found.message_ids == (f"<r-3@{DOMAIN}>",) and found.status == ""


def test_the_shipped_postfix_bounce_fixture_is_read() -> None:
    from pathlib import Path

    raw = (Path(__file__).parent / "fixtures" / "mail" / "m01_dsn_bounce.eml").read_bytes()
    found = find_bounce(raw, own_domain=DOMAIN)
    assert found is not None and found.status == "5.1.1"
    assert f"<20250325095959.CC03@{DOMAIN}>" in found.message_ids
