"""Matcher (issue 7, part 3): `consultant suggest --batch` over the sample cases and generated questions.

The real command runs as a child process on a database holding the full code
set (its index cache current, as on a worker that has started before). All
input is written at once, so the child never waits for a line; each answer
line is stamped as it arrives, and a case's time is the gap since the
previous answer. The first line is a warm-up question: the time to its
answer is the start-up (imports, migrations check, index load, one match).
Peak memory is the child's VmHWM, CPU its rusage.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.procs import base_env, peak_rss_mb, percentile

WARM_UP = {"id": "warm-up", "text": "What is E11.9?"}


def read_sample_cases(path: Path) -> list[dict[str, str]]:
    cases = []
    for line in path.read_text().splitlines():
        if line.strip():
            item = json.loads(line)
            cases.append({"id": str(item["id"]), "text": item["text"]})
    return cases


def run_batch(database_url: str, sets: dict[str, list[dict[str, str]]], *, work: Path) -> dict:
    """One `consultant suggest --batch` over every set in order; figures per set."""
    env = base_env({"CONSULTANT_DATABASE_URL": database_url, "CONSULTANT_LOG_LEVEL": "WARNING"})
    lines = [WARM_UP] + [item for items in sets.values() for item in items]
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "consultant", "suggest", "--batch"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=(work / "suggest.log").open("a"), text=True,
                             env=env, cwd=work)

    def feed() -> None:
        assert child.stdin is not None
        for item in lines:
            child.stdin.write(json.dumps(item) + "\n")
        child.stdin.flush()  # stdin stays open: the child must live until its peak RSS is read

    threading.Thread(target=feed, daemon=True).start()
    assert child.stdout is not None
    stamps: list[float] = []
    errors = 0
    no_match = 0
    for line in child.stdout:
        stamps.append(time.monotonic())
        answer = json.loads(line)
        errors += answer.get("status") == "error"
        no_match += answer.get("status") == "no_match"
        if len(stamps) == len(lines):
            break
    peak = peak_rss_mb(child.pid)
    assert child.stdin is not None
    child.stdin.close()
    _, status, usage = os.wait4(child.pid, 0)
    child.returncode = os.waitstatus_to_exitcode(status)
    if len(stamps) != len(lines):
        raise RuntimeError(f"suggest --batch answered {len(stamps)} of {len(lines)} lines (exit {child.returncode})")
    figures: dict = {
        "startup_s": round(stamps[0] - started, 3),
        "peak_rss_mb": peak,
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "errors": errors,
        "no_match": no_match,
    }
    position = 1
    for name, items in sets.items():
        gaps = [(stamps[i] - stamps[i - 1]) * 1000 for i in range(position, position + len(items))]
        position += len(items)
        figures[name] = {
            "cases": len(items),
            "p50_ms": round(percentile(gaps, 50), 2),
            "p95_ms": round(percentile(gaps, 95), 2),
            "p99_ms": round(percentile(gaps, 99), 2),
            "max_ms": round(max(gaps, default=0), 2),
            "mean_ms": round(sum(gaps) / max(len(gaps), 1), 2),
        }
    return figures


def slowest(database_url: str, items: list[dict[str, str]], *, count: int = 5) -> list[dict]:
    """The slowest questions, timed in-process (what to hand the matcher's owners)."""
    from consultant.db import make_engine
    from consultant.match import build_matcher

    engine = make_engine(database_url)
    matcher = build_matcher(engine)
    timed = []
    for item in items:
        started = time.perf_counter()
        matcher.match(item["text"])
        timed.append(((time.perf_counter() - started) * 1000, item["text"]))
    engine.dispose()
    timed.sort(reverse=True)
    return [{"ms": round(ms, 1), "text": text[:160]} for ms, text in timed[:count]]
