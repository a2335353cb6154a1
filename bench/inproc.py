"""The pipeline in one process, without servers: where the CPU per message goes.

    python -m bench.inproc DB [--messages N] [--profile FILE] [--replay] [--postgres]

Runs `pipeline.run_once` over N generated questions with the in-memory
inbox and transport against a copy of DB (a SQLite file holding the code
set), and prints CPU milliseconds per message. `--replay` answers with the
matcher's results computed before the clock starts, so the figure is the
pipeline's own cost (parse, database, render) without matching. A tool for
working on the pipeline; `bench/run.py` is the measurement against real
servers. `--postgres` runs the pipeline on a new, empty PostgreSQL database
(README's test set-up) instead, with the matcher (and the replies' code
descriptions) from DB: the database round trips, not the code lookups.
"""

from __future__ import annotations

import argparse
import cProfile
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench import corpus, servers  # noqa: E402
from consultant.db import WalCheckpointer, make_engine, migrate  # noqa: E402
from consultant.inbox import MemoryInbox  # noqa: E402
from consultant.match import build_matcher  # noqa: E402
from consultant.match.base import MatchResult  # noqa: E402
from consultant.outbox import MemoryTransport  # noqa: E402
from consultant.parse import parse_message  # noqa: E402
from consultant.pipeline import ReviewPolicy, Services, run_once  # noqa: E402
from consultant.quota import QuotaPolicy  # noqa: E402

ADDRESS = "ask@consultant.test"


class ReplayMatcher:
    """Answers each question with the result the real matcher gave before the clock started."""

    def __init__(self, results: dict[str, MatchResult]) -> None:
        self.results = results

    def match(self, text: str) -> MatchResult:
        return self.results[text]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("database", type=Path, help="a SQLite file with the code set loaded")
    parser.add_argument("--messages", type=int, default=400)
    parser.add_argument("--profile", type=Path, help="write a cProfile dump here")
    parser.add_argument("--replay", action="store_true", help="leave the matcher's cost out")
    parser.add_argument("--postgres", action="store_true", help="the pipeline on an empty PostgreSQL database")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="cc-inproc-"))
    try:
        db = work / "db.sqlite3"
        shutil.copy(args.database, db)
        engine = make_engine(f"sqlite:///{db}")
        migrate(engine)
        # the index cache stays beside the original, so only the first run builds it
        matcher = build_matcher(engine, cache_path=args.database.with_suffix(".match-index.pickle"))
        mail = corpus.generate_mail(args.messages, corpus.load_code_sample(engine), to=ADDRESS)
        if args.postgres:
            pg_name = servers.new_name("ccinproc")
            engine = make_engine(servers.pg_create(pg_name))
            migrate(engine)
        if args.replay:
            results = {}
            for m in mail:
                try:
                    text = parse_message(m.raw).text
                except Exception:  # noqa: BLE001 - unparseable mail never reaches the matcher
                    continue
                results[text] = matcher.match(text)
            matcher = ReplayMatcher(results)
        inbox, transport = MemoryInbox(), MemoryTransport()
        for m in mail:
            inbox.deliver(m.raw)
        services = Services(
            engine=engine, inbox=inbox, transport=transport, matcher=matcher, address=ADDRESS,
            policy=QuotaPolicy(guest_answers=1_000_000), review=ReviewPolicy(),
        )
        checkpoints = WalCheckpointer(engine).start()  # as `consultant run` does
        profiler = cProfile.Profile() if args.profile else None
        started_cpu, started = time.process_time(), time.monotonic()
        if profiler:
            profiler.enable()
        while inbox.messages:
            run_once(services)
        run_once(services)
        if profiler:
            profiler.disable()
            profiler.dump_stats(str(args.profile))
        cpu, wall = time.process_time() - started_cpu, time.monotonic() - started
        checkpoints.stop()
        print(f"{len(mail)} messages, {len(transport.sent)} replies: "
              f"{1000 * cpu / len(mail):.2f} ms CPU per message, {len(mail) / wall:.0f} msg/s"
              f"{' (matcher replayed)' if args.replay else ''}")
    finally:
        if args.postgres:
            engine.dispose()
            servers.pg_drop(pg_name)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
