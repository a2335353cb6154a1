"""The pipeline on in-memory mail twins, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from sqlmodel import Session, select

from consultant.classify import classify_safely
from consultant.errors import PermanentSendError, SendError
from consultant.inbox import MemoryInbox
from consultant.models import Account, Case, CaseStatus, Outbox, OutboxStatus, Tier
from consultant.outbox import MemoryTransport
from consultant.pipeline import Services, run_once
from tests.fakes import KeywordMatcher, question

NOW = datetime(2026, 11, 22, 12, 0, 0, tzinfo=UTC)


def make_services(engine, **kwargs) -> Services:  # type: ignore[no-untyped-def]
    return Services(
        engine=engine,
        inbox=kwargs.pop("inbox", MemoryInbox()),
        transport=kwargs.pop("transport", MemoryTransport()),
        matcher=kwargs.pop("matcher", KeywordMatcher()),
        address=kwargs.pop("address", "consultant@caseconsultant.example"),
        **kwargs,
    )


def cases_of(engine) -> list[Case]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return list(session.exec(select(Case).order_by(Case.id)).all())


def parsed(raw: bytes):  # type: ignore[no-untyped-def]
    return message_from_bytes(raw, policy=policy.default)


def test_question_is_answered_with_threading_headers_and_codes(db_engine) -> None:
    services = make_services(db_engine)
    services.inbox.deliver(question("What is CPT code 62310?", message_id="<q1@clinic.example>"))

    summary = run_once(services, now=lambda: NOW)

    assert summary.fetched == 1 and summary.acknowledged == 1 and summary.sent == 1
    sent = services.transport.sent[0]
    assert sent.recipients == ["coder@clinic.example"]
    reply = parsed(sent.raw)
    assert reply["In-Reply-To"] == "<q1@clinic.example>"
    assert "<q1@clinic.example>" in reply["References"]
    assert reply["Subject"] == "Re: Coding question"
    assert reply["Auto-Submitted"] == "auto-replied"
    assert reply["Message-ID"].endswith("@caseconsultant.example>")
    text = reply.get_body(preferencelist=("plain",)).get_content()
    html = reply.get_body(preferencelist=("html",)).get_content()
    assert "62310" in text and "DELETED on January 1, 2017" in text
    assert "62320" in text and "62321" in text
    assert "Answers remaining on your account: 0" in text
    assert "62310" in html
    [case] = cases_of(db_engine)
    assert case.status == CaseStatus.answered
    assert case.codes[0]["code"] == "62310"
    assert case.replied_at == NOW
    assert services.inbox.processed and not services.inbox.messages


def test_repolling_never_sends_a_second_reply(db_engine) -> None:
    inbox = MemoryInbox()
    inbox.acknowledge = lambda refs: None  # type: ignore[method-assign]  # the MOVE keeps failing
    services = make_services(db_engine, inbox=inbox)
    inbox.deliver(question())
    run_once(services, now=lambda: NOW)
    run_once(services, now=lambda: NOW + timedelta(minutes=1))
    run_once(services, now=lambda: NOW + timedelta(minutes=2))
    assert len(services.transport.sent) == 1
    assert len(cases_of(db_engine)) == 1


def test_same_message_under_new_uidvalidity_is_not_answered_again(db_engine) -> None:
    raw = question(message_id="<same@clinic.example>")
    first = make_services(db_engine, inbox=MemoryInbox(uidvalidity=1))
    first.inbox.deliver(raw)
    run_once(first, now=lambda: NOW)
    second = make_services(
        db_engine, inbox=MemoryInbox(uidvalidity=2), transport=first.transport, worker_id=first.worker_id
    )
    second.inbox.deliver(raw)
    run_once(second, now=lambda: NOW)
    assert len(first.transport.sent) == 1
    statuses = [(c.status, c.reason) for c in cases_of(db_engine)]
    assert statuses == [(CaseStatus.answered, ""), (CaseStatus.ignored, "duplicate")]


@pytest.mark.parametrize(
    "headers, sender, reason",
    [
        ({"Auto-Submitted": "auto-replied"}, "ooo@clinic.example", "auto_submitted"),
        ({"Precedence": "bulk"}, "news@vendor.example", "precedence_bulk"),
        ({"List-Id": "<coders.lists.example>"}, "member@clinic.example", "mailing_list"),
        ({}, "MAILER-DAEMON@mx.example", "mailer_daemon"),
        ({}, "Consultant@CaseConsultant.example", "own_address"),
    ],
)
def test_machine_mail_gets_no_reply(engine, headers, sender, reason) -> None:  # type: ignore[no-untyped-def]
    services = make_services(engine)
    services.inbox.deliver(question(sender=sender, headers=headers))
    summary = run_once(services, now=lambda: NOW)
    assert services.transport.sent == []
    assert summary.acknowledged == 1
    [case] = cases_of(engine)
    assert case.status == CaseStatus.ignored
    assert case.reason == reason


def test_guest_over_quota_gets_the_over_quota_reply_without_codes(db_engine) -> None:
    services = make_services(db_engine)
    services.inbox.deliver(question("What is CPT code 62310?"))
    services.inbox.deliver(question("And E11.9?"))
    run_once(services, now=lambda: NOW)
    assert len(services.transport.sent) == 2
    second = parsed(services.transport.sent[1].raw).get_body(preferencelist=("plain",)).get_content()
    assert "used all 1 of its answered questions" in second
    assert "register" in second
    assert "E11.9" not in second
    assert [c.status for c in cases_of(db_engine)] == [CaseStatus.answered, CaseStatus.over_quota]
    with Session(db_engine) as session:
        account = session.exec(select(Account)).one()
    assert account.answered == 1 and account.tier == Tier.guest


def test_no_codes_found_is_answered_without_spending_quota(engine) -> None:
    services = make_services(engine)
    services.inbox.deliver(question("Can you help me with something?"))
    run_once(services, now=lambda: NOW)
    text = parsed(services.transport.sent[0].raw).get_body(preferencelist=("plain",)).get_content()
    assert "could not find a medical code" in text
    assert "did not use any of your answers" in text
    [case] = cases_of(engine)
    assert (case.status, case.reason) == (CaseStatus.answered, "no_codes")


def test_unparseable_message_is_quarantined_and_acknowledged(engine) -> None:
    services = make_services(engine)
    services.inbox.deliver(b"\x00\x01 not an email")
    services.inbox.deliver(question())
    summary = run_once(services, now=lambda: NOW)
    assert summary.acknowledged == 2
    assert len(services.transport.sent) == 1
    first, second = cases_of(engine)
    assert (first.status, first.reason) == (CaseStatus.quarantined, "unparseable")
    assert second.status == CaseStatus.answered


def test_a_crash_in_the_matcher_fails_one_case_and_the_batch_goes_on(engine) -> None:
    matcher = KeywordMatcher()
    matcher.crash_on = "boom"
    services = make_services(engine, matcher=matcher)
    services.inbox.deliver(question("boom goes 62310", sender="a@clinic.example"))
    services.inbox.deliver(question("What is 62310?", sender="b@clinic.example"))
    run_once(services, now=lambda: NOW)
    first, second = cases_of(engine)
    assert (first.status, first.reason) == (CaseStatus.failed, "internal_error")
    assert second.status == CaseStatus.answered
    assert [m.recipients for m in services.transport.sent] == [["b@clinic.example"]]


def test_temporary_send_failure_is_retried_with_backoff(engine) -> None:
    transport = MemoryTransport()
    transport.fail_with = SendError("SMTP 451: try later")
    services = make_services(engine, transport=transport)
    services.inbox.deliver(question())
    summary = run_once(services, now=lambda: NOW)
    assert summary.send_retry == 1 and transport.sent == []
    with Session(engine) as session:
        row = session.exec(select(Outbox)).one()
    assert row.status == OutboxStatus.pending and row.next_attempt_at == NOW + timedelta(seconds=30)

    transport.fail_with = None
    assert run_once(services, now=lambda: NOW + timedelta(seconds=10)).sent == 0  # not due yet
    assert run_once(services, now=lambda: NOW + timedelta(seconds=31)).sent == 1
    assert len(transport.sent) == 1


def test_permanent_send_failure_is_not_retried(engine) -> None:
    transport = MemoryTransport()
    transport.fail_with = PermanentSendError("SMTP 550: no such user")
    services = make_services(engine, transport=transport)
    services.inbox.deliver(question())
    run_once(services, now=lambda: NOW)
    transport.fail_with = None
    run_once(services, now=lambda: NOW + timedelta(hours=3))
    assert transport.sent == []
    [case] = cases_of(engine)
    assert case.status == CaseStatus.failed and "550" in case.error


def test_our_own_reply_fed_back_is_not_answered(engine) -> None:
    services = make_services(engine)
    services.inbox.deliver(question())
    run_once(services, now=lambda: NOW)
    services.inbox.deliver(services.transport.sent[0].raw)  # the reply comes back to the intake mailbox
    run_once(services, now=lambda: NOW + timedelta(minutes=1))
    assert len(services.transport.sent) == 1
    assert cases_of(engine)[-1].status == CaseStatus.ignored


def test_ping_pong_with_a_naive_autoresponder_stops_at_the_cap(engine) -> None:
    """A registered sender whose autoresponder strips every header and always replies."""
    from consultant.models import Account, Tier

    services = make_services(engine)
    with Session(engine) as session:
        session.add(Account(email="bot@clinic.example", tier=Tier.plan, extra_answers=1000, created_at=NOW))
        session.commit()
    for n in range(12):
        services.inbox.deliver(question(f"Re: your answer about 62310 ({n})", sender="bot@clinic.example"))
        run_once(services, now=lambda n=n: NOW + timedelta(minutes=n))
    assert len(services.transport.sent) == services.caps.per_hour
    assert cases_of(engine)[-1].reason == "reply_cap"


def test_over_quota_notice_goes_out_once_per_window(engine) -> None:
    services = make_services(engine)
    for n in range(4):
        services.inbox.deliver(question(f"62310 question {n}", sender="keen@clinic.example"))
    run_once(services, now=lambda: NOW)
    assert len(services.transport.sent) == 2  # one answer, one over-quota notice
    reasons = [c.reason for c in cases_of(engine)]
    assert reasons == ["", "over_quota", "over_quota_notice_suppressed", "over_quota_notice_suppressed"]


def test_mail_failing_dmarc_at_our_server_is_not_answered_or_charged(engine) -> None:
    services = make_services(engine, authserv_id="mx.caseconsultant.example")
    forged = question(
        sender="registered@clinic.example",
        headers={
            "Authentication-Results": "mx.caseconsultant.example; spf=fail smtp.mailfrom=clinic.example; dmarc=fail",
        },
    )
    services.inbox.deliver(forged)
    run_once(services, now=lambda: NOW)
    assert services.transport.sent == []
    [case] = cases_of(engine)
    assert (case.status, case.reason) == (CaseStatus.quarantined, "unauthenticated")


def test_reply_goes_to_the_from_address_never_to_reply_to(engine) -> None:
    services = make_services(engine)
    services.inbox.deliver(question(headers={"Reply-To": "attacker@evil.example"}))
    run_once(services, now=lambda: NOW)
    assert services.transport.sent[0].recipients == ["coder@clinic.example"]
    assert parsed(services.transport.sent[0].raw)["To"] == "coder@clinic.example"


def test_a_message_our_intake_fails_on_is_quarantined_and_the_batch_goes_on(engine, monkeypatch, caplog) -> None:  # type: ignore[no-untyped-def]
    """A bug in parsing one message costs that message (quarantined, raw kept for staff), not the batch."""
    from consultant import classify

    real_parse = classify.parse_message

    def parse(raw: bytes):  # type: ignore[no-untyped-def]
        if b"BOOM" in raw:
            raise RuntimeError("secret patient text in an exception")
        return real_parse(raw)

    monkeypatch.setattr(classify, "parse_message", parse)
    services = Services(engine=engine, inbox=MemoryInbox(), transport=MemoryTransport(), matcher=KeywordMatcher(),
                        address="consultant@localhost")
    for n, body in enumerate(["What is CPT 62310?", "BOOM", "What is CPT 62311?"]):
        services.inbox.deliver(
            f"From: p{n}@clinic.example\r\nSubject: q{n}\r\nMessage-ID: <q{n}@clinic.example>\r\n\r\n{body}\r\n".encode()
        )
    run_once(services)
    with Session(engine) as session:
        rows = {c.uid: (c.status.value, c.reason) for c in session.exec(select(Case)).all()}
    assert rows[2] == ("quarantined", "intake_error")
    assert rows[1][0] == rows[3][0] == "answered"
    assert not services.inbox.messages  # all three acknowledged
    assert "secret patient" not in caplog.text


def test_a_background_sender_delivers_what_the_passes_answer(engine) -> None:  # type: ignore[no-untyped-def]
    """`consultant run` sends on threads of its own: run_once only wakes them; nothing is lost or sent twice."""
    import time

    from consultant.scheduling import start_background_sender

    services = make_services(engine)
    for n in range(30):
        services.inbox.deliver(question(f"What is CPT code 6231{n % 2}?", sender=f"s{n}@clinic.example",
                                        message_id=f"<bg{n}@clinic.example>"))
    services.sender = start_background_sender(services)
    try:
        summary = run_once(services)
        assert summary.sent == 0  # not inline
        deadline = time.monotonic() + 10
        while len(services.transport.sent) < 30 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        services.sender.stop()
    assert sorted(m.recipients[0] for m in services.transport.sent) == sorted(f"s{n}@clinic.example" for n in range(30))
    with Session(engine) as session:
        assert {o.status for o in session.exec(select(Outbox)).all()} == {OutboxStatus.sent}
    assert services.sender.sent == 30


class SlowClassifier(KeywordMatcher):
    """Classifies ahead like the match helper, but each batch is `ready` only on the fourth look."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: dict[int, list] = {}  # type: ignore[type-arg]
        self.looks = 0
        self.waited = 0

    def classify_ahead(self, messages, *, own_address: str, authserv_id: str) -> int:  # type: ignore[no-untyped-def]
        self.batches[len(self.batches) + 1] = [
            classify_safely(m, own_address=own_address, authserv_id=authserv_id) for m in messages]
        return len(self.batches)

    def prefetch(self, texts) -> None:  # type: ignore[no-untyped-def]
        """Matching stays in `match`; having this makes the pipeline claim chunks ahead."""

    def classified_ready(self, ticket: int) -> bool:
        self.looks += 1
        return self.looks % 4 == 0

    def classified(self, ticket: int):  # type: ignore[no-untyped-def]
        self.waited += 1
        return {o.ref: o for o in self.batches[ticket]}


def test_a_batch_still_being_classified_ahead_does_not_hold_up_the_claimed_cases(engine) -> None:  # type: ignore[no-untyped-def]
    """While cases are claimed, the next batch is recorded only once the helper is done with
    it; it is waited for only when nothing is left to answer. Every question is answered once."""
    matcher = SlowClassifier()
    services = make_services(engine, matcher=matcher, batch_size=20)
    for n in range(100):
        services.inbox.deliver(question(f"What is CPT code 62310? ({n})", sender=f"c{n}@clinic.example"))
    for _ in range(10):
        if not services.inbox.messages:
            break
        run_once(services, now=lambda: NOW)
    run_once(services, now=lambda: NOW)
    # each message went to the helper once (how the 100 fall into batches depends on when the
    # pass's IMAP thread fetches them, which is how far the answering has come)
    classified = [o.ref for batch in matcher.batches.values() for o in batch]
    assert matcher.looks > 0 and len(classified) == len(set(classified)) == 100
    assert matcher.looks > matcher.waited  # asked, and went on answering, more often than it waited
    assert sorted(m.recipients[0] for m in services.transport.sent) == sorted(f"c{n}@clinic.example" for n in range(100))
    assert {c.status for c in cases_of(engine)} == {CaseStatus.answered}


def test_a_pass_acknowledges_closed_mail_to_fetch_behind_it(engine) -> None:  # type: ignore[no-untyped-def]
    # A fetch looks for new mail among the first SCAN_BATCHES batches' worth of UIDs, and the
    # pass's answered messages stay there until acknowledged. Once that window holds nothing
    # new, the closed ones are moved there and then, so the pass fetches on (with two workers,
    # the other worker would otherwise wait for the pass to end).
    from consultant.inbox import SCAN_BATCHES

    services = make_services(engine, batch_size=2)
    total = 2 * SCAN_BATCHES * 3
    for n in range(total):
        services.inbox.deliver(question(sender=f"coder{n}@clinic.example"))

    summary = run_once(services, now=lambda: NOW)

    assert summary.fetched == total and summary.acknowledged == total
    assert not services.inbox.messages and len(services.inbox.processed) == total
    assert len(services.transport.sent) == total
    assert all(c.status == CaseStatus.answered for c in cases_of(engine))


class WatchedInbox(MemoryInbox):
    """Notes the thread of every mailbox call; can be told to fail the Nth fetch."""

    def __init__(self, *, fail_fetch: int = 0) -> None:
        super().__init__()
        self.threads: list[str] = []
        self.fetches = 0
        self.fail_fetch = fail_fetch

    def fetch_batch(self, limit, known=None):  # type: ignore[no-untyped-def]
        import threading

        from consultant.errors import MailboxError

        self.threads.append(threading.current_thread().name)
        self.fetches += 1
        if self.fetches == self.fail_fetch:
            raise MailboxError("IMAP fetch failed: connection reset")
        return super().fetch_batch(limit, known)

    def acknowledge(self, refs) -> None:  # type: ignore[no-untyped-def]
        import threading

        self.threads.append(threading.current_thread().name)
        super().acknowledge(refs)


def _imap_threads() -> list[str]:
    import threading

    return [t.name for t in threading.enumerate() if t.name.startswith("imap")]


def test_with_a_classifying_helper_the_mailbox_is_used_from_the_pass_imap_thread(engine) -> None:  # type: ignore[no-untyped-def]
    # The answering thread goes on answering while a fetch is under way; every fetch and
    # move is made on the pass's one IMAP thread, in order, and the thread ends with the pass.
    inbox = WatchedInbox()
    services = make_services(engine, matcher=SlowClassifier(), inbox=inbox, batch_size=10)
    for n in range(45):
        inbox.deliver(question(f"What is CPT code 62310? ({n})", sender=f"t{n}@clinic.example"))

    for _ in range(5):
        run_once(services, now=lambda: NOW)

    assert inbox.fetches >= 5 and inbox.threads
    assert {name.rsplit("_", 1)[0] for name in inbox.threads} == {"imap"}
    assert not _imap_threads()
    assert sorted(m.recipients[0] for m in services.transport.sent) == sorted(f"t{n}@clinic.example" for n in range(45))
    assert not inbox.messages and len(inbox.processed) == 45


def test_a_fetch_failing_on_the_imap_thread_stops_the_pass_and_loses_nothing(engine) -> None:  # type: ignore[no-untyped-def]
    from consultant.errors import MailboxError

    inbox = WatchedInbox(fail_fetch=2)
    services = make_services(engine, matcher=SlowClassifier(), inbox=inbox, batch_size=10)
    for n in range(25):
        inbox.deliver(question(f"What is CPT code 62310? ({n})", sender=f"f{n}@clinic.example"))

    with pytest.raises(MailboxError):
        run_once(services, now=lambda: NOW)
    assert not _imap_threads()

    for _ in range(4):  # the next passes pick up where it stopped: its claims were given back
        run_once(services, now=lambda: NOW)
    assert sorted(m.recipients[0] for m in services.transport.sent) == sorted(f"f{n}@clinic.example" for n in range(25))
    assert {c.status for c in cases_of(engine)} == {CaseStatus.answered}
    assert not inbox.messages


class PacedTransport(MemoryTransport):
    """A transport that takes 2 ms per message; `another` makes one more, listed in `made`."""

    def __init__(self, made: list[PacedTransport]) -> None:
        super().__init__()
        self.made = made
        made.append(self)

    def send(self, raw: bytes, *, sender: str, recipients: list[str]) -> None:
        import time

        time.sleep(0.002)
        super().send(raw, sender=sender, recipients=recipients)

    def another(self) -> PacedTransport:
        return PacedTransport(self.made)


def test_a_background_sender_shares_a_burst_over_its_connections(engine) -> None:  # type: ignore[no-untyped-def]
    import time

    from consultant.scheduling import start_background_sender

    made: list[PacedTransport] = []
    services = make_services(engine, transport=PacedTransport(made), send_connections=2)
    for n in range(60):
        services.inbox.deliver(question(f"What is CPT code 62310? ({n})", sender=f"b{n}@clinic.example"))
    services.sender = start_background_sender(services)
    try:
        run_once(services)
        deadline = time.monotonic() + 15
        while sum(len(t.sent) for t in made) < 60 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        services.sender.stop()
    assert len(made) == 2 and all(t.sent for t in made)  # both connections carried replies
    recipients = [m.recipients[0] for t in made for m in t.sent]
    assert sorted(recipients) == sorted(f"b{n}@clinic.example" for n in range(60))  # each exactly once
    assert services.sender.sent == 60


def test_a_case_failing_inside_its_chunks_transaction_leaves_no_trace_and_the_rest_are_answered(db_engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """A chunk's questions are answered in one transaction: an error after one case charged its
    sender and wrote its reply rolls the chunk back, and each case is answered alone: that one
    closes as failed with nothing of it kept, the others are answered."""
    import consultant.pipeline as pipeline

    real = pipeline.enqueue_reply

    def enqueue(conn, case_id, target, **kwargs):  # type: ignore[no-untyped-def]
        real(conn, case_id, target, **kwargs)  # the reply row is written, then the case fails
        if target.to == "b@clinic.example":
            raise RuntimeError("render exploded")

    monkeypatch.setattr(pipeline, "enqueue_reply", enqueue)
    services = make_services(db_engine)
    for sender in ("a@clinic.example", "b@clinic.example", "c@clinic.example"):
        services.inbox.deliver(question("What is 62310?", sender=sender))
    summary = run_once(services, now=lambda: NOW)
    assert summary.statuses == {"answered": 2, "failed": 1}
    first, second, third = cases_of(db_engine)
    assert (second.status, second.reason, second.flags) == (CaseStatus.failed, "internal_error", [])
    assert first.status == third.status == CaseStatus.answered and first.flags == third.flags == []
    with Session(db_engine) as session:
        assert sorted(r.recipient for r in session.exec(select(Outbox)).all()) == ["a@clinic.example",
                                                                                  "c@clinic.example"]
        assert session.exec(select(Account).where(Account.email == "b@clinic.example")).first() is None or \
            session.exec(select(Account).where(Account.email == "b@clinic.example")).one().answered == 0


def test_one_senders_questions_in_a_chunk_keep_their_order_for_the_quota(db_engine) -> None:
    services = make_services(db_engine)  # a guest: one answered question
    services.inbox.deliver(question("What is 62310?", sender="z@clinic.example", message_id="<1@clinic.example>"))
    services.inbox.deliver(question("What is 62310?", sender="a@clinic.example", message_id="<2@clinic.example>"))
    services.inbox.deliver(question("What is E11.9?", sender="z@clinic.example", message_id="<3@clinic.example>"))
    run_once(services, now=lambda: NOW)
    first, other, later = cases_of(db_engine)
    assert (first.status, other.status, later.status) == (CaseStatus.answered, CaseStatus.answered,
                                                          CaseStatus.over_quota)


def test_a_pass_that_stops_takes_back_the_attempt_marks_of_cases_it_never_reached(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The next chunk is begun in the transaction that answers this one; when the pass stops
    before answering it, those cases count no attempt towards poison."""
    import consultant.pipeline as pipeline
    from sqlalchemy.exc import OperationalError

    services = make_services(engine)
    for n in range(25):  # three chunks of ten
        services.inbox.deliver(question("What is 62310?", sender=f"p{n}@clinic.example"))
    calls = {"n": 0}
    real = pipeline._answer_group

    def group(services, attempts, following, started, *, now):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        if calls["n"] == 2:
            raise OperationalError("UPDATE", {}, Exception("database went away"))
        return real(services, attempts, following, started, now=now)

    monkeypatch.setattr(pipeline, "_answer_group", group)
    with pytest.raises(OperationalError):
        run_once(services, now=lambda: NOW)
    statuses = [(c.status, c.flags) for c in cases_of(engine)]
    assert statuses[:10] == [(CaseStatus.answered, [])] * 10
    assert statuses[10:] == [(CaseStatus.received, [])] * 15  # begun with the first chunk, never worked on
    run_once(services, now=lambda: NOW + timedelta(minutes=1))
    assert [c.status for c in cases_of(engine)] == [CaseStatus.answered] * 25
