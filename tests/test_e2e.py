"""End to end with the real code data and matcher: IMAP in (pymap), SMTP out (aiosmtpd)."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest
from imapclient import IMAPClient
from sqlmodel import Session, select

from consultant.inbox import ImapConfig, ImapInbox
from consultant.match import build_matcher
from consultant.models import Case, CaseStatus
from consultant.outbox import SmtpConfig, SmtpTransport
from consultant.pipeline import ReviewPolicy, Services, run_once
from tests.fakes import question

pytestmark = pytest.mark.integration


def append(config: ImapConfig, *messages: bytes) -> None:
    with IMAPClient(config.host, port=config.port, ssl=False, timeout=10) as client:
        client.login(config.user, config.password)
        for raw in messages:
            client.append("INBOX", raw)


def replies_by_question(sink) -> dict[str, tuple[list[str], str, str]]:  # type: ignore[no-untyped-def]
    found = {}
    for _sender, rcpts, raw in sink.messages:
        msg = message_from_bytes(raw, policy=policy.default)
        text = msg.get_body(preferencelist=("plain",)).get_content()
        html = msg.get_body(preferencelist=("html",)).get_content()
        found[msg["In-Reply-To"]] = (rcpts, text, html)
    return found


def test_real_questions_get_real_answers(loaded_engine, pymap_server, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    append(
        pymap_server,
        question("What is CPT code 62310?", sender="ann@clinic.example", message_id="<cpt@clinic.example>"),
        question("dx code for HTN with CKD 3a?", sender="bob@clinic.example", message_id="<htn@clinic.example>"),
        question("hcpcs j3301 - how many units for 40 mg?", sender="cy@clinic.example", message_id="<j@clinic.example>"),
        question("Is G35 still billable?", sender="di@clinic.example", message_id="<g35@clinic.example>"),
        question("Delivery failed", sender="MAILER-DAEMON@mx.clinic.example", message_id="<dsn@mx.clinic.example>"),
        question("help", sender="ed@clinic.example", subject="help", message_id="<help@clinic.example>"),
    )
    services = Services(
        engine=loaded_engine,
        inbox=ImapInbox(pymap_server),
        transport=SmtpTransport(SmtpConfig(host="127.0.0.1", port=smtp_sink.port, security="none", timeout=10)),
        matcher=build_matcher(loaded_engine, cache_path=False),
        address="consultant@caseconsultant.example",
        review=ReviewPolicy(below_confidence=0.0, no_codes=False),
    )
    summary = run_once(services)
    services.inbox.close()
    assert summary.fetched == 6 and summary.acknowledged == 6
    smtp_sink.wait_for(5)
    replies = replies_by_question(smtp_sink)
    assert set(replies) == {"<cpt@clinic.example>", "<htn@clinic.example>", "<j@clinic.example>",
                            "<g35@clinic.example>", "<help@clinic.example>"}

    rcpts, text, html = replies["<cpt@clinic.example>"]
    assert rcpts == ["ann@clinic.example"]
    assert "62310 (CPT): DELETED on January 1, 2017" in text
    assert "62320" in text and "62321" in text
    assert "Answers remaining on your account: 0" in text and "62310" in html

    _, text, _ = replies["<htn@clinic.example>"]
    assert "I12.9 (ICD-10-CM)" in text and "N18.31 (ICD-10-CM)" in text
    assert "ICD-10-CM FY2026" in text

    _, text, _ = replies["<j@clinic.example>"]
    assert "J3301 (HCPCS)" in text and "J33.01" not in text

    _, text, _ = replies["<g35@clinic.example>"]
    assert "G35 (ICD-10-CM): DELETED" in text and "G35.A" in text

    _, text, _ = replies["<help@clinic.example>"]
    assert "patient identifiers" in text.lower()

    with Session(loaded_engine) as session:
        dsn = session.exec(select(Case).where(Case.message_id == "<dsn@mx.clinic.example>")).one()
    assert (dsn.status, dsn.reason) == (CaseStatus.ignored, "mailer_daemon")
