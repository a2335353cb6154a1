"""A paused worker, a sleeping host, a clock that moves (checklist D07, D08): missed polls
collapse into one catch-up run, which says how long the gap was, and the worker goes on."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from consultant.inbox import ImapConfig
from consultant.scheduling import GapWatch
from tests.test_idle import REPO, _worker_env, append, question


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_only_a_gap_far_past_the_schedule_is_reported(caplog) -> None:  # type: ignore[no-untyped-def]
    clock = FakeClock()
    gaps = GapWatch(60, clock=clock)
    with caplog.at_level(logging.WARNING, logger="consultant.scheduling"):
        for wait in (0, 60, 45, 130):  # on schedule, early (IDLE), late by less than 2 x 60 + 10 s
            clock.now += wait
            gaps.started()
            clock.now += 2  # the run itself
            gaps.ended()
        assert caplog.records == []
        clock.now += 2 * 3600  # the laptop slept for two hours
        assert gaps.started() == pytest.approx(7200)
        gaps.ended()
        clock.now -= 3600  # the clock stepped back an hour
        gaps.started()
    assert [r.getMessage().split(" (")[0] for r in caplog.records] == ["no poll for 7200 s", "no poll for -3600 s"]


@pytest.mark.integration
def test_a_paused_worker_catches_up_in_one_run_and_goes_on(dovecot_server: ImapConfig, smtp_sink,  # type: ignore[no-untyped-def]
                                                           tmp_path: Path) -> None:
    from tests.crash_harness import sqlite_database

    env = _worker_env(dovecot_server, smtp_sink.port, sqlite_database(tmp_path), tmp_path / "index", idle=False)
    env.update({"CONSULTANT_POLL_SECONDS": "3", "CONSULTANT_LOG_LEVEL": "INFO"})
    worker = subprocess.Popen([sys.executable, "-m", "consultant", "run"], cwd=REPO, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    lines: list[tuple[float, str]] = []
    up = threading.Event()

    def read() -> None:
        assert worker.stderr is not None
        for line in worker.stderr:
            lines.append((time.monotonic(), line))
            if line.startswith("Polling every"):
                up.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        assert up.wait(120), "the worker did not start"
        time.sleep(2.0)  # between the first poll (0.5 s after start) and the second (3.5 s)
        worker.send_signal(signal.SIGSTOP)  # paused for 8 polls' worth
        time.sleep(25)
        resumed = time.monotonic()
        worker.send_signal(signal.SIGCONT)
        time.sleep(1.5)
        append(dovecot_server, question("CPT 62310 after the pause?"))
        smtp_sink.wait_for(1, timeout=10)
    finally:
        worker.terminate()
        worker.wait(timeout=20)
    after = [line for at, line in lines if at >= resumed]
    gaps = [float(line.split("no poll for ")[1].split()[0]) for line in after if "no poll for" in line]
    # one catch-up run, which says how long the gap was; had the pause caught a poll mid-run,
    # APScheduler would say instead that it skipped the run due meanwhile (one line either way)
    clashes = [line for line in after if "maximum number of running instances" in line]
    assert (len(gaps), len(clashes)) in ((1, 0), (0, 1)), after
    assert all(20 <= gap <= 40 for gap in gaps)
    assert not any("was missed by" in line for line in after)  # no job (the purge either) is skipped
    assert len(smtp_sink.messages) == 1  # and it goes on answering
