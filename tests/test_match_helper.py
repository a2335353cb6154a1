"""The match helper process (consultant/match/helper.py): the same answers as the matcher in
the worker, a chunk ahead; a helper that dies or hangs is replaced; a text that kills it
twice fails alone; and the pipeline answers through it."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from consultant.db import make_engine, migrate
from consultant.inbox import MemoryInbox
from consultant.match import build_matcher
from consultant.match.helper import MatcherUnavailable, MatchFailed, MatchHelper
from consultant.models import Case, CaseStatus
from consultant.outbox import MemoryTransport
from consultant.pipeline import ReviewPolicy, Services, run_once
from consultant.quota import QuotaPolicy
from tests.fakes import question

pytestmark = pytest.mark.integration

TEXTS = [
    "What is CPT 62310?",
    "dx code for HTN with CKD 3a?",
    "Is E11.9 still valid?",
    "58 y/o woman with type 2 diabetes with hyperglycemia and CKD stage 3b. No chest pain. History of breast cancer.",
    "code for a sprained ankle, right, first visit",
    "Which code fits acute bronchitis?",
]


@pytest.fixture(scope="module")
def codes(loaded_codes_file: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Engine, object]]:
    """A copy of the loaded code set with its index cache built beside it, and the matcher."""
    path = tmp_path_factory.mktemp("helper") / "codes.sqlite3"
    shutil.copyfile(loaded_codes_file, path)
    engine = make_engine(f"sqlite:///{path}")
    migrate(engine)
    matcher = build_matcher(engine)  # writes the cache the helper loads
    yield engine, matcher
    engine.dispose()


@pytest.fixture
def helper(codes) -> Iterator[MatchHelper]:  # type: ignore[no-untyped-def]
    made = MatchHelper(codes[0], timeout=10.0)
    yield made
    made.close()


def test_the_helper_answers_as_the_matcher_in_the_worker_does(codes, helper: MatchHelper) -> None:  # type: ignore[no-untyped-def]
    _, matcher = codes
    helper.prefetch(TEXTS[:4])
    helper.prefetch(TEXTS[2:5])  # overlapping, and one text asked for twice
    got = [helper.match(text) for text in TEXTS]  # the last never prefetched
    assert got == [matcher.match(text) for text in TEXTS]
    assert got[0].codes[0].code == "62310" and got[0].codes[0].status == "deleted"
    assert helper.restarts == 0


def test_a_killed_helper_is_replaced_and_the_question_still_answered(codes, helper: MatchHelper) -> None:  # type: ignore[no-untyped-def]
    _, matcher = codes
    first = helper.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    helper.prefetch(TEXTS[:3])  # the pipe may still take these; the answers never come
    assert [helper.match(t) for t in TEXTS[:3]] == [matcher.match(t) for t in TEXTS[:3]]
    assert helper.restarts == 1 and helper.pid not in (None, first)


def test_a_hung_helper_is_killed_after_the_timeout_and_replaced(codes) -> None:  # type: ignore[no-untyped-def]
    _, matcher = codes
    helper = MatchHelper(codes[0], timeout=1.0)
    try:
        stuck = helper.pid
        assert stuck is not None
        os.kill(stuck, signal.SIGSTOP)
        assert helper.match(TEXTS[1]) == matcher.match(TEXTS[1])
        assert helper.restarts == 1
        with pytest.raises(ProcessLookupError):
            os.kill(stuck, 0)  # killed and reaped, not left behind stopped
    finally:
        helper.close()


def test_a_text_that_kills_the_helper_twice_fails_alone(codes, helper: MatchHelper, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    _, matcher = codes
    monkeypatch.setenv("CONSULTANT_TEST_CRASH", "in_match_helper:1.0")  # every helper started from now dies
    helper._restart()  # a helper started with the crash armed
    with pytest.raises(MatchFailed):
        helper.match(TEXTS[0])
    monkeypatch.delenv("CONSULTANT_TEST_CRASH")
    assert helper.match(TEXTS[1]) == matcher.match(TEXTS[1])  # the next text: a new helper, answered


def test_a_helper_that_cannot_start_is_a_service_error(codes, tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    cache = tmp_path / "codes.match-index.pickle"
    cache.write_bytes(b"not a pickle")
    nowhere = tmp_path / "missing"  # a directory: SQLite cannot open it as a database
    nowhere.mkdir()
    monkeypatch.setattr("consultant.match.helper.index_source",
                        lambda engine: (f"sqlite:///{nowhere}", cache, "stale"))
    with pytest.raises(MatcherUnavailable, match="could not start"):
        MatchHelper(codes[0], timeout=5.0)


def test_the_pipeline_answers_through_the_helper_a_chunk_ahead_and_classifies_batches_there(codes, helper: MatchHelper, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    engine, matcher = codes
    classified = []
    real = helper.classify_ahead
    monkeypatch.setattr(helper, "classify_ahead", lambda messages, **kw: classified.append(len(messages)) or real(messages, **kw))
    inbox, transport = MemoryInbox(), MemoryTransport()
    texts = [TEXTS[n % len(TEXTS)] + f" (question {n})" for n in range(27)]  # three chunks and a bit
    for n, text in enumerate(texts):
        inbox.deliver(question(text, sender=f"coder{n}@clinic.example"))
    services = Services(
        engine=engine, inbox=inbox, transport=transport, matcher=helper, address="ask@consultant.test",
        policy=QuotaPolicy(guest_answers=100), review=ReviewPolicy(), batch_size=8,  # batches classified ahead
    )
    run_once(services)  # a pass looks at three batches' worth of the folder (inbox.SCAN_BATCHES)
    run_once(services)
    assert len(transport.sent) == len(texts) and not inbox.messages
    assert sum(classified) == len(texts)  # every batch, each pass's first included, was classified in the helper
    with Session(engine) as session:
        rows = session.exec(select(Case.question, Case.status, Case.codes)).all()
    assert len(rows) == len(texts) and {status for _, status, _ in rows} == {CaseStatus.answered}
    for text, _, stored in rows:
        assert [c["code"] for c in stored] == [s.code for s in matcher.match(text).codes[:20]]
    assert helper.restarts == 0
