"""APScheduler (3.x) around run_once: the worker loop and nothing else.

A BlockingScheduler runs the poll job every `poll_seconds` with
`max_instances=1` (never two polls at once in a process), `coalesce=True`
and no misfire limit (runs missed while the worker was paused collapse into
one catch-up run, however late; `GapWatch` logs the gap). A run that finds a backlog keeps polling
at once until the backlog is gone (`drain`). Replies are sent by a
`BackgroundSender` thread while the next questions are matched. With IMAP IDLE (`idle.py`,
CONSULTANT_IMAP_IDLE) new mail wakes the poll job at once (`Waker`): a
question is answered within a second instead of half a poll interval on
average, and the interval becomes the fallback. On SQLite a `WalCheckpointer`
thread keeps the write-ahead log short, so commits do not stop to do it.
SIGTERM and Ctrl-C stop it cleanly: the current poll finishes, then the
process exits.

With staff addresses set, a cron job queues the daily digest at
`digest_at` (HH:MM, UTC); the next poll's send step delivers it.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from apscheduler.job import Job
from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy.exc import SQLAlchemyError

from consultant.db import WalCheckpointer, session_scope
from consultant.errors import MailboxError, ServiceError
from consultant.idle import IdleWatcher
from consultant.inbox import ImapConfig
from consultant.models import PollState
from consultant.outbox import BackgroundSender
from consultant.pipeline import RunSummary, Services, run_once, utcnow

log = logging.getLogger(__name__)


POLL_BACKOFF_BASE = timedelta(seconds=30)
POLL_BACKOFF_MAX = timedelta(minutes=15)
MAX_PASSES = 100  # one scheduled run never holds the worker for ever
SERVER_BACKOFF_MAX = timedelta(hours=1)  # a server's suggested wait is honoured up to this


def poll(
    services: Services,
    *,
    now: Callable[[], datetime] = utcnow,
    backoff_base: timedelta = POLL_BACKOFF_BASE,
    backoff_max: timedelta = POLL_BACKOFF_MAX,
) -> RunSummary | None:
    """One scheduled poll; a mail or database outage is logged, recorded and retried.

    After consecutive failures (a wrong password, a server that is down) the
    polls back off exponentially: the n-th failure in a row waits
    base * 2**(n-1), at most `backoff_max`, before the next try, so a bad
    login never becomes a tight retry loop. A server that names the wait it
    wants (`MailboxError.retry_after`, at most SERVER_BACKOFF_MAX) gets at
    least that. Skipped polls change nothing.
    """
    if poll_backoff_until(services, base=backoff_base, cap=backoff_max) > now():
        return None
    try:
        summary = run_once(services, now=now)
    except ServiceError as exc:
        log.warning("poll failed: %s", exc)
        asked = exc.retry_after if isinstance(exc, MailboxError) else None
        failed_at = now()
        record_poll(services, error=str(exc), now=failed_at,
                    not_before=failed_at + min(asked, SERVER_BACKOFF_MAX) if asked else None)
        return None
    except SQLAlchemyError as exc:
        # Only the class name: a driver message can quote the statement's parameters.
        log.warning("poll failed: database error (%s)", type(exc).__name__)
        record_poll(services, error=f"database error ({type(exc).__name__})", now=now())
        return None
    if summary.polled:  # a worker that did not hold the mailbox lease says nothing about its health
        record_poll(services, error="", now=now())
    if summary.fetched or summary.sent or summary.send_failed:
        log.info(
            "poll: fetched %d, acknowledged %d, sent %d, retry %d, failed %d",
            summary.fetched, summary.acknowledged, summary.sent, summary.send_retry, summary.send_failed,
        )
    return summary


def drain(
    services: Services, *, stop: threading.Event | None = None, max_passes: int = MAX_PASSES,
    waker: Waker | None = None, gaps: GapWatch | None = None,
) -> RunSummary | None:
    """The scheduled job: poll, and poll again at once while the last pass brought a full
    batch or answered cases, so a backlog goes at the pipeline's pace, not at one batch
    (CONSULTANT_IMAP_BATCH) per CONSULTANT_POLL_SECONDS. `stop` ends it between passes;
    mail announced by IDLE while it ran (`waker`) gets one more pass before it returns;
    `gaps` says when this run comes far later than the schedule allows."""
    summary = None
    if gaps is not None:
        gaps.started()
    if waker is not None:
        waker.enter()
    try:
        passes = 0
        while passes < max_passes:
            summary = poll(services)
            passes += 1
            if summary is None or (stop is not None and stop.is_set()):
                return summary
            if summary.fetched < services.batch_size and not summary.statuses:
                if waker is None or not waker.again():
                    return summary
        return summary
    finally:
        if waker is not None:
            waker.leave()
        if gaps is not None:
            gaps.ended()


class GapWatch:
    """Says when a poll starts far later than the schedule allows (checklist D07, D08).

    The poll job runs with `coalesce=True` and `max_instances=1`: after the worker was
    paused (SIGSTOP, a sleeping host, a long stall) or the wall clock stepped forward,
    the runs it missed collapse into one catch-up run, never a burst. APScheduler says
    nothing about that case, so this logs it, once per gap, with its length: the time
    from the end of the last run to the start of this one, against twice the interval
    plus SLACK (a backward step of the clock is reported too)."""

    SLACK = 10.0

    def __init__(self, every: float, *, clock: Callable[[], float] = time.time) -> None:
        self.every = every
        self.clock = clock
        self._last_end: float | None = None

    def started(self) -> float:
        """The gap before this run, in seconds (0 for the first run)."""
        now = self.clock()
        gap = 0.0 if self._last_end is None else now - self._last_end
        if gap > 2 * self.every + self.SLACK or gap < -self.SLACK:
            log.warning("no poll for %.0f s (every %.0f s expected): the worker was paused, the host slept "
                        "or the clock moved; the missed polls are caught up in this one run", gap, self.every)
        return gap

    def ended(self) -> None:
        self._last_end = self.clock()


class Waker:
    """Moves the poll job to now when IDLE announces mail, without ever asking for a second
    poll while one runs (max_instances=1 would drop it): mail that arrives during a poll is
    remembered, and the running poll makes one more pass for it."""

    DELAY = timedelta(milliseconds=50)  # lets a poll that just ended leave the scheduler first

    def __init__(self, scheduler: BaseScheduler, job_id: str = "poll") -> None:
        self.scheduler = scheduler
        self.job_id = job_id
        self._lock = threading.Lock()
        self._busy = False
        self._pending = False

    def wake(self) -> None:
        with self._lock:
            if self._busy:
                self._pending = True
                return
        self._poll_now()

    def enter(self) -> None:
        with self._lock:
            self._busy, self._pending = True, False

    def again(self) -> bool:
        """True (once) when mail was announced since the last pass began."""
        with self._lock:
            pending, self._pending = self._pending, False
            return pending

    def leave(self) -> None:
        with self._lock:
            self._busy = False
            pending, self._pending = self._pending, False
        if pending:  # announced between the last check and now
            self._poll_now()

    def _poll_now(self) -> None:
        if not self.scheduler.running:
            return  # shutting down: mail that comes now waits for the next start
        try:
            self.scheduler.modify_job(self.job_id, next_run_time=datetime.now(UTC) + self.DELAY)
        except JobLookupError:
            pass  # the scheduler shut down between the check and the move


def poll_backoff_until(services: Services, *, base: timedelta, cap: timedelta) -> datetime:
    """When the next poll may run: the last attempt plus the backoff for the failures in a row,
    or the time the server asked us to wait until, whichever is later."""
    try:
        with session_scope(services.engine) as session:
            state = session.get(PollState, services.address)
    except SQLAlchemyError:
        return datetime.min.replace(tzinfo=UTC)  # no database: let run_once find out
    if state is None or state.consecutive_failures == 0 or state.last_poll_at is None:
        return datetime.min.replace(tzinfo=UTC)
    ours = _aware(state.last_poll_at) + min(base * 2 ** min(state.consecutive_failures - 1, 30), cap)
    return max(ours, _aware(state.not_before)) if state.not_before is not None else ours


def _aware(at: datetime) -> datetime:
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def digest_trigger(at: str) -> CronTrigger:
    """Every day at `at` (HH:MM), UTC."""
    hour, _, minute = at.partition(":")
    return CronTrigger(hour=int(hour), minute=int(minute), timezone="UTC")


def daily_digest(services: Services, *, recipients: tuple[str, ...], admin_url: str) -> int:
    """The digest job; a failure is logged and the next day's run tries again."""
    from consultant.digest import send_daily_digest

    try:
        return send_daily_digest(
            services.engine, recipients=recipients, address=services.address, admin_url=admin_url,
            policy=services.policy, now=utcnow(),
        )
    except Exception:  # noqa: BLE001 - the digest must never stop the worker
        log.exception("daily digest failed")
        return 0


def add_digest_job(
    scheduler: BaseScheduler, services: Services, *, digest_to: tuple[str, ...], digest_at: str, admin_url: str
) -> Job | None:
    """Schedule the daily digest; nothing when no staff address is set or the time is "off"."""
    if not digest_to or digest_at == "off":
        return None
    return scheduler.add_job(
        daily_digest,
        digest_trigger(digest_at),
        args=[services],
        kwargs={"recipients": digest_to, "admin_url": admin_url},
        max_instances=1,
        coalesce=True,
        misfire_grace_time=3600,
        id="digest",
    )


def purge(services: Services, *, days: int) -> int:
    """The retention job: purge question text older than `days` (see retention.py)."""
    from consultant.retention import purge_expired

    try:
        purged = purge_expired(services.engine, now=utcnow(), days=days)
    except Exception:  # noqa: BLE001 - the purge must never stop the worker
        log.exception("retention purge failed")
        return 0
    if purged:
        log.info("retention: purged %d cases older than %d days", purged, days)
    return purged


def run_forever(
    services: Services,
    *,
    poll_seconds: int,
    on_started: Callable[[], None] | None = None,
    digest_to: tuple[str, ...] = (),
    digest_at: str = "off",
    admin_url: str = "",
    retention_days: int = 30,
    idle: ImapConfig | None = None,
) -> None:
    """The worker: polls (woken by IMAP IDLE on `idle`'s folder when given), digest, purge."""
    scheduler = BlockingScheduler(timezone="UTC")
    stopping = threading.Event()
    waker = Waker(scheduler) if idle is not None else None
    scheduler.add_job(
        drain,
        "interval",
        args=[services],
        kwargs={"stop": stopping, "waker": waker, "gaps": GapWatch(poll_seconds)},
        seconds=poll_seconds,
        next_run_time=datetime.now().astimezone() + timedelta(seconds=0.5),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,  # however late (a paused worker): one catch-up run
        id="poll",
    )
    if on_started is not None:
        scheduler.add_job(on_started, "date", run_date=datetime.now().astimezone() + timedelta(seconds=1))
    add_digest_job(scheduler, services, digest_to=digest_to, digest_at=digest_at, admin_url=admin_url)
    scheduler.add_job(
        purge,
        "interval",
        args=[services],
        kwargs={"days": retention_days},
        hours=1,
        next_run_time=datetime.now().astimezone() + timedelta(seconds=5),
        max_instances=1,
        coalesce=True,
        misfire_grace_time=None,  # however late (a paused worker): one catch-up run
        id="purge",
    )

    stop = Stopper(scheduler, stopping)
    signal.signal(signal.SIGTERM, stop)
    checkpoints = WalCheckpointer(services.engine).start()
    services.sender = start_background_sender(services)
    if idle is not None and waker is not None:
        stop.watcher = IdleWatcher(idle, waker.wake)
        stop.watcher.start()
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        if stop.watcher is not None:
            stop.watcher.stop()
        services.sender.stop()
        checkpoints.stop()


class Stopper:
    """The SIGTERM handler: stop after the current poll, once. A second signal is common (a
    terminal's Ctrl-C and `timeout` signal the whole process group as well as the process)
    and must not shut the scheduler down twice, which raises."""

    def __init__(self, scheduler: BaseScheduler, stopping: threading.Event) -> None:
        self.scheduler = scheduler
        self.stopping = stopping
        self.watcher: IdleWatcher | None = None

    def __call__(self, signum: int, _frame: object) -> None:
        if self.stopping.is_set():
            return
        log.info("signal %s: stopping after the current poll", signum)
        self.stopping.set()
        if self.watcher is not None:
            self.watcher.stop()
        self.scheduler.shutdown(wait=False)


# How long a thread that wants the interpreter waits before the running one must let go
# (Python's default is 5 ms). The sender's thread blocks about ten times per reply (SMTP
# round trips, SQLite statements) while the answering thread computes; at 5 ms it waited
# up to that long after each, fell behind and sent the tail of a backlog alone. At 1 ms
# the bench's backlog of 2,000 went 7-15% faster in three paired runs (docs/BENCHMARKS.md).
SWITCH_INTERVAL = 0.001


def start_background_sender(services: Services) -> BackgroundSender:
    """Send replies on threads of their own (run_once then only wakes them): the services'
    transport, and `send_connections` - 1 more like it where the transport can make them."""
    sys.setswitchinterval(SWITCH_INTERVAL)
    transports = [services.transport]
    another = getattr(services.transport, "another", None)
    if another is not None:
        transports += [another() for _ in range(services.send_connections - 1)]
    return BackgroundSender(
        services.engine, transports, sender=services.address, holder=services.worker_id,
        max_attempts=services.send_attempts,
    ).start()


def record_poll(services: Services, *, error: str, now: datetime | None = None,
                not_before: datetime | None = None) -> None:
    """Keep the mailbox's health for the report: last poll, last success, failures in a row
    (and, after a throttling answer, when the server wants the next poll at the earliest)."""
    now = now or utcnow()
    try:
        with session_scope(services.engine) as session:
            state = session.get(PollState, services.address) or PollState(mailbox=services.address)
            state.last_poll_at = now
            state.not_before = not_before
            if error:
                state.consecutive_failures += 1
                state.last_error = error[:300]
            else:
                state.consecutive_failures = 0
                state.last_ok_at = now
                state.last_error = ""
            session.add(state)
    except Exception:  # noqa: BLE001 - health bookkeeping must not stop the worker
        log.warning("could not record the poll state")
