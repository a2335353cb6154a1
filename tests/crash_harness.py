"""Crash-safety harness: real worker processes, killed with SIGKILL at named points, restarted in a loop.

`run_campaign(Campaign(...), workdir)` starts a Dovecot and an aiosmtpd sink,
streams questions into the mailbox, and keeps `workers` worker processes
(`python -m consultant run`, configured through the environment, polling
every second) alive: each process life is armed with one crash point from
`POINTS` (CONSULTANT_TEST_CRASH="point:chance"), and dies by SIGKILL when it
fires. The supervisor restarts it with the least-used point next, so every
point gets its share. A process that outlives `max_life` seconds without
firing (no work reached its point) is killed from outside.

When every question has a reply and enough kills have happened, crashing
stops, a clean worker drains what is left, and the sink is checked:

* lost: questions with no reply at all;
* duplicates: questions with more than one copy; each must be the same
  Message-ID and its case flagged `resent_after_crash` (the one window
  where the server may have the message before our commit: CP5, CP6);
* distinct replies: questions with two different Message-IDs (never allowed).

The same setup runs with `workers=4` on PostgreSQL for the several-workers
figure (no crash points), and `tests/test_crash_safety.py` and
`bench/crash_campaign.py` drive it in CI and full mode.
"""

from __future__ import annotations

import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path
from typing import BinaryIO

from sqlalchemy import func, text
from sqlmodel import Session, select

from consultant.db import make_engine, migrate
from consultant.models import Account, Case, CaseStatus, Outbox, OutboxStatus
from tests import mailhost
from tests.fakes import question

REPO = Path(__file__).resolve().parents[1]
ADDRESS = "consultant@localhost"
POINTS = (
    "after_fetch",
    "after_record",
    "during_match",
    "after_outbox_commit",
    "after_data_sent",
    "after_smtp_accept",
    "after_mark_sent",
    "during_ack",
)
CHECKLIST_ID = dict(zip(POINTS, ("CP1", "CP2", "CP3", "CP4", "CP5", "CP6", "CP7", "CP8")))

# The worker exactly as deployed: `python -m consultant run`, configured by the environment.
WORKER_COMMAND = [sys.executable, "-m", "consultant", "run"]


# -- the code database, loaded once and copied --------------------------------------------
def _code_data_key() -> str:
    digest = hashlib.sha256()
    for folder, pattern in ((REPO / "codes_db", "*"), (REPO / "consultant" / "codes", "*.py"),
                            (REPO / "consultant" / "migrations" / "versions", "*.py")):
        for path in sorted(folder.glob(pattern)):
            if path.is_file():
                digest.update(path.name.encode())
                digest.update(str(path.stat().st_size).encode())
                if path.suffix == ".py":
                    digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _cache_dir() -> Path:
    return Path(os.environ.get("CONSULTANT_TEST_CODES_DIR", Path(tempfile.gettempdir()) / "caseconsultant-codes"))


_WARMED: set[str] = set()


def _index_path(database_url: str, index_dir: Path) -> Path | None:
    """Where a worker with CONSULTANT_INDEX_DIR=index_dir looks for the index cache of this database."""
    from consultant.match.index import default_cache_path

    saved = os.environ.get("CONSULTANT_INDEX_DIR")
    os.environ["CONSULTANT_INDEX_DIR"] = str(index_dir)
    try:
        engine = make_engine(database_url)  # no connection is made
        return default_cache_path(engine)
    finally:
        if saved is None:
            os.environ.pop("CONSULTANT_INDEX_DIR", None)
        else:
            os.environ["CONSULTANT_INDEX_DIR"] = saved


def _warm_index(database_url: str, env: dict[str, str] | None = None) -> None:
    """Build (or validate) the matcher's index cache in a child process, so workers start fast."""
    if database_url in _WARMED:
        return
    _WARMED.add(database_url)
    subprocess.run(
        [sys.executable, "-c",
         ("import sys; from consultant.db import make_engine; from consultant.match import build_matcher; "
          "build_matcher(make_engine(sys.argv[1]))"), database_url],
        check=True, cwd=REPO, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
    )


def codes_template() -> Path:
    """A migrated SQLite file with every shipped code set and its index cache (built once, ~1 min)."""
    cache = _cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"codes-{_code_data_key()}.sqlite3"
    lock = cache / "build.lock"
    with open(lock, "w") as fh:
        import fcntl

        fcntl.flock(fh, fcntl.LOCK_EX)  # two test processes never build it at once
        if not path.exists():
            from consultant.codes.loader import ensure_codes_loaded

            for stale in cache.glob("codes-*"):  # built from older code data: 150+ MB each
                stale.unlink(missing_ok=True)

            partial = path.with_suffix(".partial")
            partial.unlink(missing_ok=True)
            engine = make_engine(f"sqlite:///{partial}")
            migrate(engine)
            ensure_codes_loaded(engine)
            engine.dispose()
            partial.rename(path)
        _warm_index(f"sqlite:///{path}")
    return path


def sqlite_database(workdir: Path) -> str:
    """A private copy of the code database (and its index cache) for one campaign."""
    template = codes_template()
    target = workdir / "consultant.sqlite3"
    shutil.copyfile(template, target)
    index = template.with_suffix(".match-index.pickle")
    if index.exists():
        shutil.copyfile(index, target.with_suffix(".match-index.pickle"))
    return f"sqlite:///{target}"


def postgres_database(admin_url: str, index_dir: Path) -> tuple[str, str]:
    """A fresh PostgreSQL database cloned from a template holding the code sets; (url, name).

    Its matcher index cache is put in `index_dir` (the workers' CONSULTANT_INDEX_DIR).
    """
    admin = make_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    base = admin_url.rpartition("/")[0]
    template = f"cc_codes_{_code_data_key()}"
    with admin.connect() as conn:
        exists = conn.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": template}).first()
    if exists is None:
        from consultant.codes.loader import ensure_codes_loaded

        building = f"{template}_building"
        with admin.connect() as conn:
            for (stale,) in conn.execute(text("SELECT datname FROM pg_database WHERE datname LIKE 'cc_codes_%'")):
                conn.execute(text(f'DROP DATABASE IF EXISTS "{stale}" WITH (FORCE)'))
            conn.execute(text(f'DROP DATABASE IF EXISTS "{building}" WITH (FORCE)'))
            conn.execute(text(f'CREATE DATABASE "{building}"'))
        engine = make_engine(f"{base}/{building}")
        migrate(engine)
        ensure_codes_loaded(engine)
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'ALTER DATABASE "{building}" RENAME TO "{template}"'))
    cache = _cache_dir()
    _warm_index(f"{base}/{template}", {"CONSULTANT_INDEX_DIR": str(cache)})
    name = f"cc_run_{os.getpid()}_{random.randrange(10**6)}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}" TEMPLATE "{template}"'))
    admin.dispose()
    url = f"{base}/{name}"
    built, wanted = _index_path(f"{base}/{template}", cache), _index_path(url, index_dir)
    if built is not None and wanted is not None and built.exists():
        wanted.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(built, wanted)  # same rows, same fingerprint: the copy is current
    return url, name


def drop_postgres_database(admin_url: str, name: str) -> None:
    admin = make_engine(admin_url).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


# -- the campaign --------------------------------------------------------------------------
@dataclass
class Campaign:
    questions: int = 60
    min_kills: int = 20
    workers: int = 2
    crash: bool = True
    crash_chance: float = 0.35
    max_life: float = 25.0  # seconds a process may live without its point firing
    without_move: bool = True  # COPY + EXPUNGE, so CP8 falls between the two
    database_url: str = ""  # empty: a private SQLite copy
    index_dir: Path | None = None  # the workers' CONSULTANT_INDEX_DIR (PostgreSQL); default workdir/index
    deadline: float = 1500.0
    feed_batch: int = 5
    feed_pause: float = 0.3
    quota_sender: str = ""  # with quota_questions: one sender asking this many at once
    quota_questions: int = 0
    guest_answers: int = 1
    seed: int = 20261122
    report_every: float = 30.0


@dataclass
class Outcome:
    questions: int = 0
    replies: int = 0
    answered: int = 0
    lost: list[str] = field(default_factory=list)
    poisoned: list[str] = field(default_factory=list)  # quarantined as poison (D03): accounted for, no reply
    copies: dict[str, int] = field(default_factory=dict)  # question -> copies, only those with more than one
    unflagged_duplicates: list[str] = field(default_factory=list)
    distinct_replies: list[str] = field(default_factory=list)
    flagged: int = 0
    kills: int = 0
    kills_by_point: dict[str, int] = field(default_factory=dict)
    external_kills: int = 0
    starts: int = 0
    unexpected_exits: list[str] = field(default_factory=list)
    left_in_inbox: int = 0
    left_received: int = 0
    left_pending: int = 0
    quota_answers: int = 0
    quota_notices: int = 0
    seconds: float = 0.0

    def problems(self) -> list[str]:
        found = []
        if self.lost:
            found.append(f"{len(self.lost)} questions lost: {self.lost[:5]}")
        if self.unflagged_duplicates:
            found.append(f"{len(self.unflagged_duplicates)} duplicates not flagged: {self.unflagged_duplicates[:5]}")
        if self.distinct_replies:
            found.append(f"{len(self.distinct_replies)} questions with two different replies")
        if self.left_in_inbox or self.left_received or self.left_pending:
            found.append(f"left over: inbox {self.left_in_inbox}, received {self.left_received}, "
                         f"pending {self.left_pending}")
        if self.unexpected_exits:
            found.append(f"workers exited unexpectedly: {self.unexpected_exits[:3]}")
        return found

    def summary(self) -> str:
        points = ", ".join(f"{CHECKLIST_ID[p]} {self.kills_by_point.get(p, 0)}" for p in POINTS)
        extra = sum(n - 1 for n in self.copies.values())
        return (
            f"{self.questions} questions, {self.kills} SIGKILLs at named points ({points}) "
            f"+ {self.external_kills} from outside, {self.starts} worker starts, {self.seconds:.0f} s: "
            f"{len(self.lost)} lost, {len(self.poisoned)} quarantined as poison, "
            f"{self.replies} replies for {self.answered} questions, "
            f"{extra} extra copies ({len(self.copies)} questions, all same Message-ID and flagged: "
            f"{not self.unflagged_duplicates and not self.distinct_replies}), "
            f"{self.flagged} cases flagged resent_after_crash"
        )


def question_id(n: int) -> str:
    return f"<crash-{n}@clinic.example>"


def _question(n: int) -> bytes:
    return question(f"What is CPT code 62310? (question {n})", sender=f"asker{n}@clinic.example",
                    subject=f"Coding question {n}", message_id=question_id(n))


class _Run:
    """The moving parts of one campaign."""

    def __init__(self, campaign: Campaign, workdir: Path, dovecot: mailhost.Dovecot, sink: mailhost.Sink,
                 database_url: str, say) -> None:  # type: ignore[no-untyped-def]
        self.c = campaign
        self.workdir = workdir
        self.dovecot = dovecot
        self.sink = sink
        self.database_url = database_url
        self.say = say
        self.crash_log = workdir / "crashes.log"
        self.crash_log.touch()
        self.crashing = threading.Event()
        if campaign.crash:
            self.crashing.set()
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.rng = random.Random(campaign.seed)
        self.fed = 0
        self.outcome = Outcome()
        self.procs: dict[int, subprocess.Popen[bytes]] = {}

    def env(self, point: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTANT_")}
        env.update({
            "CONSULTANT_ADDRESS": ADDRESS,
            "CONSULTANT_IMAP_HOST": "127.0.0.1",
            "CONSULTANT_IMAP_PORT": str(self.dovecot.port),
            "CONSULTANT_IMAP_USER": mailhost.USER,
            "CONSULTANT_IMAP_PASSWORD": mailhost.PASSWORD,
            "CONSULTANT_IMAP_SSL": "false",
            "CONSULTANT_IMAP_TIMEOUT": "10",
            "CONSULTANT_IMAP_BATCH": "20",
            "CONSULTANT_SMTP_HOST": "127.0.0.1",
            "CONSULTANT_SMTP_PORT": str(self.sink.port),
            "CONSULTANT_SMTP_SECURITY": "none",
            "CONSULTANT_SMTP_TIMEOUT": "10",
            "CONSULTANT_DATABASE_URL": self.database_url,
            "CONSULTANT_POLL_SECONDS": "1",
            "CONSULTANT_REVIEW_BELOW": "0",
            "CONSULTANT_REVIEW_NO_CODES": "false",
            "CONSULTANT_GUEST_ANSWERS": str(self.c.guest_answers),
            "CONSULTANT_LOG_LEVEL": "WARNING",
            "CONSULTANT_DIGEST_TIME": "off",
            "CONSULTANT_INDEX_DIR": str(self.c.index_dir or self.workdir / "index"),
            "CONSULTANT_TEST_CRASH_LOG": str(self.crash_log),
            "PYTHONPATH": str(REPO),
        })
        if point:
            env["CONSULTANT_TEST_CRASH"] = f"{point}:{self.c.crash_chance}"
        return env

    def next_point(self) -> str:
        if not self.crashing.is_set():
            return ""
        with self.lock:
            counts = Counter(self.crash_log.read_text().split())
            least = min(counts.get(p, 0) for p in POINTS)
            return self.rng.choice([p for p in POINTS if counts.get(p, 0) == least])

    # -- one supervisor per worker slot ------------------------------------------------------
    def supervise(self, slot: int) -> None:
        with open(self.workdir / f"worker-{slot}.log", "ab") as log:
            self._supervise(slot, log)

    def _supervise(self, slot: int, log: BinaryIO) -> None:
        log_path = self.workdir / f"worker-{slot}.log"
        while not self.stop.is_set():
            point = self.next_point()
            log.flush()
            offset = log_path.stat().st_size
            proc = subprocess.Popen(WORKER_COMMAND, env=self.env(point), cwd=self.workdir,
                                    stdout=log, stderr=subprocess.STDOUT)
            with self.lock:
                self.procs[slot] = proc
                self.outcome.starts += 1
            ready_at = 0.0  # life is counted from "Polling every", not through start-up (index builds)
            while proc.poll() is None and not self.stop.is_set():
                if not ready_at and _says(log_path, offset, b"Polling every"):
                    ready_at = time.monotonic()
                idle_too_long = ready_at and time.monotonic() - ready_at > self.c.max_life
                if point and (not self.crashing.is_set() or idle_too_long):
                    proc.send_signal(signal.SIGKILL)  # from outside: idle too long, or crashing is over
                    proc.wait()
                    with self.lock:
                        self.outcome.external_kills += 1
                    break
                time.sleep(0.05)
            if self.stop.is_set() and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
                break
            if proc.returncode not in (0, -signal.SIGKILL):
                with self.lock:
                    self.outcome.unexpected_exits.append(f"slot {slot}: exit {proc.returncode}")
                time.sleep(1)

    # -- the question stream --------------------------------------------------------------
    def feed(self, upto: int) -> None:
        while self.fed < upto and not self.stop.is_set():
            batch = [_question(n) for n in range(self.fed, min(self.fed + self.c.feed_batch, upto))]
            self.dovecot.append(*batch)
            self.fed += len(batch)
            time.sleep(self.c.feed_pause)

    def answered(self) -> set[str]:
        return {_header(m.raw, "In-Reply-To") for m in list(self.sink.messages)}

    def poisoned(self) -> set[str]:
        engine = make_engine(self.database_url)
        try:
            with Session(engine) as session:
                return set(session.exec(select(Case.message_id).where(Case.reason == "poison")).all())
        finally:
            engine.dispose()

    def kills(self) -> int:
        return len(self.crash_log.read_text().split())

    def settled(self) -> bool:
        """Nothing left anywhere: inbox empty, no case waiting, no reply pending."""
        if self.dovecot.uids():
            return False
        engine = make_engine(self.database_url)
        try:
            with Session(engine) as session:
                received = session.exec(select(func.count()).select_from(Case)
                                        .where(Case.status == CaseStatus.received)).one()
                pending = session.exec(select(func.count()).select_from(Outbox)
                                       .where(Outbox.status == OutboxStatus.pending)).one()
        finally:
            engine.dispose()
        return received == 0 and pending == 0


def _says(path: Path, offset: int, text: bytes) -> bool:
    with open(path, "rb") as fh:
        fh.seek(offset)
        return text in fh.read()


def _header(raw: bytes, name: str) -> str:
    return "".join(str(message_from_bytes(raw)[name] or "").split())


def run_campaign(campaign: Campaign, workdir: Path, *, say=print) -> Outcome:  # type: ignore[no-untyped-def]
    """Run one campaign; the caller checks `outcome.problems()` and prints `outcome.summary()`."""
    workdir.mkdir(parents=True, exist_ok=True)
    database_url = campaign.database_url or sqlite_database(workdir)
    started = time.monotonic()
    with mailhost.dovecot(without_move=campaign.without_move) as dovecot, mailhost.Sink() as sink:
        run = _Run(campaign, workdir, dovecot, sink, database_url, say)
        if campaign.quota_questions:
            dovecot.append(*[
                question(f"What is CPT code 62310? (quota {n})", sender=campaign.quota_sender,
                         subject=f"Quota {n}", message_id=f"<quota-{n}@clinic.example>")
                for n in range(campaign.quota_questions)
            ])
        supervisors = [threading.Thread(target=run.supervise, args=(slot,), daemon=True)
                       for slot in range(campaign.workers)]
        for thread in supervisors:
            thread.start()
        target = campaign.questions
        feeder = threading.Thread(target=run.feed, args=(target,), daemon=True)
        feeder.start()
        last_report = time.monotonic()
        try:
            while time.monotonic() - started < campaign.deadline:
                time.sleep(0.5)
                done = run.answered() | run.poisoned()
                kills = run.kills()
                if time.monotonic() - last_report > campaign.report_every:
                    say(f"  ... {len(done & {question_id(n) for n in range(run.fed)})}/{run.fed} answered, "
                        f"{kills} kills, {run.outcome.starts} starts")
                    last_report = time.monotonic()
                if feeder.is_alive():
                    continue
                all_answered = all(question_id(n) in done for n in range(run.fed))
                if run.crashing.is_set() and all_answered and kills < campaign.min_kills:
                    target += 10  # enough answered, too few kills: keep the stream going
                    feeder = threading.Thread(target=run.feed, args=(target,), daemon=True)
                    feeder.start()
                    continue
                if run.crashing.is_set() and all_answered:
                    run.crashing.clear()  # the supervisors restart clean workers from here on
                    continue
                if not run.crashing.is_set() and all_answered and run.settled():
                    break
        finally:
            run.stop.set()
            for thread in supervisors:
                thread.join(timeout=60)
        outcome = run.outcome
        outcome.seconds = time.monotonic() - started
        _check(outcome, run, sink, database_url, campaign)
        outcome.left_in_inbox = len(dovecot.uids())
    return outcome


def _check(outcome: Outcome, run: _Run, sink: mailhost.Sink, database_url: str, campaign: Campaign) -> None:
    crash_points = run.crash_log.read_text().split()
    outcome.kills = len(crash_points)
    outcome.kills_by_point = dict(Counter(crash_points))
    outcome.questions = run.fed
    outcome.replies = len(sink.messages)
    by_question: dict[str, list[str]] = {}
    for message in list(sink.messages):
        by_question.setdefault(_header(message.raw, "In-Reply-To"), []).append(_header(message.raw, "Message-ID"))
    wanted = [question_id(n) for n in range(run.fed)]
    engine = make_engine(database_url)
    try:
        with Session(engine) as session:
            cases = session.exec(select(Case)).all()
            flagged = {c.message_id for c in cases if "resent_after_crash" in (c.flags or [])}
            outcome.flagged = len(flagged)
            outcome.left_received = sum(1 for c in cases if c.status == CaseStatus.received)
            poisoned = {c.message_id for c in cases if c.reason == "poison"}
            outcome.left_pending = len(session.exec(select(Outbox.id).where(Outbox.status == OutboxStatus.pending)).all())
            if campaign.quota_sender:
                account = session.exec(select(Account).where(Account.email == campaign.quota_sender)).first()
                outcome.quota_answers = account.answered if account else 0
    finally:
        engine.dispose()
    outcome.poisoned = sorted(q for q in wanted if q in poisoned and q not in by_question)
    outcome.lost = [q for q in wanted if q not in by_question and q not in poisoned]
    outcome.answered = sum(1 for q in wanted if q in by_question)
    for qid, ids in by_question.items():
        if len(ids) > 1:
            outcome.copies[qid] = len(ids)
            if len(set(ids)) > 1:
                outcome.distinct_replies.append(qid)
            if qid not in flagged:
                outcome.unflagged_duplicates.append(qid)
    if campaign.quota_sender:
        quota = [m for m in sink.messages if m.rcpt_tos == [campaign.quota_sender]]
        outcome.quota_notices = sum(1 for m in quota if b"used all" in _plain(m.raw))


def _plain(raw: bytes) -> bytes:
    message = message_from_bytes(raw)
    for part in message.walk():
        if part.get_content_type() == "text/plain":
            return part.get_payload(decode=True) or b""
    return b""


def full_mode() -> bool:
    return os.environ.get("CONSULTANT_FULL_CAMPAIGNS", "").lower() in {"1", "true", "yes"}


__all__ = [
    "CHECKLIST_ID",
    "POINTS",
    "Campaign",
    "Outcome",
    "codes_template",
    "drop_postgres_database",
    "full_mode",
    "postgres_database",
    "question_id",
    "run_campaign",
    "sqlite_database",
]
