"""The kill campaign and the several-workers figure, in full, from the command line.

    python -m bench.crash_campaign --full                 # 500 questions, >= 200 SIGKILLs, >= 20 per point
    python -m bench.crash_campaign                        # the CI size: 60 questions, >= 20 SIGKILLs
    python -m bench.crash_campaign --workers-figure --full  # 4 processes, 1,000 questions, PostgreSQL
    python -m bench.crash_campaign --postgres ...         # the kill campaign on PostgreSQL

Needs Dovecot (`apt-get install dovecot-imapd`) and, for --postgres and the
workers figure, PostgreSQL (CONSULTANT_TEST_POSTGRES_URL, default
postgresql+psycopg://postgres@127.0.0.1:5432/test). Run from the repository
root. Exit status 1 when a question was lost or answered twice unflagged.
CONSULTANT_FULL_CAMPAIGNS=1 is the same as --full.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import tempfile
import time
from pathlib import Path

from tests import crash_harness

PG_URL = os.environ.get("CONSULTANT_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.crash_campaign", description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", default=crash_harness.full_mode(), help="the full figures")
    parser.add_argument("--questions", type=int, help="questions to stream (default 60, full 500)")
    parser.add_argument("--kills", type=int, help="at least this many SIGKILLs (default 20, full 200)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes alive at once (default 2)")
    parser.add_argument("--postgres", action="store_true", help="run on PostgreSQL instead of a SQLite file")
    parser.add_argument("--workers-figure", action="store_true",
                        help="no kills: 4 workers on PostgreSQL answer 1,000 (full) or 200 questions exactly once")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (worker logs) afterwards")
    args = parser.parse_args(argv)
    # SIGTERM (and SIGINT, which a background job ignores) end the run cleanly: workers, Dovecot, database.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)

    workdir = Path(tempfile.mkdtemp(prefix="cc-campaign-"))
    name = ""
    database_url = ""
    if args.postgres or args.workers_figure:
        database_url, name = crash_harness.postgres_database(PG_URL, workdir / "index")
    try:
        if args.workers_figure:
            campaign = crash_harness.Campaign(
                questions=args.questions or (1000 if args.full else 200), workers=4, crash=False, feed_batch=20,
                feed_pause=0.2, database_url=database_url, index_dir=workdir / "index", deadline=3600,
            )
        else:
            campaign = crash_harness.Campaign(
                questions=args.questions or (500 if args.full else 60), min_kills=args.kills or (200 if args.full else 20),
                workers=args.workers, database_url=database_url, index_dir=workdir / "index", deadline=7200,
            )
        started = time.monotonic()
        print(f"campaign in {workdir}: {campaign}", flush=True)
        outcome = crash_harness.run_campaign(campaign, workdir / "run", say=lambda m: print(m, flush=True))
        print(outcome.summary())
        if not args.workers_figure:
            worst = max(outcome.copies.values(), default=1)
            print("kills per point: " + ", ".join(
                f"{crash_harness.CHECKLIST_ID[p]} {p} {outcome.kills_by_point.get(p, 0)}" for p in crash_harness.POINTS))
            print(f"most copies of one reply: {worst}; wall time {time.monotonic() - started:.0f} s")
        problems = outcome.problems()
        if args.full and not args.workers_figure:
            short = [p for p in crash_harness.POINTS if outcome.kills_by_point.get(p, 0) < 20]
            if short:
                problems.append(f"fewer than 20 kills at {short}")
        for problem in problems:
            print(f"PROBLEM: {problem}")
        return 1 if problems else 0
    finally:
        if name:
            crash_harness.drop_postgres_database(PG_URL, name)
        if not args.keep:
            import shutil

            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
