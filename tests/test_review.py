"""Staff review on held cases: approve, edit codes, reject, retry; each action audited."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from sqlmodel import Session, select

from consultant.db import session_scope
from consultant.errors import PermanentSendError
from consultant.inbox import MemoryInbox
from consultant.match.base import Suggestion
from consultant.models import Account, AuditEntry, Case, CaseStatus, Code, Outbox, OutboxStatus, Tier
from consultant.outbox import MemoryTransport
from consultant.pipeline import ReviewPolicy, Services, run_once
from consultant.quota import QuotaPolicy
from consultant.review import (
    ReviewError,
    approve_case,
    edit_codes,
    parse_code_list,
    reject_case,
    retry_send,
)
from tests.fakes import KeywordMatcher, question

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ADDRESS = "consultant@caseconsultant.example"
STAFF = "reviewer@caseconsultant.example"
POLICY = QuotaPolicy()

UNSURE = Suggestion(
    code="I10", system="ICD-10-CM", status="valid", score=0.3, confidence=0.3,
    official="Essential (primary) hypertension", evidence=("'blood pressure' ~ hypertension",),
)


def add_codes(engine) -> None:  # type: ignore[no-untyped-def]
    """The few code rows these tests need, instead of loading the code sets."""
    rows = [
        Code(system="ICD-10-CM", code="I10", display="I10", kind="code", official="Essential (primary) hypertension",
             plain="High blood pressure", billable=True, release="ICD-10-CM FY2026"),
        Code(system="ICD-10-CM", code="E119", display="E11.9", kind="code",
             official="Type 2 diabetes mellitus without complications", plain="Type 2 diabetes", billable=True,
             release="ICD-10-CM FY2026"),
        Code(system="CPT", code="62321", display="62321", kind="code", official="Team-written sample: epidural",
             billable=True, release="CPT sample"),
        Code(system="HCPCS", code="E119", display="E119", kind="code", official="Made-up HCPCS twin of E11.9",
             billable=True, release="HCPCS sample"),
    ]
    with session_scope(engine) as session:
        session.add_all(rows)


def held_case(engine, *, text: str = "patient has high blood pressure", sender: str = "pat@clinic.example",
              transport: MemoryTransport | None = None) -> Services:  # type: ignore[no-untyped-def]
    services = Services(
        engine=engine,
        inbox=MemoryInbox(),
        transport=transport or MemoryTransport(),
        matcher=KeywordMatcher({"blood pressure": UNSURE}),
        address=ADDRESS,
        review=ReviewPolicy(below_confidence=0.5, no_codes=True),
    )
    services.inbox.deliver(question(text, sender=sender, message_id="<held@clinic.example>"))
    run_once(services, now=lambda: NOW)
    return services


def only_case(engine) -> Case:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return session.exec(select(Case)).one()


def outbox_rows(engine) -> list[Outbox]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return list(session.exec(select(Outbox).order_by(Outbox.id)).all())


def audit(engine) -> list[tuple[str, str, str]]:  # type: ignore[no-untyped-def]
    with Session(engine) as session:
        return [(a.actor, a.action, a.detail) for a in session.exec(select(AuditEntry).order_by(AuditEntry.id))]


def text_of(raw: bytes) -> str:
    return message_from_bytes(raw, policy=policy.default).get_body(preferencelist=("plain",)).get_content()


def act(engine, action, *args, **kwargs):  # type: ignore[no-untyped-def]
    with session_scope(engine) as session:
        return action(session, *args, actor=STAFF, now=NOW + timedelta(minutes=5), **kwargs)


def test_a_held_case_is_not_sent_and_not_charged(db_engine) -> None:
    services = held_case(db_engine)
    assert services.transport.sent == []
    case = only_case(db_engine)
    assert (case.status, case.reason) == (CaseStatus.needs_review, "review_low_confidence")
    assert [r.status for r in outbox_rows(db_engine)] == [OutboxStatus.held]
    with Session(db_engine) as session:
        assert session.exec(select(Account)).first() is None


def test_approve_charges_and_the_worker_sends_the_held_reply(db_engine) -> None:
    services = held_case(db_engine)
    case = only_case(db_engine)
    assert act(db_engine, approve_case, case.id, policy=POLICY, address=ADDRESS) == CaseStatus.answered
    run_once(services, now=lambda: NOW + timedelta(minutes=6))
    [sent] = services.transport.sent
    assert sent.recipients == ["pat@clinic.example"]
    reply = message_from_bytes(sent.raw, policy=policy.default)
    assert reply["In-Reply-To"] == "<held@clinic.example>"
    assert "I10" in text_of(sent.raw) and "Hello Pat," in text_of(sent.raw)
    case = only_case(db_engine)
    assert (case.status, case.reason) == (CaseStatus.answered, "approved")
    with Session(db_engine) as session:
        assert session.exec(select(Account)).one().answered == 1
    assert audit(db_engine) == [(STAFF, "approve", "reply sent (I10)")]


def test_approve_without_an_answer_left_sends_the_over_quota_notice(db_engine) -> None:
    services = held_case(db_engine)
    with session_scope(db_engine) as session:
        session.add(Account(email="pat@clinic.example", tier=Tier.guest, answered=1, created_at=NOW))
    assert act(db_engine, approve_case, only_case(db_engine).id, policy=POLICY, address=ADDRESS) == CaseStatus.over_quota
    run_once(services, now=lambda: NOW + timedelta(minutes=6))
    [sent] = services.transport.sent
    assert "used all 1 of its answered questions" in text_of(sent.raw)
    assert [r.status for r in outbox_rows(db_engine)] == [OutboxStatus.cancelled, OutboxStatus.sent]
    assert only_case(db_engine).status == CaseStatus.over_quota
    assert audit(db_engine)[0][1] == "approve" and "over-quota" in audit(db_engine)[0][2]


def test_approving_a_no_code_reply_costs_nothing(db_engine) -> None:
    services = held_case(db_engine, text="Can you help me with something?")
    case = only_case(db_engine)
    assert case.reason == "review_no_codes"
    act(db_engine, approve_case, case.id, policy=POLICY, address=ADDRESS)
    run_once(services, now=lambda: NOW + timedelta(minutes=6))
    assert "could not find a medical code" in text_of(services.transport.sent[0].raw)
    with Session(db_engine) as session:
        assert session.exec(select(Account)).first() is None


def test_edit_codes_rerenders_the_held_reply_from_the_code_table(db_engine) -> None:
    add_codes(db_engine)
    services = held_case(db_engine)
    case_id = only_case(db_engine).id
    chosen = act(db_engine, edit_codes, case_id, "ICD-10-CM E11.9\ncpt:62321", policy=POLICY, address=ADDRESS)
    assert [(s.code, s.system) for s in chosen] == [("E11.9", "ICD-10-CM"), ("62321", "CPT")]
    first, second = outbox_rows(db_engine)
    assert (first.status, second.status) == (OutboxStatus.cancelled, OutboxStatus.held)
    text = text_of(second.raw)
    assert "Type 2 diabetes mellitus without complications" in text and "62321" in text and "I10" not in text
    assert message_from_bytes(second.raw, policy=policy.default)["In-Reply-To"] == "<held@clinic.example>"
    case = only_case(db_engine)
    assert case.status == CaseStatus.needs_review
    assert [(c["code"], c["report"]) for c in case.codes] == [("E11.9", True), ("62321", True), ("I10", False)]
    assert audit(db_engine) == [(STAFF, "edit_codes", "codes I10 -> E11.9, 62321")]

    act(db_engine, approve_case, case_id, policy=POLICY, address=ADDRESS)
    run_once(services, now=lambda: NOW + timedelta(minutes=6))
    assert "62321" in text_of(services.transport.sent[0].raw)


@pytest.mark.parametrize(
    "codes, message",
    [("Z99.999", "not in the code tables"), ("e119", "several systems.*ICD-10-CM e119"),
     ("nosuch E11.9", "unknown code system"),
     ("a b c", "write a code")],
)
def test_edit_codes_refuses_what_it_cannot_look_up(engine, codes: str, message: str) -> None:
    add_codes(engine)
    held_case(engine)
    with pytest.raises(ReviewError, match=message):
        act(engine, edit_codes, only_case(engine).id, codes, policy=POLICY, address=ADDRESS)
    assert [r.status for r in outbox_rows(engine)] == [OutboxStatus.held]
    assert audit(engine) == []


def test_removing_every_code_turns_the_reply_into_the_no_code_reply(engine) -> None:
    held_case(engine)
    act(engine, edit_codes, only_case(engine).id, "", policy=POLICY, address=ADDRESS)
    assert "could not find a medical code" in text_of(outbox_rows(engine)[-1].raw)


def test_reject_sends_the_note_and_charges_nothing(db_engine) -> None:
    services = held_case(db_engine)
    note = "Please send the <b>operative</b> note's procedure, not the patient's name."
    act(db_engine, reject_case, only_case(db_engine).id, note, policy=POLICY, address=ADDRESS)
    run_once(services, now=lambda: NOW + timedelta(minutes=6))
    [sent] = services.transport.sent
    assert note in text_of(sent.raw)
    html = message_from_bytes(sent.raw, policy=policy.default).get_body(preferencelist=("html",)).get_content()
    assert "&lt;b&gt;operative&lt;/b&gt;" in html
    assert only_case(db_engine).status == CaseStatus.rejected
    assert [r.status for r in outbox_rows(db_engine)] == [OutboxStatus.cancelled, OutboxStatus.sent]
    assert audit(db_engine) == [(STAFF, "reject", note)]


def test_actions_on_a_case_not_in_review_are_refused(engine) -> None:
    held_case(engine)
    case_id = only_case(engine).id
    act(engine, approve_case, case_id, policy=POLICY, address=ADDRESS)
    for action, args in ((approve_case, ()), (edit_codes, ("I10",)), (reject_case, ("no",))):
        with pytest.raises(ReviewError, match="not waiting for review"):
            act(engine, action, case_id, *args, policy=POLICY, address=ADDRESS)
    with pytest.raises(ReviewError, match="no case #999"):
        act(engine, approve_case, 999, policy=POLICY, address=ADDRESS)


def test_retry_puts_a_failed_send_back_and_restores_the_case(db_engine) -> None:
    transport = MemoryTransport()
    services = held_case(db_engine, transport=transport)
    act(db_engine, approve_case, only_case(db_engine).id, policy=POLICY, address=ADDRESS)
    transport.fail_with = PermanentSendError("SMTP 550: mailbox unavailable")
    run_once(services, now=lambda: NOW + timedelta(minutes=6))
    assert only_case(db_engine).status == CaseStatus.failed
    failed = outbox_rows(db_engine)[-1]
    assert failed.status == OutboxStatus.failed

    transport.fail_with = None
    act(db_engine, retry_send, failed.id)
    case = only_case(db_engine)
    assert (case.status, case.error) == (CaseStatus.answered, "")
    run_once(services, now=lambda: NOW + timedelta(minutes=7))
    assert len(transport.sent) == 1
    assert outbox_rows(db_engine)[-1].status == OutboxStatus.sent
    actions = audit(db_engine)
    assert actions[-1][1] == "retry_send" and "550" in actions[-1][2]
    with pytest.raises(ReviewError, match="only a failed reply"):
        act(db_engine, retry_send, failed.id)


def test_two_staff_approving_at_once_charge_and_send_once(db_engine) -> None:
    held_case(db_engine)
    case_id = only_case(db_engine).id
    outcome: list[object] = []

    def second_reviewer() -> None:
        try:
            outcome.append(act(db_engine, approve_case, case_id, policy=POLICY, address=ADDRESS))
        except ReviewError as exc:
            outcome.append(str(exc))

    with session_scope(db_engine) as first:
        approve_case(first, case_id, actor=STAFF, policy=POLICY, address=ADDRESS, now=NOW)
        other = threading.Thread(target=second_reviewer)
        other.start()
        other.join(timeout=0.5)
        assert other.is_alive()  # waits for the first reviewer's transaction
    other.join(timeout=30)
    assert outcome == [f"case #{case_id} is answered, not waiting for review"]
    with Session(db_engine) as session:
        assert session.exec(select(Account)).one().answered == 1
    assert [r.status for r in outbox_rows(db_engine)] == [OutboxStatus.pending]


def test_parse_code_list() -> None:
    assert parse_code_list(" E11.9, cpt 62310\n\nICD-10-CM:I10; ") == ["E11.9", "cpt 62310", "ICD-10-CM:I10"]
