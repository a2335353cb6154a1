"""Several worker processes against one mailbox and one database (checklist C01-C04, C06).

Four `consultant run` processes share a Dovecot mailbox and a PostgreSQL (or
SQLite) database: every question is answered exactly once, and a sender with
quota Q who sends 2Q questions at once gets exactly Q answers. CI runs 200
questions; CONSULTANT_FULL_CAMPAIGNS=1 runs the 1,000 of the figure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import crash_harness, mailhost
from tests.conftest import PG_ADMIN_URL, _pg_admin

pytestmark = pytest.mark.integration


def _need_dovecot() -> None:
    if mailhost.dovecot_binary() is None:
        if os.environ.get("CONSULTANT_REQUIRE_DOVECOT", "").lower() in {"1", "true", "yes"}:
            pytest.fail("Dovecot is required but not installed")
        pytest.skip("Dovecot is not installed")


@pytest.fixture(params=["postgresql", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    _need_dovecot()
    if request.param == "sqlite":
        yield crash_harness.sqlite_database(tmp_path)
        return
    if _pg_admin() is None:
        if os.environ.get("CONSULTANT_REQUIRE_POSTGRES", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"PostgreSQL is required but unreachable at {PG_ADMIN_URL}")
        pytest.skip("PostgreSQL is not reachable")
    url, name = crash_harness.postgres_database(PG_ADMIN_URL, tmp_path / "index")
    try:
        yield url
    finally:
        crash_harness.drop_postgres_database(PG_ADMIN_URL, name)


def test_four_workers_answer_every_question_exactly_once(database_url: str, tmp_path: Path) -> None:
    full = crash_harness.full_mode()
    ci_size = 200 if "postgresql" in database_url else 80  # SQLite serialises writers: a smaller CI run
    campaign = crash_harness.Campaign(
        questions=1000 if full else ci_size, workers=4, crash=False, feed_batch=20, feed_pause=0.2,
        database_url=database_url, index_dir=tmp_path / "index", deadline=1800 if full else 300,
    )
    outcome = crash_harness.run_campaign(campaign, tmp_path / "workers")
    backend = database_url.partition(":")[0]
    print(f"\n4 workers on {backend}: {outcome.questions} questions, {outcome.replies} replies, "
          f"{len(outcome.lost)} lost, {len(outcome.copies)} answered twice, {outcome.starts} worker starts, "
          f"{outcome.seconds:.0f} s")
    assert outcome.problems() == []
    assert outcome.replies == outcome.answered == outcome.questions == campaign.questions
    assert outcome.copies == {} and outcome.starts == 4


def test_a_sender_with_quota_q_sending_2q_at_once_gets_exactly_q_answers(database_url: str, tmp_path: Path) -> None:
    quota = 3
    campaign = crash_harness.Campaign(
        questions=0, workers=4, crash=False, database_url=database_url, index_dir=tmp_path / "index", deadline=300,
        quota_sender="keen@clinic.example", quota_questions=2 * quota, guest_answers=quota,
    )
    outcome = crash_harness.run_campaign(campaign, tmp_path / "quota")
    backend = database_url.partition(":")[0]
    print(f"\nquota on {backend}: Q={quota}, {2 * quota} questions at once to 4 workers: "
          f"{outcome.quota_answers} answered, {outcome.quota_notices} over-quota notice(s)")
    assert outcome.problems() == []
    assert outcome.quota_answers == quota
    assert outcome.quota_notices == 1  # one notice for the window, never one per question
    assert outcome.replies == quota + 1
