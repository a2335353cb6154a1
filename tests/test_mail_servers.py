"""The pipeline against real servers: pymap and Dovecot for IMAP, aiosmtpd for SMTP."""

from __future__ import annotations

import dataclasses
from email import message_from_bytes, policy

import pytest
from imapclient import IMAPClient
from sqlmodel import Session, select

from consultant.errors import MailboxError
from consultant.inbox import ImapConfig, ImapInbox
from consultant.models import Case, CaseStatus
from consultant.outbox import SmtpConfig, SmtpTransport
from consultant.pipeline import Services, run_once
from tests.fakes import KeywordMatcher, question

pytestmark = pytest.mark.integration


@pytest.fixture(params=["pymap", "dovecot"])
def imap_server(request: pytest.FixtureRequest) -> ImapConfig:
    return request.getfixturevalue(f"{request.param}_server")


def append(config: ImapConfig, *messages: bytes, folder: str = "INBOX") -> None:
    with IMAPClient(config.host, port=config.port, ssl=False, timeout=10) as client:
        client.login(config.user, config.password)
        for raw in messages:
            client.append(folder, raw)


def folder_count(config: ImapConfig, folder: str) -> int:
    with IMAPClient(config.host, port=config.port, ssl=False, timeout=10) as client:
        client.login(config.user, config.password)
        if not client.folder_exists(folder):
            return 0
        client.select_folder(folder, readonly=True)
        return len(client.search(["UNDELETED"]))


def services_for(engine, imap: ImapConfig, smtp_port: int, **kwargs) -> Services:  # type: ignore[no-untyped-def]
    return Services(
        engine=engine,
        inbox=ImapInbox(imap),
        transport=SmtpTransport(SmtpConfig(host="127.0.0.1", port=smtp_port, security="none", timeout=10)),
        matcher=KeywordMatcher(),
        address="consultant@localhost",
        **kwargs,
    )


def test_mixed_batch_end_to_end(engine, imap_server, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    append(
        imap_server,
        question("What is CPT code 62310?", sender="ann@clinic.example", message_id="<a1@clinic.example>"),
        question("Is E11.9 valid?", sender="bob@clinic.example", message_id="<b1@clinic.example>"),
        question("And CPT 62310 again?", sender="ann@clinic.example", message_id="<a2@clinic.example>"),
        question("I am out of the office", sender="ooo@clinic.example", headers={"Auto-Submitted": "auto-replied"}),
        question("Newsletter", sender="news@vendor.example", headers={"List-Unsubscribe": "<mailto:u@vendor.example>"}),
        question("Bounce", sender="MAILER-DAEMON@mx.example"),
    )
    services = services_for(engine, imap_server, smtp_sink.port)
    summary = run_once(services)
    services.inbox.close()

    assert summary.fetched == 6 and summary.acknowledged == 6 and summary.sent == 3
    smtp_sink.wait_for(3)
    replies = {}
    for mail_from, rcpts, raw in smtp_sink.messages:
        msg = message_from_bytes(raw, policy=policy.default)
        replies[msg["In-Reply-To"]] = (rcpts, msg, msg.get_body(preferencelist=("plain",)).get_content())
        assert mail_from == "consultant@localhost"
    assert set(replies) == {"<a1@clinic.example>", "<b1@clinic.example>", "<a2@clinic.example>"}
    rcpts, msg, text = replies["<a1@clinic.example>"]
    assert rcpts == ["ann@clinic.example"] and msg["References"] == "<a1@clinic.example>"
    assert "62310" in text and "62320" in text and "Answers remaining on your account: 0" in text
    assert "E11.9" in replies["<b1@clinic.example>"][2]
    assert "used all 1 of its answered questions" in replies["<a2@clinic.example>"][2]

    assert folder_count(imap_server, "INBOX") == 0
    assert folder_count(imap_server, "Processed") == 6
    with Session(engine) as session:
        statuses = sorted(c.status.value for c in session.exec(select(Case)).all())
    assert statuses == ["answered", "answered", "ignored", "ignored", "ignored", "over_quota"]

    again = services_for(engine, imap_server, smtp_sink.port)
    assert run_once(again).fetched == 0
    again.inbox.close()
    assert len(smtp_sink.messages) == 3


def test_a_message_put_back_in_the_inbox_is_not_answered_twice(engine, imap_server, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    raw = question("What is CPT code 62310?", message_id="<back@clinic.example>")
    append(imap_server, raw)
    services = services_for(engine, imap_server, smtp_sink.port)
    run_once(services)
    append(imap_server, raw)  # a user drags it back from Processed
    run_once(services)
    services.inbox.close()
    smtp_sink.wait_for(1)
    assert len(smtp_sink.messages) == 1
    assert folder_count(imap_server, "INBOX") == 0


def test_oversized_message_is_quarantined_from_its_header(engine, imap_server, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    append(imap_server, question("x" * 50_000), question("What is CPT code 62310?", sender="c@clinic.example"))
    small = dataclasses.replace(imap_server, max_message_bytes=20_000)
    services = services_for(engine, small, smtp_sink.port)
    run_once(services)
    services.inbox.close()
    with Session(engine) as session:
        cases = session.exec(select(Case).order_by(Case.uid)).all()
    assert [(c.status, c.reason) for c in cases] == [(CaseStatus.quarantined, "too_large"), (CaseStatus.answered, "")]


def test_bad_login_is_a_clear_mailbox_error(imap_server) -> None:  # type: ignore[no-untyped-def]
    inbox = ImapInbox(dataclasses.replace(imap_server, password="wrong"))
    with pytest.raises(MailboxError, match="login refused for CONSULTANT_IMAP_USER"):
        inbox.fetch_batch(10)


def test_unreachable_server_is_a_clear_mailbox_error() -> None:
    from tests.conftest import free_port

    inbox = ImapInbox(ImapConfig(host="127.0.0.1", port=free_port(), user="u", password="p", use_ssl=False, timeout=2))
    with pytest.raises(MailboxError, match="cannot reach IMAP server"):
        inbox.fetch_batch(10)


def test_postgres_pipeline_with_dovecot(pg_engine, dovecot_server, smtp_sink) -> None:  # type: ignore[no-untyped-def]
    append(dovecot_server, question("What is CPT code 62310?", message_id="<pg@clinic.example>"))
    services = services_for(pg_engine, dovecot_server, smtp_sink.port)
    assert run_once(services).sent == 1
    services.inbox.close()
    smtp_sink.wait_for(1)
    assert len(smtp_sink.messages) == 1


def test_workers_starting_together_may_both_create_the_processed_folder(imap_server, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Found by the 4-process quota test: two workers saw no Processed folder, both created it,
    and the second one's ALREADYEXISTS stopped it at start-up. The race is forced here."""
    from imapclient import IMAPClient

    from consultant.inbox import ImapInbox

    ImapInbox(imap_server).uidvalidity  # the first worker creates the folder
    real_exists, calls = IMAPClient.folder_exists, []

    def stale_first_look(self: IMAPClient, name: str) -> bool:
        calls.append(name)
        return len(calls) > 1 and real_exists(self, name)  # the first look predates the other's CREATE

    monkeypatch.setattr(IMAPClient, "folder_exists", stale_first_look)
    second = ImapInbox(imap_server)
    assert second.uidvalidity  # it looked before the first one created it, then lost the race: still fine
    second.close()
