"""A benchmark worker: the real service in burst mode, started and stopped by the bench.

    python -m bench.worker            (settings from CONSULTANT_* in the environment)

It builds everything exactly as `consultant run` does (load_settings,
open_engine with migrations and the code check, check_mail, build_services)
and then calls the scheduler's job body, `scheduling.poll`, back to back
instead of every CONSULTANT_POLL_SECONDS: the bench measures what the
pipeline can do, not how long the schedule waits. Replies go out on the
background sender's thread, and the WAL checkpoint thread runs, as in
`consultant run`. A pass that found nothing to do waits 100 ms before the
next one (a second worker that only answers would otherwise spend the CPU
its partner needs on empty claim queries).

Protocol on stdin/stdout: prints `ready` once started, runs after a `go`
line, stops after a `stop` line (or end of input), then prints one JSON line
with its counts, CPU seconds (start-up and total) and peak RSS.
"""

from __future__ import annotations

import json
import logging
import os
import resource
import sys
import threading
import time


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu_seconds() -> dict[str, float]:
    """CPU seconds (since start) of each live thread, by name, from /proc/self/task."""
    tick = os.sysconf("SC_CLK_TCK")
    seconds: dict[str, float] = {}
    for thread in threading.enumerate():
        try:
            with open(f"/proc/self/task/{thread.native_id}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        seconds[thread.name] = round((int(fields[11]) + int(fields[12])) / tick, 2)
    return seconds


def wait_for(word: str) -> None:
    for line in sys.stdin:
        if line.strip() == word:
            return


def main() -> int:
    from bench.procs import peak_rss_mb, process_cpu_seconds
    from consultant.db import WalCheckpointer
    from consultant.pipeline import RunSummary
    from consultant.scheduling import poll, start_background_sender
    from consultant.services import build_services, check_mail, open_engine
    from consultant.settings import load_settings

    settings = load_settings()
    logging.basicConfig(level=settings.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = open_engine(settings)
    check_mail(settings)
    services = build_services(settings, engine)
    checkpoints = WalCheckpointer(engine).start()  # as `consultant run` does
    services.sender = start_background_sender(services)  # as `consultant run` does
    helper = getattr(services.matcher, "pid", None)  # the match helper process, when there is one
    startup_cpu = cpu_seconds() + (process_cpu_seconds(helper) if helper else 0.0)
    print("ready", flush=True)
    wait_for("go")
    stop = threading.Event()

    def watch_stdin() -> None:
        wait_for("stop")
        stop.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    totals = {"passes": 0, "idle_passes": 0, "fetched": 0, "sent": 0, "failed_polls": 0}
    started = time.monotonic()
    busy_passes: list[tuple[float, int, int, float]] = []  # (start, fetched, answered, seconds) of passes that did work
    idle_at: list[float] = []  # when each pass that found nothing to do started (seconds after `go`)
    while not stop.is_set():
        pass_started = time.monotonic()
        summary: RunSummary | None = poll(services)
        totals["passes"] += 1
        if summary is None:
            totals["failed_polls"] += 1
            stop.wait(0.2)
            continue
        totals["fetched"] += summary.fetched
        if not (summary.fetched or summary.statuses):
            totals["idle_passes"] += 1
            idle_at.append(round(pass_started - started, 2))
            stop.wait(0.1)
        else:
            busy_passes.append((round(pass_started - started, 2), summary.fetched, sum(summary.statuses.values()),
                                round(time.monotonic() - pass_started, 3)))
    threads_cpu = thread_cpu_seconds()
    helper_cpu = process_cpu_seconds(helper) if helper else 0.0
    helper_rss = peak_rss_mb(helper) if helper else 0.0
    if helper:
        threads_cpu["match-helper (process)"] = round(helper_cpu, 2)
    services.sender.stop()
    checkpoints.stop()
    totals["sent"] = services.sender.sent
    services.inbox.close()
    if helper:
        services.matcher.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(json.dumps({
        **totals,
        "seconds": round(time.monotonic() - started, 3),
        "startup_cpu_s": round(startup_cpu, 3),
        "cpu_s": round(usage.ru_utime + usage.ru_stime + helper_cpu - startup_cpu, 3),
        "peak_rss_mb": round(peak_rss_mb() + helper_rss, 1),
        "peak_rss_mb_processes": {"worker": peak_rss_mb(), **({"match-helper": helper_rss} if helper else {})},
        "thread_cpu_s": threads_cpu,
        "busy_passes": busy_passes,
        "idle_passes_at": idle_at,
    }), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
