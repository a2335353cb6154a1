"""Crash safety: worker processes killed with SIGKILL at every named point (CP1-CP8), restarted.

CI runs a reduced campaign (60 questions, at least 20 kills); the full one
(500 questions, at least 200 kills, at least 20 per point) runs with
CONSULTANT_FULL_CAMPAIGNS=1, or as `python -m bench.crash_campaign --full`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import Session, select

from consultant.cases import claim_cases
from consultant.db import make_engine, session_scope
from consultant.errors import SendError
from consultant.inbox import MemoryInbox
from consultant.lease import acquire_lease, holder_is_dead
from consultant.models import Case, CaseStatus, Outbox, OutboxStatus
from consultant.outbox import MemoryTransport, claim_outbox
from consultant.pipeline import Services, answer_case, run_once
from tests import crash_harness, mailhost
from tests.fakes import KeywordMatcher, question

pytestmark = pytest.mark.integration

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ADDRESS = "consultant@caseconsultant.example"


def _need_dovecot() -> None:
    if mailhost.dovecot_binary() is None:
        if os.environ.get("CONSULTANT_REQUIRE_DOVECOT", "").lower() in {"1", "true", "yes"}:
            pytest.fail("Dovecot is required but not installed")
        pytest.skip("Dovecot is not installed")


def test_kill_campaign_loses_nothing_and_duplicates_only_flagged_resends(tmp_path: Path) -> None:
    _need_dovecot()
    full = crash_harness.full_mode()
    campaign = crash_harness.Campaign(
        questions=500 if full else 60, min_kills=200 if full else 20, workers=2, deadline=3600 if full else 420,
    )
    outcome = crash_harness.run_campaign(campaign, tmp_path / "campaign")
    print(f"\ncrash campaign ({'full' if full else 'CI'}): {outcome.summary()}")
    assert outcome.problems() == []
    assert outcome.kills >= campaign.min_kills
    assert outcome.lost == [] and outcome.answered + len(outcome.poisoned) == outcome.questions >= campaign.questions
    if full:
        assert min(outcome.kills_by_point.get(p, 0) for p in crash_harness.POINTS) >= 20


# -- the pieces the campaign leans on, one at a time --------------------------------------------
def _dead_worker_id() -> str:
    """The id of a worker process that has been killed with SIGKILL (and reaped)."""
    child = subprocess.Popen(
        [sys.executable, "-c", ("from consultant.lease import worker_identity; import os, signal, sys; "
                                "print(worker_identity(), flush=True); os.kill(os.getpid(), signal.SIGKILL)")],
        stdout=subprocess.PIPE, text=True,
    )
    out, _ = child.communicate(timeout=30)
    assert child.returncode == -signal.SIGKILL
    return out.strip()


def test_a_killed_workers_lease_and_claims_are_taken_over_at_once(db_engine) -> None:  # type: ignore[no-untyped-def]
    engine = db_engine  # the dead holder's rows are freed by a statement built for it, on both databases
    dead = _dead_worker_id()
    me = Services(engine=engine, inbox=MemoryInbox(), transport=MemoryTransport(), matcher=KeywordMatcher(),
                  address=ADDRESS).worker_id
    assert holder_is_dead(dead) and not holder_is_dead(me)
    ttl = timedelta(minutes=2)
    assert acquire_lease(engine, "poll", holder=dead, ttl=ttl, now=NOW)
    with session_scope(engine) as session:  # what the dead worker held: a case claim and an outbox claim
        session.add(Case(mailbox="INBOX", uidvalidity=1, uid=99, raw=question(sender="x@clinic.example"),
                         sender="x@clinic.example", received_at=NOW, updated_at=NOW, claimed_by=dead,
                         claimed_until=NOW + timedelta(minutes=5)))
        session.add(Outbox(message_id="<dead@caseconsultant.example>", recipient="y@clinic.example", raw=b"x",
                           next_attempt_at=NOW, created_at=NOW, claimed_by=dead,
                           claimed_until=NOW + timedelta(minutes=5), sending_since=NOW))
    # a live holder is never taken for dead ...
    assert acquire_lease(engine, "other", holder=me, ttl=ttl, now=NOW)
    assert not acquire_lease(engine, "other", holder="x", ttl=ttl, now=NOW)
    # ... while the dead one's lease, case and outbox row are free long before their TTLs
    assert acquire_lease(engine, "poll", holder=me, ttl=ttl, now=NOW)
    assert claim_cases(engine, holder=me, limit=5, ttl=timedelta(minutes=5), now=NOW) == [1]
    assert claim_outbox(engine, holder=me, limit=5, now=NOW) == [1]


def test_a_workers_own_claims_are_not_probed_for_a_dead_holder(engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    # the answering path claims chunks ahead, so its own claims are live at every claim it makes
    import consultant.lease as lease

    me = Services(engine=engine, inbox=MemoryInbox(), transport=MemoryTransport(), matcher=KeywordMatcher(),
                  address=ADDRESS).worker_id
    dead = _dead_worker_id()
    with session_scope(engine) as session:
        for uid, holder in ((1, me), (2, dead), (3, None)):
            session.add(Case(mailbox="INBOX", uidvalidity=1, uid=uid, raw=question(sender="x@clinic.example"),
                             sender="x@clinic.example", received_at=NOW, updated_at=NOW, claimed_by=holder,
                             claimed_until=NOW + timedelta(minutes=5) if holder else None))
    probed: list[int] = []
    real = lease._proc_stat
    monkeypatch.setattr(lease, "_proc_stat", lambda pid: probed.append(pid) or real(pid))
    assert claim_cases(engine, holder=me, limit=5, ttl=timedelta(minutes=5), now=NOW) == [2, 3]
    assert probed == [int(dead.split(":")[1])]  # the dead worker's claim was checked and freed; ours was not


def test_a_live_holder_on_another_host_is_waited_out(engine) -> None:  # type: ignore[no-untyped-def]
    other = "another-host:4242:abcdef:4026531836.1"
    assert not holder_is_dead(other)
    assert acquire_lease(engine, "poll", holder=other, ttl=timedelta(minutes=2), now=NOW)
    assert not acquire_lease(engine, "poll", holder="me", ttl=timedelta(minutes=2), now=NOW + timedelta(minutes=1))
    assert acquire_lease(engine, "poll", holder="me", ttl=timedelta(minutes=2), now=NOW + timedelta(minutes=3))


def test_a_frozen_worker_cannot_commit_after_its_claim_moved_on(engine) -> None:  # type: ignore[no-untyped-def]
    """C05: the claim holder is frozen past its TTL; another answers; the first one's commit is refused."""
    transport = MemoryTransport()
    frozen = Services(engine=engine, inbox=MemoryInbox(), transport=transport, matcher=KeywordMatcher(),
                      address=ADDRESS, worker_id="frozen")
    other = Services(engine=engine, inbox=frozen.inbox, transport=transport, matcher=KeywordMatcher(),
                     address=ADDRESS, worker_id="other")
    frozen.inbox.deliver(question())
    from consultant.intake import intake_message

    [message] = frozen.inbox.fetch_batch(10)
    intake_message(engine, message, own_address=ADDRESS, now=NOW)
    [case_id] = claim_cases(engine, holder="frozen", limit=1, ttl=timedelta(minutes=5), now=NOW)
    later = NOW + timedelta(minutes=6)  # SIGSTOP ... SIGCONT, past the claim
    run_once(other, now=lambda: later)
    assert answer_case(frozen, case_id, now=later) == "skipped"
    with Session(engine) as session:
        assert len(session.exec(select(Outbox)).all()) == 1
        assert session.get(Case, case_id).status == CaseStatus.answered  # type: ignore[union-attr]
    assert len(transport.sent) == 1


def test_after_data_sent_is_a_crash_point_of_the_smtp_transport(tmp_path: Path) -> None:
    """CP5 lives inside the transport: the message is out, the reply unread, the process gone."""
    with mailhost.Sink() as sink:
        script = (
            "from consultant.outbox import SmtpConfig, SmtpTransport\n"
            f"t = SmtpTransport(SmtpConfig(host='127.0.0.1', port={sink.port}, security='none', timeout=5))\n"
            "t.send(b'Subject: x\\r\\nMessage-ID: <cp5@x>\\r\\n\\r\\nhi\\r\\n', sender='a@x.example', "
            "recipients=['b@x.example'])\n"
        )
        env = {**os.environ, "CONSULTANT_TEST_CRASH": "after_data_sent:1",
               "CONSULTANT_TEST_CRASH_LOG": str(tmp_path / "log")}
        done = subprocess.run([sys.executable, "-c", script], env=env, timeout=60, check=False)
        assert done.returncode == -signal.SIGKILL
        assert sink.wait_for(1)  # the server took it; our process never saw the 250
    assert (tmp_path / "log").read_text().split() == ["after_data_sent"]


def test_outbox_row_left_sending_by_a_dead_worker_is_resent_flagged(engine) -> None:  # type: ignore[no-untyped-def]
    dead = _dead_worker_id()
    services = Services(engine=engine, inbox=MemoryInbox(), transport=MemoryTransport(), matcher=KeywordMatcher(),
                        address=ADDRESS)
    services.inbox.deliver(question())
    services.transport.fail_with = SendError("SMTP 451: later")
    run_once(services, now=lambda: NOW)
    with session_scope(engine) as session:  # the dead worker had it on the wire
        row = session.exec(select(Outbox)).one()
        row.claimed_by, row.claimed_until, row.sending_since = dead, NOW + timedelta(hours=1), NOW
        row.next_attempt_at = NOW
        session.add(row)
    services.transport.fail_with = None
    run_once(services, now=lambda: NOW + timedelta(seconds=1))
    with Session(engine) as session:
        row = session.exec(select(Outbox)).one()
        case = session.exec(select(Case)).one()
    assert row.status == OutboxStatus.sent and case.flags == ["resent_after_crash"]


def test_database_down_aborts_the_poll_before_the_mailbox_changes() -> None:
    """D05: no database, no mailbox change: nothing fetched is acknowledged; the worker carries on."""
    from consultant.db import make_engine
    from consultant.scheduling import poll

    down = make_engine(f"postgresql+psycopg://postgres@127.0.0.1:{mailhost.free_port()}/none")
    inbox = MemoryInbox()
    inbox.deliver(question())
    fetched: list[int] = []
    original = inbox.fetch_batch
    inbox.fetch_batch = lambda limit, **kw: fetched.append(limit) or original(limit, **kw)  # type: ignore[method-assign]
    services = Services(engine=down, inbox=inbox, transport=MemoryTransport(), matcher=KeywordMatcher(),
                        address=ADDRESS)
    assert poll(services) is None  # logged and recorded as a failed poll, not raised
    assert fetched == [] and list(inbox.messages) == [1] and inbox.processed == {}


def _drop_connections(engine) -> None:  # type: ignore[no-untyped-def]
    """What a PostgreSQL restart does to the pooled connections: the server ends them."""
    with make_engine(str(engine.url.render_as_string(hide_password=False))).connect() as admin:
        admin.execute(text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                           "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
        admin.commit()


def test_a_pooled_connection_the_server_dropped_is_replaced_before_use(pg_engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """D05: connections that rested in the pool are pinged on checkout; dead ones are replaced."""
    from consultant import db
    from consultant.scheduling import poll

    services = Services(engine=pg_engine, inbox=MemoryInbox(), transport=MemoryTransport(), matcher=KeywordMatcher(),
                        address=ADDRESS)
    services.inbox.deliver(question("What is 62310?", sender="a@clinic.example"))
    assert poll(services, now=lambda: NOW) is not None
    _drop_connections(pg_engine)
    monkeypatch.setattr(db, "PING_AFTER_IDLE", 0.0)  # every pooled connection has rested long enough
    services.inbox.deliver(question("What is 62311?", sender="b@clinic.example"))
    summary = run_once(services, now=lambda: NOW + timedelta(seconds=1))  # not `poll`, which would forgive a failure
    assert summary.statuses == {"answered": 1}
    assert [m.recipients for m in services.transport.sent] == [["a@clinic.example"], ["b@clinic.example"]]


def test_a_database_connection_lost_mid_answer_fails_the_poll_not_the_case(pg_engine, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """D05: the connection dies between matching and the answer's transaction; the poll fails,
    the case stays `received` (not `failed`), and a later poll answers it once."""
    from consultant import db
    from consultant.scheduling import poll

    class DroppingMatcher(KeywordMatcher):
        dropped = False

        def match(self, text: str):  # type: ignore[no-untyped-def]
            if not self.dropped:
                self.dropped = True
                _drop_connections(pg_engine)
            return super().match(text)

    monkeypatch.setattr(db, "PING_AFTER_IDLE", 3600.0)  # no ping: the answer meets the dead connection
    services = Services(engine=pg_engine, inbox=MemoryInbox(), transport=MemoryTransport(),
                        matcher=DroppingMatcher(), address=ADDRESS)
    services.inbox.deliver(question("What is 62310?", sender="a@clinic.example"))
    assert poll(services, now=lambda: NOW) is None  # logged and recorded as a failed poll
    with Session(pg_engine) as session:
        case = session.exec(select(Case)).one()
    assert case.status == CaseStatus.received and services.transport.sent == []
    summary = poll(services, now=lambda: NOW + timedelta(minutes=10))  # after the backoff and the claim
    assert summary is not None and summary.statuses == {"answered": 1}
    with Session(pg_engine) as session:
        case = session.exec(select(Case)).one()
    assert case.status == CaseStatus.answered and case.error == ""
    assert [m.recipients for m in services.transport.sent] == [["a@clinic.example"]]


class _Dying(BaseException):
    """Stands for a worker dying mid-answer: escapes every `except Exception`."""


def test_a_case_that_kills_its_worker_three_times_is_quarantined_as_poison(engine) -> None:  # type: ignore[no-untyped-def]
    """D03: after three attempts that never finished, the case is set aside; the others are answered."""

    class PoisonMatcher(KeywordMatcher):
        def match(self, text: str):  # type: ignore[no-untyped-def]
            if "poison" in text:
                raise _Dying()
            return super().match(text)

    services = Services(engine=engine, inbox=MemoryInbox(), transport=MemoryTransport(), matcher=PoisonMatcher(),
                        address=ADDRESS)
    services.inbox.deliver(question("poison 62310", sender="p@clinic.example"))
    services.inbox.deliver(question("What is 62310?", sender="ok@clinic.example"))
    for attempt in range(3):  # each "restart" comes after the dead attempt's claim ran out
        with pytest.raises(_Dying):
            run_once(services, now=lambda a=attempt: NOW + timedelta(minutes=6 * a))
    run_once(services, now=lambda: NOW + timedelta(minutes=30))
    with Session(engine) as session:
        poison, fine = session.exec(select(Case).order_by(Case.id)).all()
    assert (poison.status, poison.reason) == (CaseStatus.quarantined, "poison")
    assert fine.status == CaseStatus.answered and fine.flags == []
    assert [m.recipients for m in services.transport.sent] == [["ok@clinic.example"]]
