"""Latency at light load (issue 7, part 5): the real service, questions arriving one at a time.

`python -m consultant run` (APScheduler, CONSULTANT_POLL_SECONDS) runs on
Dovecot and the sink. Questions are appended one by one at random moments
(exponential gaps, mean `mean_gap` s); a question's latency runs from the
end of its APPEND (it is in the mailbox) to its reply at the sink, matched by
In-Reply-To. With polling only (`idle=False`), a question waits for the next
poll, so the bound is the poll interval plus the time to answer it; with IMAP
IDLE the arrival itself wakes the poll. The service is stopped with SIGTERM,
as an operator would, after its peak RSS (VmHWM, its own and its match helper's) is read.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from email.parser import BytesHeaderParser
from pathlib import Path

from bench.corpus import Generated
from bench.e2e import worker_env
from bench.procs import child_pids, peak_rss_mb, percentile
from bench.servers import Dovecot, Sink

START_TIMEOUT = 300.0


def run_light_load(
    server: Dovecot, sink: Sink, questions: list[Generated], *, database_url: str, poll_seconds: int,
    mean_gap: float, work: Path, idle: bool, seed: int = 3,
) -> dict:
    env = worker_env(server, sink, database_url)
    env["CONSULTANT_POLL_SECONDS"] = str(poll_seconds)
    env["CONSULTANT_IMAP_IDLE"] = "true" if idle else "false"
    env["CONSULTANT_LOG_LEVEL"] = "INFO"
    log_path = work / f"light-load-service-{'idle' if idle else 'poll'}.log"
    service = subprocess.Popen([sys.executable, "-m", "consultant", "run"], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=log_path.open("a"), env=env, cwd=work)
    try:
        _wait_for_log(log_path, "Polling every", service)
        time.sleep(min(poll_seconds, 5) + 1)  # past the first poll (at start-up)
        sink.take()
        rng = random.Random(seed)
        appended: dict[str, float] = {}
        client = server.client()
        for item in questions:
            time.sleep(rng.expovariate(1 / mean_gap))
            client.append("INBOX", item.raw)
            appended[item.message_id] = time.monotonic()
        client.logout()
        deadline = time.monotonic() + poll_seconds * 3 + 30
        replies: dict[str, float] = {}
        while len(replies) < len(appended) and time.monotonic() < deadline:
            time.sleep(0.1)
            for stamp, raw in sink.take():
                headers = BytesHeaderParser().parsebytes(raw)
                replies[str(headers.get("In-Reply-To", "")).strip()] = stamp
    finally:
        # the service and its match helper: the sum of each one's own peak, as in the e2e rounds
        peaks = {"service": peak_rss_mb(service.pid),
                 **{f"child {pid}": peak_rss_mb(pid) for pid in child_pids(service.pid)}}
        service.send_signal(signal.SIGTERM)
        try:
            _wait4(service.pid, timeout=60)
        except TimeoutError:
            service.kill()
            raise
    latencies = [replies[mid] - at for mid, at in appended.items() if mid in replies]
    return {
        "idle": idle,
        "poll_seconds": poll_seconds,
        "questions": len(appended),
        "answered": len(latencies),
        "p50_s": round(percentile(latencies, 50), 3),
        "p95_s": round(percentile(latencies, 95), 3),
        "max_s": round(max(latencies, default=0), 3),
        "target_s": 1.0 if idle else poll_seconds + 1,
        "service_peak_rss_mb": round(sum(peaks.values()), 1),
        "service_peak_rss_mb_processes": peaks,
        "latencies_s": [round(x, 3) for x in latencies],
    }


def _wait_for_log(path: Path, text: str, process: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"consultant run exited with {process.returncode}; see {path}")
        if path.exists() and text in path.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise RuntimeError(f"consultant run did not start within {START_TIMEOUT:.0f} s; see {path}")


def _wait4(pid: int, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        waited, _, _ = os.wait4(pid, os.WNOHANG)
        if waited:
            return
        time.sleep(0.1)
    raise TimeoutError(f"process {pid} still running after {timeout:.0f} s")
