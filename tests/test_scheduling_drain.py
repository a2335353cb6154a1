"""The scheduled job drains a backlog in one run instead of one batch per poll interval."""

from __future__ import annotations

import threading

from consultant.inbox import MemoryInbox
from consultant.outbox import MemoryTransport
from consultant.pipeline import Services
from consultant.scheduling import drain
from tests.fakes import KeywordMatcher, question


def _services(engine, count: int, *, batch: int = 10) -> Services:  # type: ignore[no-untyped-def]
    inbox = MemoryInbox()
    for n in range(count):
        inbox.deliver(question(f"What is CPT 62310? #{n}", sender=f"d{n}@clinic.example"))
    return Services(engine=engine, inbox=inbox, transport=MemoryTransport(), matcher=KeywordMatcher(),
                    address="consultant@caseconsultant.example", batch_size=batch)


def test_a_backlog_larger_than_a_batch_is_answered_in_one_run(engine) -> None:
    services = _services(engine, 25)
    drain(services)
    assert not services.inbox.messages
    assert len(services.transport.sent) == 25


def test_a_run_stops_between_passes_when_asked(engine) -> None:
    services = _services(engine, 25, batch=20)
    services.inbox.deliver(question("What is CPT 62311?", sender="late@clinic.example"))
    stop = threading.Event()
    stop.set()
    drain(services, stop=stop)
    # A pass answers up to ANSWERS_PER_PASS, fetching the next batch whenever fewer than half a
    # batch wait: it took everything here, and no second pass began after the stop.
    assert len(services.inbox.processed) == 26 and len(services.transport.sent) == 26


def test_passes_are_bounded(engine) -> None:
    from consultant.pipeline import ANSWERS_PER_PASS

    services = _services(engine, ANSWERS_PER_PASS * 2 + 5, batch=100)
    drain(services, max_passes=2)
    assert len(services.transport.sent) == ANSWERS_PER_PASS * 2  # two passes' worth, no more
    assert len(services.inbox.messages) == 5  # every answered one acknowledged


def test_a_quiet_mailbox_costs_one_pass(engine) -> None:
    services = _services(engine, 0)
    assert drain(services) is not None
    assert services.transport.sent == []
