"""Registering by email, end to end: real IMAP (pymap, Dovecot) in, real SMTP (aiosmtpd) out."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import make_msgid

import pytest
from imapclient import IMAPClient
from sqlmodel import Session, select

from consultant.inbox import ImapConfig, ImapInbox
from consultant.models import Account, Case, Tier
from consultant.outbox import SmtpConfig, SmtpTransport
from consultant.pipeline import Services, run_once
from consultant.quota import QuotaPolicy, quota_state
from tests.fakes import KeywordMatcher, question

pytestmark = pytest.mark.integration

ANN = "ann@clinic.example"
MALLORY = "mallory@elsewhere.example"


@pytest.fixture(params=["pymap", "dovecot"])
def imap_server(request: pytest.FixtureRequest) -> ImapConfig:
    return request.getfixturevalue(f"{request.param}_server")


def deliver(config: ImapConfig, raw: bytes) -> None:
    with IMAPClient(config.host, port=config.port, ssl=False, timeout=10) as client:
        client.login(config.user, config.password)
        client.append("INBOX", raw)


@pytest.fixture
def worker(engine, imap_server, smtp_sink) -> Iterator[Callable[[], object]]:  # type: ignore[no-untyped-def]
    """One worker for the whole test, as in production: each call is one poll."""
    services = Services(
        engine=engine,
        inbox=ImapInbox(imap_server),
        transport=SmtpTransport(SmtpConfig(host="127.0.0.1", port=smtp_sink.port, security="none", timeout=10)),
        matcher=KeywordMatcher(),
        address="consultant@localhost",
    )
    yield lambda: run_once(services)
    services.inbox.close()


def reply_with(sender: str, subject: str, body: str, *, in_reply_to: str = "") -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Ann Coder <{sender}>" if sender == ANN else sender
    msg["To"] = "consultant@localhost"
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2])
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
        msg["References"] = in_reply_to
    msg.set_content(body)
    return msg.as_bytes()


def last_reply(sink, count: int) -> tuple[list[str], str, str]:  # type: ignore[no-untyped-def]
    sink.wait_for(count)
    assert len(sink.messages) == count
    _, rcpts, raw = sink.messages[-1]
    msg = message_from_bytes(raw, policy=policy.default)
    return rcpts, msg["Message-ID"], msg.get_body(preferencelist=("plain",)).get_content()


def allowance_of(engine, email: str) -> tuple[Tier, int, int]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        state = quota_state(session, email, policy=QuotaPolicy())
    return state.tier, state.allowance, state.remaining


def test_register_by_email_then_the_quota_grows(engine, imap_server, smtp_sink, worker) -> None:  # type: ignore[no-untyped-def]
    assert allowance_of(engine, ANN) == (Tier.guest, 1, 1)

    deliver(imap_server, reply_with(ANN, "register", "register\n\nThanks"))
    worker()
    rcpts, register_id, text = last_reply(smtp_sink, 1)
    assert rcpts == [ANN] and "Hello Ann," in text
    code = re.search(r"Your confirmation code is: (\d{6})", text).group(1)  # type: ignore[union-attr]

    # Somebody else cannot use the code: it only works from the address it was sent to.
    deliver(imap_server, reply_with(MALLORY, "Re: CaseConsultant registration", code))
    worker()
    rcpts, _, text = last_reply(smtp_sink, 2)
    assert rcpts == [MALLORY] and "did not match a live registration" in text
    assert allowance_of(engine, ANN) == (Tier.guest, 1, 1)

    deliver(imap_server, reply_with(ANN, "My registration code", f"{code}\n\nAnn", in_reply_to=register_id))
    worker()
    rcpts, _, text = last_reply(smtp_sink, 3)
    assert rcpts == [ANN] and "Your free CaseConsultant account is ready" in text
    assert "6 questions answered in all; 6 remain" in text
    assert allowance_of(engine, ANN) == (Tier.free, 6, 6)

    deliver(imap_server, question("What is CPT code 62310?", sender=ANN))
    deliver(imap_server, reply_with(ANN, "balance", "balance"))
    worker()
    smtp_sink.wait_for(5)
    texts = [message_from_bytes(raw, policy=policy.default).get_body(preferencelist=("plain",)).get_content()
             for _, _, raw in smtp_sink.messages[3:]]
    assert any("62310" in t and "Answers remaining on your account: 5" in t for t in texts)
    assert any("has a free account. It has used 1 of 6 answered questions; 5 remain" in t for t in texts)
    assert allowance_of(engine, ANN) == (Tier.free, 6, 5)

    with Session(engine) as session:
        account = session.exec(select(Account).where(Account.email == ANN)).one()
        kinds = sorted(c.kind for c in session.exec(select(Case)))
    assert (account.tier, account.answered) == (Tier.free, 1)
    assert kinds == ["balance", "confirm", "confirm", "question", "register"]


def test_replying_to_the_register_email_with_the_code_registers(engine, imap_server, smtp_sink, worker) -> None:  # type: ignore[no-untyped-def]
    deliver(imap_server, reply_with(ANN, "register", "register"))
    worker()
    _, register_id, text = last_reply(smtp_sink, 1)
    code = re.search(r"Your confirmation code is: (\d{6})", text).group(1)  # type: ignore[union-attr]
    deliver(imap_server, reply_with(ANN, "Re: register", f"{code}\n\n> Your confirmation code is: {code}",
                                    in_reply_to=register_id))
    worker()
    assert "Your free CaseConsultant account is ready" in last_reply(smtp_sink, 2)[2]
    assert allowance_of(engine, ANN) == (Tier.free, 6, 6)
