"""IMAP faults against a real Dovecot (and pymap), with the fault proxy in between (checklist I-rows).

Set CONSULTANT_FULL_CAMPAIGNS=1 for the full figures (100 cut runs, 20 stalls).
"""

from __future__ import annotations

import dataclasses
import os
import random
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email import message_from_bytes
from pathlib import Path

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from imapclient import IMAPClient
from sqlmodel import Session, select

from consultant.errors import MailboxError
from consultant.inbox import ImapConfig, ImapInbox, server_backoff
from consultant.models import Case, CaseStatus, PollState
from consultant.outbox import SmtpConfig, SmtpTransport
from consultant.pipeline import Services, run_once
from consultant.report import build_report
from consultant.scheduling import poll
from tests import mailhost
from tests.fakes import KeywordMatcher, question
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.integration

FULL = os.environ.get("CONSULTANT_FULL_CAMPAIGNS", "").lower() in {"1", "true", "yes"}
ADDRESS = "consultant@localhost"


def _need_dovecot() -> None:
    if mailhost.dovecot_binary() is None:
        if os.environ.get("CONSULTANT_REQUIRE_DOVECOT", "").lower() in {"1", "true", "yes"}:
            pytest.fail("Dovecot is required but not installed")
        pytest.skip("Dovecot is not installed")


@pytest.fixture
def dovecot() -> Iterator[mailhost.Dovecot]:
    _need_dovecot()
    with mailhost.dovecot() as server:
        yield server


@pytest.fixture
def proxy(dovecot: mailhost.Dovecot) -> Iterator[FaultProxy]:
    with FaultProxy(dovecot.port) as fault_proxy:
        yield fault_proxy


@pytest.fixture
def sink() -> Iterator[mailhost.Sink]:
    with mailhost.Sink() as smtp:
        yield smtp


# -- helpers over any IMAP server (ImapConfig) ------------------------------------------
def admin(config: ImapConfig) -> IMAPClient:
    client = IMAPClient(config.host, port=config.port, ssl=False, timeout=10)
    client.login(config.user, config.password)
    return client


def append(config: ImapConfig, *messages: bytes, folder: str = "INBOX") -> None:
    with admin(config) as client:
        if not client.folder_exists(folder):
            client.create_folder(folder)
        for raw in messages:
            client.append(folder, raw)


def uids(config: ImapConfig, folder: str = "INBOX") -> list[int]:
    with admin(config) as client:
        if not client.folder_exists(folder):
            return []
        client.select_folder(folder, readonly=True)
        return sorted(client.search(["UNDELETED"]))


def seen_flags(config: ImapConfig, folder: str) -> int:
    with admin(config) as client:
        client.select_folder(folder, readonly=True)
        found = client.search(["ALL"])
        return sum(b"\\Seen" in flags for flags in client.get_flags(found).values()) if found else 0


def make_services(engine, imap: ImapConfig, smtp_port: int, **kwargs) -> Services:  # type: ignore[no-untyped-def]
    return Services(
        engine=engine,
        inbox=ImapInbox(imap),
        transport=SmtpTransport(SmtpConfig(host="127.0.0.1", port=smtp_port, security="none", timeout=10)),
        matcher=KeywordMatcher(),
        address=ADDRESS,
        **kwargs,
    )


def reply_targets(sink: mailhost.Sink) -> list[str]:
    return ["".join(str(message_from_bytes(m.raw)["In-Reply-To"]).split()) for m in sink.messages]


def padded_question(n: int, size: int = 15_000) -> bytes:
    filler = "\n".join(f"line {i}: the patient notes continue here for padding." for i in range(size // 52))
    return question(f"What is CPT code 62310? #{n}\n\n{filler}", sender=f"cut{n}@clinic.example",
                    message_id=f"<cut-{n}@clinic.example>")


def drain(services: Services, config: ImapConfig, tries: int = 4) -> None:
    """Poll until the inbox is empty (a poll may still fail on a fault that is being healed)."""
    for _ in range(tries):
        try:
            run_once(services)
        except MailboxError as exc:
            print("drain:", exc)
            continue
        if not uids(config, config.folder):
            return


# -- I01: connection cut mid-fetch ----------------------------------------------------------
def test_cut_mid_fetch_loses_nothing_and_answers_once(engine, dovecot, proxy, sink) -> None:  # type: ignore[no-untyped-def]
    runs = 100 if FULL else 12
    rng = random.Random(20261122)
    config = dovecot.config(port=proxy.port, timeout=5)
    services = make_services(engine, config, sink.port)
    failures = 0
    for run in range(runs):
        dovecot.append(padded_question(2 * run), padded_question(2 * run + 1))
        proxy.cut_after(rng.randrange(0, 36_000))  # greeting .. LOGIN .. FETCH (~30 KB) .. MOVE
        try:
            run_once(services)
        except MailboxError:
            failures += 1
        proxy.heal()
        drain(services, config)
    services.inbox.close()

    expected = {f"<cut-{n}@clinic.example>" for n in range(2 * runs)}
    targets = reply_targets(sink)
    print(f"I01: {runs} runs, {proxy.triggered} cuts fired, {failures} polls failed, "
          f"{len(expected - set(targets))} lost, {len(targets) - len(set(targets))} duplicate replies")
    assert proxy.triggered >= runs // 2
    assert sorted(targets) == sorted(expected)  # 0 lost, 0 answered twice
    assert uids(config) == []
    assert seen_flags(dovecot.config(), "Processed") == 0  # BODY.PEEK: \Seen never set by us


# -- I02: stalled server ------------------------------------------------------------------------
def test_stalled_server_times_out_and_the_next_poll_succeeds(engine, dovecot, proxy, sink) -> None:  # type: ignore[no-untyped-def]
    config = dovecot.config(port=proxy.port, timeout=1.0)
    services = make_services(engine, config, sink.port)
    dovecot.append(question("warm-up 62310", sender="warm@clinic.example"))
    run_once(services)  # a clean session, to size the stall points
    services.inbox.close()
    session_bytes = max(link.down_bytes for link in proxy._links)
    stalls = 20 if FULL else 4
    rng = random.Random(7)
    waits = []
    for n in range(stalls):
        dovecot.append(question(f"stalled {n} 62310", sender=f"stall{n}@clinic.example"))
        proxy.stall(after=0 if n == 0 else rng.randrange(0, session_bytes))
        started = time.monotonic()
        done = threading.Event()

        def one_poll(finished: threading.Event = done) -> None:
            poll(services, backoff_base=timedelta(0))
            finished.set()

        worker = threading.Thread(target=one_poll)
        worker.start()
        worker.join(timeout=30)
        waits.append(time.monotonic() - started)
        assert done.is_set(), "the poll hung on a stalled server"
        proxy.heal()
        poll(services, backoff_base=timedelta(0))
        drain(services, config)
    services.inbox.close()
    print(f"I02: {stalls} stalls, every poll returned; longest {max(waits):.1f} s with a 1 s timeout")
    assert len(sink.messages) == stalls + 1


def test_scheduler_keeps_polling_through_a_stall(engine, dovecot, proxy, sink) -> None:  # type: ignore[no-untyped-def]
    """The real scheduler (max_instances=1): a stalled poll ends at its timeout, later ones run."""
    config = dovecot.config(port=proxy.port, timeout=1.0)
    services = make_services(engine, config, sink.port)
    dovecot.append(question("62310 during a stall", sender="sched@clinic.example"))
    proxy.stall()
    scheduler = BackgroundScheduler(timezone="UTC")
    scheduler.add_job(poll, "interval", seconds=1, args=[services], kwargs={"backoff_base": timedelta(seconds=0.5)},
                      max_instances=1, coalesce=True, next_run_time=datetime.now(UTC))
    scheduler.start()
    try:
        time.sleep(3.5)
        with Session(engine) as session:
            state = session.get(PollState, ADDRESS)
        assert state is not None and state.consecutive_failures >= 1
        proxy.heal()
        assert sink.wait_for(1, timeout=30)
    finally:
        scheduler.shutdown(wait=True)
        services.inbox.close()
    with Session(engine) as session:
        state = session.get(PollState, ADDRESS)
    assert state is not None and state.consecutive_failures == 0


# -- I03: certificates ------------------------------------------------------------------------
def test_bad_certificates_are_refused_without_a_plaintext_fallback(engine, tmp_path: Path, sink) -> None:  # type: ignore[no-untyped-def]
    _need_dovecot()
    cert = mailhost.make_cert(tmp_path / "certs", name="localhost")
    with mailhost.dovecot(cert=cert) as server, FaultProxy(server.port) as tls_proxy:
        base = server.config(port=tls_proxy.port, use_ssl=True, timeout=5)
        untrusted = ImapInbox(base)  # self-signed: the default context refuses it
        with pytest.raises(MailboxError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusted.fetch_batch(10)
        wrong_name = ImapInbox(dataclasses.replace(base, ssl_context=cert.trusting_context()))  # 127.0.0.1
        with pytest.raises(MailboxError, match="CERTIFICATE_VERIFY_FAILED|match"):
            wrong_name.fetch_batch(10)
        assert tls_proxy.connections == 2  # one TLS attempt each, no second (plaintext) try

        good = dataclasses.replace(base, host="localhost", ssl_context=cert.trusting_context())
        services = make_services(engine, good, sink.port)
        services.inbox.append(question("62310 over TLS", sender="tls@clinic.example"))
        assert run_once(services).sent == 1
        services.inbox.close()


# -- I04: bad login: backoff, unhealthy in the report --------------------------------------------
def test_bad_login_backs_off_and_shows_the_mailbox_unhealthy(engine, dovecot, proxy, sink) -> None:  # type: ignore[no-untyped-def]
    config = dovecot.config(port=proxy.port, password="wrong")
    services = make_services(engine, config, sink.port)
    start = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    base = timedelta(seconds=30)
    attempts_at = []
    for second in range(0, 400, 5):  # a poll every 5 s for 400 s, on a fake clock
        before = proxy.connections
        poll(services, now=lambda s=second: start + timedelta(seconds=s), backoff_base=base)
        if proxy.connections > before:
            attempts_at.append(second)
    print(f"I04: login attempts at {attempts_at} s (polls every 5 s)")
    assert attempts_at == [0, 30, 90, 210]  # waits of 30, 60, 120 s: no tight loop
    with Session(engine) as session:
        state = session.get(PollState, ADDRESS)
        report = build_report(session)
    assert state is not None and state.consecutive_failures == 4
    assert any(name == ADDRESS and health.startswith("failing: IMAP login refused") for name, health in report.mailboxes)

    services.inbox = ImapInbox(dovecot.config(port=proxy.port))  # the password is fixed
    poll(services, now=lambda: start + timedelta(hours=1), backoff_base=base)
    with Session(engine) as session:
        assert session.get(PollState, ADDRESS).consecutive_failures == 0  # type: ignore[union-attr]
        assert ("consultant@localhost", "ok") in build_report(session).mailboxes
    services.inbox.close()


# -- I05: the server asks us to back off ---------------------------------------------------------
THROTTLED = b"NO [UNAVAILABLE] Request is throttled. Suggested Backoff Time: 120000 milliseconds"


def test_a_server_that_asks_for_a_backoff_gets_at_least_that_long(engine, dovecot, proxy, sink) -> None:  # type: ignore[no-untyped-def]
    """Exchange Online's throttling answer (and any [UNAVAILABLE] with a suggested time) is honoured:
    the next poll waits the longer of our own backoff and the server's."""
    append(dovecot.config(), question("What is CPT 62310?", sender="t@clinic.example",
                                      message_id="<throttled@clinic.example>"))
    proxy.garble(b"OK [READ-WRITE] Select completed", THROTTLED)
    services = make_services(engine, dovecot.config(port=proxy.port), sink.port)
    start = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
    attempts_at = []
    for second in range(0, 400, 5):  # a poll every 5 s for 400 s, on a fake clock
        before = proxy.connections
        poll(services, now=lambda s=second: start + timedelta(seconds=s), backoff_base=timedelta(seconds=30))
        if proxy.connections > before:
            attempts_at.append(second)
    print(f"I05: attempts at {attempts_at} s")
    assert attempts_at == [0, 120, 240, 360]  # 120 s each time; ours alone would be 30, 60, 120
    with Session(engine) as session:
        state = session.get(PollState, ADDRESS)
    assert state is not None and "throttled" in state.last_error

    proxy.heal()  # the server lets us in again: the question is answered, nothing was lost
    poll(services, now=lambda: start + timedelta(hours=1))
    services.inbox.close()
    assert reply_targets(sink) == ["<throttled@clinic.example>"]


@pytest.mark.parametrize(("said", "seconds"), [
    ("NO [UNAVAILABLE] Request is throttled. Suggested Backoff Time: 120000 milliseconds", 120.0),
    ("select failed: NO Request is throttled. Suggested Backoff Time: 500 ms", 0.5),
    ("NO [UNAVAILABLE] Suggested backoff time: 90000 Milliseconds.", 90.0),
    ("NO [UNAVAILABLE] Internal error occurred", None),
    ("NO Mailbox does not exist", None),
])
def test_the_suggested_backoff_is_read_from_what_the_server_said(said: str, seconds: float | None) -> None:
    found = server_backoff(said)
    assert (found.total_seconds() if found is not None else None) == seconds


# -- I06: UIDVALIDITY changes ------------------------------------------------------------------
def test_uidvalidity_change_does_not_reanswer(engine, dovecot, sink) -> None:  # type: ignore[no-untyped-def]
    config = dovecot.config(folder="Questions")
    raw = question("62310 before the reset", sender="uv@clinic.example", message_id="<uv-1@clinic.example>")
    append(config, raw, folder="Questions")
    services = make_services(engine, config, sink.port)
    run_once(services)
    with admin(config) as client:  # the mailbox is recreated (restored from a backup, say)
        before = client.folder_status("Questions", ["UIDVALIDITY"])[b"UIDVALIDITY"]
        client.delete_folder("Questions")
        client.create_folder("Questions")
        after = client.folder_status("Questions", ["UIDVALIDITY"])[b"UIDVALIDITY"]
    assert before != after
    append(config, raw, question("62310 after", sender="uv2@clinic.example", message_id="<uv-2@clinic.example>"),
           folder="Questions")
    drain(services, dataclasses.replace(config, folder="Questions"))
    services.inbox.close()
    assert sorted(reply_targets(sink)) == ["<uv-1@clinic.example>", "<uv-2@clinic.example>"]
    with Session(engine) as session:
        cases = session.exec(select(Case).order_by(Case.id)).all()
    assert [(c.uidvalidity == after, c.status, c.reason) for c in cases] == [
        (False, CaseStatus.answered, ""),
        (True, CaseStatus.ignored, "duplicate"),
        (True, CaseStatus.answered, ""),
    ]


# -- I07 and I14: the mailbox changes under a poll -----------------------------------------------
def _hook_search(inbox: ImapInbox, after_search) -> None:  # type: ignore[no-untyped-def]
    client = inbox._connect()
    original = client.search

    def search(*args, **kwargs):  # type: ignore[no-untyped-def]
        found = original(*args, **kwargs)
        after_search(found)
        return found

    client.search = search  # type: ignore[method-assign]


def test_message_expunged_between_search_and_fetch_is_gone(engine, dovecot, sink) -> None:  # type: ignore[no-untyped-def]
    config = dovecot.config()
    append(config, question("62310 gone", sender="gone@clinic.example"),
           question("62310 stays", sender="stays@clinic.example", message_id="<stays@clinic.example>"))
    services = make_services(engine, config, sink.port)

    expunged: list[int] = []

    def expunge_first(found: list[int]) -> None:
        if expunged:  # once: the pass searches again when it fetches the next batch
            return
        expunged.append(min(found))
        with admin(config) as client:
            client.select_folder("INBOX")
            client.delete_messages([min(found)])
            client.expunge()

    _hook_search(services.inbox, expunge_first)  # type: ignore[arg-type]
    summary = run_once(services)
    services.inbox.close()
    assert summary.fetched == 1 and reply_targets(sink) == ["<stays@clinic.example>"]


# -- I09: a FETCH response that cannot be parsed ----------------------------------------------
def test_a_garbled_fetch_response_quarantines_that_message_and_the_rest_are_answered(  # type: ignore[no-untyped-def]
        engine, dovecot, proxy, sink, caplog) -> None:
    config = dovecot.config(port=proxy.port)
    dovecot.append(*(question(f"What is CPT 62310? PHI-CANARY-{n}", sender=f"g{n}@clinic.example",
                              message_id=f"<garbled-{n}@clinic.example>") for n in range(3)))
    middle = dovecot.uids()[1]
    # an unbalanced quote in the server's response for one message (imapclient: ProtocolError)
    proxy.garble(f"(UID {middle} BODY[] ".encode(), f'(UID {middle} BODY[] "'.encode())
    services = make_services(engine, config, sink.port)
    summary = run_once(services)
    services.inbox.close()

    assert proxy.triggered >= 2  # in the batch, then alone
    assert summary.fetched == 3
    assert sorted(reply_targets(sink)) == ["<garbled-0@clinic.example>", "<garbled-2@clinic.example>"]
    with Session(engine) as session:
        by_uid = {c.uid: c for c in session.exec(select(Case)).all()}
    assert (by_uid[middle].status, by_uid[middle].reason) == (CaseStatus.quarantined, "unreadable")
    assert uids(dovecot.config()) == []  # nothing blocks the mailbox any more ...
    assert middle in uids(dovecot.config(), "Processed")  # ... and the message is kept for staff
    assert "PHI-CANARY" not in caplog.text


def test_message_arriving_during_a_poll_is_taken_once(engine, dovecot, sink) -> None:  # type: ignore[no-untyped-def]
    config = dovecot.config()
    append(config, question("62310 first", sender="first@clinic.example"))
    services = make_services(engine, config, sink.port)
    arrived: list[bool] = []

    def deliver_once(_found: list[int]) -> None:
        if not arrived:
            arrived.append(True)
            append(config, question("62310 late", sender="late@clinic.example"))

    _hook_search(services.inbox, deliver_once)  # type: ignore[arg-type]
    first, second = run_once(services), run_once(services)
    services.inbox.close()
    # taken by the same pass (it searches again before claiming more) or by the next, once
    assert first.fetched >= 1 and first.fetched + second.fetched == 2
    assert len(sink.messages) == 2 and uids(config) == []


# -- I08: a server without MOVE (Dovecot with MOVE taken out of its capabilities) ------------------
@pytest.fixture
def no_move_server() -> Iterator[ImapConfig]:
    # pymap (the embedded server) advertises MOVE these days, so Dovecot plays the old server
    _need_dovecot()
    with mailhost.dovecot(without_move=True) as server:
        yield server.config()


def test_without_move_a_failure_between_copy_and_expunge_gives_no_second_reply(engine, no_move_server, sink) -> None:  # type: ignore[no-untyped-def]
    config = no_move_server
    with admin(config) as client:
        assert not client.has_capability("MOVE")
    append(config, question("62310 copy", sender="copy@clinic.example", message_id="<copy@clinic.example>"))
    services = make_services(engine, config, sink.port)
    client = services.inbox._connect()  # type: ignore[attr-defined]
    original = client.add_flags

    def die_after_copy(*_args, **_kwargs):  # type: ignore[no-untyped-def]
        raise OSError("connection lost after COPY")

    client.add_flags = die_after_copy  # type: ignore[method-assign]
    with pytest.raises(MailboxError):
        run_once(services)
    client.add_flags = original  # type: ignore[method-assign]
    assert uids(config) and uids(config, "Processed")  # in both folders now
    drain(services, config)
    services.inbox.close()
    assert reply_targets(sink) == ["<copy@clinic.example>"]
    assert uids(config) == []


# -- I10, I13: bounded batches; a non-ASCII processed folder ---------------------------------------
def test_batches_are_bounded_and_oldest_first(engine, dovecot, sink) -> None:  # type: ignore[no-untyped-def]
    config = dovecot.config(processed_folder="Обработано")
    append(config, *[question(f"62310 #{n}", sender=f"b{n}@clinic.example", message_id=f"<b{n}@clinic.example>")
                     for n in range(25)])
    services = make_services(engine, config, sink.port, batch_size=10)
    fetches: list[int] = []  # new messages per IMAP fetch
    original = services.inbox.fetch_batch

    def counted(limit: int, **kwargs):  # type: ignore[no-untyped-def]
        batch = original(limit, **kwargs)
        fetches.append(sum(not m.known for m in batch))
        return batch

    services.inbox.fetch_batch = counted  # type: ignore[method-assign]
    # one pass takes the backlog a batch at a time (it fetches again when fewer than half a batch wait)
    assert [run_once(services).fetched for _ in range(2)] == [25, 0]
    assert max(fetches) == 10 and sum(fetches) == 25
    services.inbox.close()
    assert reply_targets(sink) == [f"<b{n}@clinic.example>" for n in range(25)]
    assert len(uids(config, "Обработано")) == 25


# -- P04 with I06: no Message-ID, a new UIDVALIDITY ----------------------------------------------
def test_a_message_without_message_id_is_not_answered_again_under_new_uids(engine) -> None:  # type: ignore[no-untyped-def]
    from consultant.inbox import MemoryInbox
    from consultant.outbox import MemoryTransport

    raw = b"From: Pat <pat@clinic.example>\r\nSubject: no id\r\n\r\nWhat is CPT code 62310?\r\n"
    transport = MemoryTransport()
    for uidvalidity in (1, 2):  # the mailbox is restored: same bytes, new UIDs
        services = Services(engine=engine, inbox=MemoryInbox(uidvalidity=uidvalidity), transport=transport,
                            matcher=KeywordMatcher(), address=ADDRESS, worker_id="w")
        services.inbox.deliver(raw)
        run_once(services)
    assert len(transport.sent) == 1
    with Session(engine) as session:
        assert [(c.status, c.reason) for c in session.exec(select(Case).order_by(Case.id)).all()] == [
            (CaseStatus.answered, ""), (CaseStatus.ignored, "duplicate")]
