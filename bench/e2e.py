"""End to end (issue 7, parts 1 and 2): the pipeline against the transport baseline.

One round puts N messages into Dovecot's INBOX, starts the worker processes
and waits until they are ready (migrations, code check, matcher index), then
starts the clock with `go`. The round ends when INBOX is empty and every
expected reply has reached the sink (or no reply came for 3 s after INBOX
emptied). Throughput is N over that time; a message's latency runs from the
clock's start to its reply at the sink, so p50/p95 show how long a practice
forwarding N questions at once waits for half of / nearly all its answers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import text

from bench.procs import Child, MachineLoad, attach_profiler, base_env, median, percentile, spawn
from bench.servers import ADDRESS, Dovecot, Sink, append_all, folder_count

QUIET_SECONDS = 3.0
ROUND_TIMEOUT = 900.0


@dataclass(frozen=True)
class Setup:
    name: str  # sqlite-1, postgresql-1, postgresql-2, transport
    module: str  # bench.worker or bench.transport
    workers: int
    database_url: str = ""


def worker_env(server: Dovecot, sink: Sink, database_url: str, *, batch: int = 100) -> dict[str, str]:
    return base_env({
        **server.env(),
        **sink.env(),
        "CONSULTANT_ADDRESS": ADDRESS,
        "CONSULTANT_DATABASE_URL": database_url,
        "CONSULTANT_IMAP_BATCH": str(batch),
        "CONSULTANT_REVIEW_NO_CODES": "false",
        "CONSULTANT_REVIEW_BELOW": "0",
        "CONSULTANT_GUEST_ANSWERS": "1000000",
        "CONSULTANT_LOG_LEVEL": "WARNING",
        "CONSULTANT_DIGEST_TIME": "off",
    })


def run_round(
    setup: Setup,
    server: Dovecot,
    sink: Sink,
    messages: list[bytes],
    *,
    expected_replies: int,
    log_dir: Path,
    profile: Path | None = None,
) -> dict:
    """One measured round of `setup` over `messages`; returns its figures."""
    sink.take()
    append_all(server, messages)
    env = worker_env(server, sink, setup.database_url)
    children: list[Child] = []
    for n in range(setup.workers):
        children.append(spawn(f"{setup.name}-{n}", setup.module, env, log_dir=log_dir))
    profiler = None
    try:
        for child in children:
            child.expect("ready", timeout=300)
        if profile is not None:
            profiler = attach_profiler(children[0].popen.pid, profile)
            time.sleep(1.0)  # py-spy attaches before the clock starts
        watcher = server.client()
        load = MachineLoad().start()
        started = time.monotonic()
        for child in children:
            child.say("go")
        emptied_at = _wait_until_done(watcher, sink, children, started=started, expected=expected_replies)
        results = [child.finish() for child in children]
        watcher.logout()
    finally:
        for child in children:
            child.kill()
        if profiler is not None:
            profiler.wait(timeout=60)
    machine = load.stop()
    arrivals = [stamp for stamp, _ in sink.take()]
    finished = max([emptied_at, *arrivals])
    elapsed = finished - started
    latencies = [stamp - started for stamp in arrivals]
    figures = {
        "setup": setup.name,
        "workers": setup.workers,
        "messages": len(messages),
        "replies": len(arrivals),
        "expected_replies": expected_replies if setup.module == "bench.worker" else len(messages),
        "seconds": round(elapsed, 3),
        "msgs_per_s": round(len(messages) / elapsed, 1),
        "latency_p50_s": round(percentile(latencies, 50), 3),
        "latency_p95_s": round(percentile(latencies, 95), 3),
        "worker_cpu_s": round(sum(r.get("cpu_s", 0) for r in results), 2),
        "worker_peak_rss_mb": max((r.get("peak_rss_mb", 0) for r in results), default=0),
        "worker_peak_rss_mb_processes": [r.get("peak_rss_mb_processes", {}) for r in results],
        "worker_thread_cpu_s": [r.get("thread_cpu_s", {}) for r in results],
        "worker_passes": [r.get("passes", 0) for r in results],
        "busy_passes": [r.get("busy_passes", []) for r in results],
        "idle_passes_at": [r.get("idle_passes_at", []) for r in results],
        "machine": machine,
    }
    if setup.database_url:
        figures["outcomes"] = case_outcomes(setup.database_url)
    return figures


def _wait_until_done(watcher, sink: Sink, children: list[Child], *, started: float, expected: int) -> float:  # type: ignore[no-untyped-def]
    """Poll INBOX and the sink until the round is over; returns when INBOX was first seen empty."""
    emptied_at = 0.0
    last_count, last_change = -1, time.monotonic()
    while time.monotonic() - started < ROUND_TIMEOUT:
        time.sleep(0.1)
        dead = [c.name for c in children if c.popen.poll() is not None]
        if dead:
            raise RuntimeError(f"{', '.join(dead)} exited during the round; see its log")
        count = sink.count()
        if count != last_count:
            last_count, last_change = count, time.monotonic()
        if not emptied_at and folder_count(watcher, "INBOX") == 0:
            emptied_at = time.monotonic()
        if emptied_at and (count >= expected or time.monotonic() - last_change > QUIET_SECONDS):
            return emptied_at
    raise RuntimeError(f"round not finished in {ROUND_TIMEOUT:.0f} s ({sink.count()} replies of {expected})")


def case_outcomes(database_url: str) -> dict[str, int]:
    """Counts of cases per status after the round (everything should be closed)."""
    from consultant.db import make_engine

    engine = make_engine(database_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, COUNT(*) FROM \"case\" GROUP BY status")).all()
    finally:
        engine.dispose()
    return {str(status): int(count) for status, count in rows}


def summarise(rounds: list[dict]) -> dict:
    """Medians over the repeated rounds of one setup."""
    keys = ("msgs_per_s", "seconds", "latency_p50_s", "latency_p95_s", "worker_cpu_s", "worker_peak_rss_mb")
    out = {key: round(median([r[key] for r in rounds]), 3) for key in keys}
    out["rounds"] = len(rounds)
    out["msgs_per_s_all"] = [r["msgs_per_s"] for r in rounds]
    out["busy_cores_all"] = [r["machine"]["busy_cores"] for r in rounds]
    out["loadavg_before_all"] = [r["machine"]["loadavg_before"] for r in rounds]
    return out
