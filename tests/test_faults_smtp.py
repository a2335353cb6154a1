"""SMTP faults against a real aiosmtpd server, scripted, with the fault proxy in between (checklist S-rows).

The clock is a parameter: retries are driven by calling `deliver_pending` at
the times the backoff schedule names, so no test sleeps through a backoff.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path

import pytest
from sqlmodel import Session, select

from consultant.inbox import MemoryInbox
from consultant.models import Case, CaseStatus, Outbox, OutboxStatus
from consultant.outbox import SmtpConfig, SmtpTransport, backoff, claim_outbox, deliver_pending
from consultant.pipeline import Services, run_once
from tests import mailhost
from tests.fakes import KeywordMatcher, question
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ADDRESS = "consultant@caseconsultant.example"
DATA_END = b"\r\n.\r\n"


@pytest.fixture
def sink() -> Iterator[mailhost.Sink]:
    with mailhost.Sink() as smtp:
        yield smtp


def transport(port: int, **changes: object) -> SmtpTransport:
    config = {"host": "127.0.0.1", "port": port, "security": "none", "timeout": 5.0, **changes}
    return SmtpTransport(SmtpConfig(**config))  # type: ignore[arg-type]


def answer(engine, smtp: SmtpTransport, *senders: str, attempts: int = 6) -> Services:  # type: ignore[no-untyped-def]
    """Answer one question per sender at NOW; the first send attempt happens in the same pass."""
    services = Services(engine=engine, inbox=MemoryInbox(), transport=smtp, matcher=KeywordMatcher(),
                        address=ADDRESS, send_attempts=attempts)
    for sender in senders:
        services.inbox.deliver(question("What is CPT 62310?", sender=sender, message_id=f"<q-{sender}>"))
    run_once(services, now=lambda: NOW)
    return services


def rows(engine) -> list[Outbox]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return list(session.exec(select(Outbox).order_by(Outbox.id)).all())


def cases(engine) -> list[Case]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return list(session.exec(select(Case).order_by(Case.id)).all())


def message_ids(sink: mailhost.Sink) -> list[str]:
    return ["".join(str(message_from_bytes(m.raw)["Message-ID"]).split()) for m in sink.messages]


def drain_at(engine, smtp: SmtpTransport, when: datetime) -> dict[str, int]:  # type: ignore[no-untyped-def]
    return deliver_pending(engine, smtp, sender=ADDRESS, now=when, holder="retry-worker")


# -- S01: relay down --------------------------------------------------------------------------
def test_relay_down_keeps_the_outbox_and_pauses_the_drain(engine) -> None:  # type: ignore[no-untyped-def]
    from tests.mailhost import free_port

    closed = transport(free_port())
    answer(engine, closed, "a@clinic.example", "b@clinic.example", "c@clinic.example")
    outbox = rows(engine)
    assert [r.status for r in outbox] == [OutboxStatus.pending] * 3
    assert [r.attempts for r in outbox] == [1, 0, 0]  # one failed connect, then the drain stopped
    assert all(c.status == CaseStatus.answered for c in cases(engine))  # inbound is not re-processed
    # the two untried rows were given back: another worker can send them at once
    assert len(claim_outbox(engine, holder="other", limit=10, now=NOW)) == 2


def test_421_at_the_greeting_is_a_retry(engine) -> None:  # type: ignore[no-untyped-def]
    with mailhost.busy_server() as busy:
        answer(engine, transport(busy.port), "a@clinic.example")
    [row] = rows(engine)
    assert (row.status, row.attempts) == (OutboxStatus.pending, 1) and "421" in row.last_error


# -- S02: 4xx: retried on the backoff schedule, then failed ---------------------------------
@pytest.mark.parametrize("stage", ["MAIL", "RCPT", "DATA"])
def test_4xx_is_retried_on_the_backoff_schedule_then_given_up(engine, sink, stage) -> None:  # type: ignore[no-untyped-def]
    sink.handler.script[stage] = ["451 4.3.0 Try again later"] * 10
    smtp = transport(sink.port)
    answer(engine, smtp, "a@clinic.example", attempts=6)
    when, waits = NOW, []
    for _ in range(10):
        [row] = rows(engine)
        if row.status != OutboxStatus.pending:
            break
        due = row.next_attempt_at.replace(tzinfo=UTC)
        assert drain_at(engine, smtp, due - timedelta(seconds=1))["retry"] == 0  # not before it is due
        waits.append(int((due - when).total_seconds()))
        when = due
        drain_at(engine, smtp, due)
    [row], [case] = rows(engine), cases(engine)
    print(f"S02 ({stage}): {row.attempts} attempts, waits {waits} s, then {row.status.value}")
    assert waits == [int(backoff(n).total_seconds()) for n in range(1, 6)] == [30, 60, 120, 240, 480]
    assert sink.handler.attempts[stage] == row.attempts == 6
    assert row.status == OutboxStatus.failed and case.status == CaseStatus.failed and "451" in case.error
    assert sink.messages == []


# -- S03, S04, S10: 5xx: one attempt, no retry -----------------------------------------------
@pytest.mark.parametrize(
    "stage, reply",
    [
        ("RCPT", "550 5.1.1 No such user"),
        ("DATA", "554 5.7.1 Rejected"),
        ("DATA", "552 5.3.4 Message too big"),
        ("DATA", "550 5.7.26 Unauthenticated mail is prohibited (DMARC)"),
    ],
)
def test_5xx_is_one_attempt_and_a_failed_case(engine, sink, stage, reply) -> None:  # type: ignore[no-untyped-def]
    sink.handler.script[stage] = [reply] * 5
    smtp = transport(sink.port)
    answer(engine, smtp, "a@clinic.example")
    for hours in (1, 3, 24):
        drain_at(engine, smtp, NOW + timedelta(hours=hours))
    [row], [case] = rows(engine), cases(engine)
    assert sink.handler.attempts[stage] == 1 and row.attempts == 1
    assert row.status == OutboxStatus.failed
    assert case.status == CaseStatus.failed and reply[:3] in case.error  # shown to staff in the report


# -- S05, S06: no reply after DATA: resent once, same Message-ID, flagged ---------------------
@pytest.mark.parametrize("fault", ["drop", "stall"])
def test_no_reply_after_data_is_resent_once_with_the_same_message_id(engine, sink, fault) -> None:  # type: ignore[no-untyped-def]
    with FaultProxy(sink.port) as proxy:
        if fault == "drop":
            proxy.drop_reply_after(DATA_END)  # S05: the connection dies before the 250
        else:
            proxy.stall_reply_after(DATA_END)  # S06: the 250 comes after our timeout
        smtp = transport(proxy.port, timeout=1.0)
        answer(engine, smtp, "a@clinic.example")
        assert sink.wait_for(1)  # the server has it, but we could not know
        [row] = rows(engine)
        assert row.status == OutboxStatus.pending and row.sending_since is not None
        proxy.heal()
        drain_at(engine, smtp, NOW + timedelta(minutes=1))
        drain_at(engine, smtp, NOW + timedelta(hours=3))
    [row], [case] = rows(engine), cases(engine)
    ids = message_ids(sink)
    print(f"S05/S06 ({fault}): {len(ids)} copies at the server, Message-IDs {set(ids)}, flags {case.flags}")
    assert len(ids) == 2 and len(set(ids)) == 1 and ids[0] == row.message_id  # one resend, identical
    assert case.flags == ["resent_after_crash"]
    assert row.status == OutboxStatus.sent and row.sending_since is None


# -- S07: the server drops a reused connection ----------------------------------------------
def test_a_dropped_reused_connection_is_a_plain_retry_before_data(engine, sink) -> None:  # type: ignore[no-untyped-def]
    with FaultProxy(sink.port) as proxy:
        proxy.drop_reply_after(b"TO:<b@clinic.example>")  # the 2nd message, before DATA
        smtp = transport(proxy.port)
        answer(engine, smtp, "a@clinic.example", "b@clinic.example", "c@clinic.example")
        assert proxy.triggered == 1
        assert [r.status for r in rows(engine)] == [OutboxStatus.sent, OutboxStatus.pending, OutboxStatus.sent]
        drain_at(engine, smtp, NOW + timedelta(minutes=1))
    recipients = sorted(r for m in sink.messages for r in m.rcpt_tos)
    assert recipients == ["a@clinic.example", "b@clinic.example", "c@clinic.example"]
    assert all(c.flags == [] for c in cases(engine))  # nothing was ambiguous
    assert proxy.connections == 3  # first session, the reconnect for the 3rd message, the retry


# -- S08, X11: TLS: refused, never a plaintext fallback ---------------------------------------
def test_starttls_missing_or_certificate_invalid_is_refused(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    cert = mailhost.make_cert(tmp_path / "certs", name="localhost")
    with mailhost.Sink() as plain:  # no STARTTLS offered (or stripped by a downgrade)
        answer(engine, transport(plain.port, security="starttls"), "a@clinic.example")
        assert plain.messages == []
    with mailhost.Sink(starttls=cert) as tls:  # self-signed: untrusted
        drain_at(engine, transport(tls.port, security="starttls"), NOW + timedelta(hours=1))
        assert tls.messages == []
        wrong_name = transport(tls.port, security="starttls", ssl_context=cert.trusting_context())  # 127.0.0.1
        drain_at(engine, wrong_name, NOW + timedelta(hours=2))
        assert tls.messages == []
    with mailhost.Sink(implicit_tls=cert) as implicit:
        drain_at(engine, transport(implicit.port, security="ssl"), NOW + timedelta(hours=3))
        assert implicit.messages == []
    [row] = rows(engine)
    assert row.status == OutboxStatus.pending and row.attempts == 4
    assert "CERTIFICATE_VERIFY_FAILED" in row.last_error
    with mailhost.Sink(starttls=cert) as tls:  # the right certificate and name: it goes out
        good = transport(tls.port, host="localhost", security="starttls", ssl_context=cert.trusting_context())
        assert drain_at(engine, good, NOW + timedelta(hours=5))["sent"] == 1
        assert len(tls.messages) == 1


# -- S09: login refused -------------------------------------------------------------------------
def test_login_refused_pauses_sending_and_keeps_the_outbox(engine) -> None:  # type: ignore[no-untyped-def]
    with mailhost.Sink(password="right") as guarded:
        answer(engine, transport(guarded.port, user="consultant", password="wrong"), "a@clinic.example",
               "b@clinic.example")
        outbox = rows(engine)
        assert [r.status for r in outbox] == [OutboxStatus.pending] * 2 and "login refused" in outbox[0].last_error
        assert all(c.status == CaseStatus.answered for c in cases(engine))
        fixed = transport(guarded.port, user="consultant", password="right")
        assert drain_at(engine, fixed, NOW + timedelta(hours=1))["sent"] == 2
        assert len(guarded.messages) == 2


# -- the ambiguous window: one message at a time, whatever the drain groups --------------------
def test_each_message_is_marked_sending_before_and_the_one_before_sent_by_then(engine) -> None:  # type: ignore[no-untyped-def]
    """The drain marks the previous message sent in the transaction that starts the next one;
    at every hand-off to SMTP exactly one row is `sending` and every earlier one is `sent`, so
    a crash can leave at most one message whose fate the server alone knows."""
    from consultant.outbox import MemoryTransport, SmtpUnavailable

    class Watching(MemoryTransport):
        def __init__(self) -> None:
            super().__init__()
            self.seen: list[list[tuple[str, bool]]] = []

        def send(self, raw: bytes, *, sender: str, recipients: list[str]) -> None:
            self.seen.append([(r.status.value, r.sending_since is not None) for r in rows(engine)])
            super().send(raw, sender=sender, recipients=recipients)

    watching = Watching()
    watching.fail_with = SmtpUnavailable("not yet")
    answer(engine, watching, "a@clinic.example", "b@clinic.example", "c@clinic.example")  # queued, not sent
    watching.fail_with, watching.seen = None, []
    counts = drain_at(engine, watching, NOW + timedelta(hours=1))
    assert counts["sent"] == 3
    assert watching.seen == [
        [("pending", True), ("pending", False), ("pending", False)],
        [("sent", False), ("pending", True), ("pending", False)],
        [("sent", False), ("sent", False), ("pending", True)],
    ]
    assert [(r.status, r.sending_since) for r in rows(engine)] == [(OutboxStatus.sent, None)] * 3
    assert all(c.replied_at is not None for c in cases(engine))
