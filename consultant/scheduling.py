"""APScheduler (3.x) around run_once: the worker loop and nothing else.

A BlockingScheduler runs the poll job every `poll_seconds` with
`max_instances=1` (never two polls at once in a process) and `coalesce=True`
(missed runs collapse into one). SIGTERM and Ctrl-C stop it cleanly: the
current poll finishes, then the process exits.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from datetime import datetime, timedelta

from apscheduler.schedulers.blocking import BlockingScheduler

from consultant.db import session_scope
from consultant.errors import ServiceError
from consultant.models import PollState
from consultant.pipeline import RunSummary, Services, run_once, utcnow

log = logging.getLogger(__name__)


def poll(services: Services) -> RunSummary | None:
    """One scheduled poll; a mail or database outage is logged and retried next time."""
    try:
        summary = run_once(services)
    except ServiceError as exc:
        log.warning("poll failed: %s", exc)
        record_poll(services, error=str(exc))
        return None
    record_poll(services, error="")
    if summary.fetched or summary.sent or summary.send_failed:
        log.info(
            "poll: fetched %d, acknowledged %d, sent %d, retry %d, failed %d",
            summary.fetched, summary.acknowledged, summary.sent, summary.send_retry, summary.send_failed,
        )
    return summary


def run_forever(services: Services, *, poll_seconds: int, on_started: Callable[[], None] | None = None) -> None:
    scheduler = BlockingScheduler(timezone="UTC")
    scheduler.add_job(
        poll,
        "interval",
        args=[services],
        seconds=poll_seconds,
        next_run_time=datetime.now().astimezone() + timedelta(seconds=0.5),
        max_instances=1,
        coalesce=True,
        id="poll",
    )
    if on_started is not None:
        scheduler.add_job(on_started, "date", run_date=datetime.now().astimezone() + timedelta(seconds=1))

    def stop(signum: int, _frame: object) -> None:
        log.info("signal %s: stopping after the current poll", signum)
        scheduler.shutdown(wait=False)

    signal.signal(signal.SIGTERM, stop)
    try:
        scheduler.start()
    except (KeyboardInterrupt, SystemExit):
        pass


def record_poll(services: Services, *, error: str) -> None:
    """Keep the mailbox's health for the report: last poll, last success, failures in a row."""
    now = utcnow()
    try:
        with session_scope(services.engine) as session:
            state = session.get(PollState, services.address) or PollState(mailbox=services.address)
            state.last_poll_at = now
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
