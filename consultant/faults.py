"""Crash points for the kill -9 test harness (an environment hook, off unless a test sets it).

`crash_point("after_record")` does nothing unless CONSULTANT_TEST_CRASH names
that point, e.g. `CONSULTANT_TEST_CRASH="after_record:0.05,after_smtp_accept:0.05"`
(point:probability). Then, with that probability, the process kills itself
with SIGKILL: no cleanup, no finally blocks, exactly like `kill -9`.

Points, in pipeline order (checklist ids in brackets):
  after_fetch [CP1], after_record [CP2], during_match [CP3],
  after_outbox_commit [CP4], after_data_sent [CP5] (the message went out
  after DATA, the server's reply not yet read), after_smtp_accept [CP6],
  after_mark_sent [CP7], during_ack [CP8] (between COPY and EXPUNGE on
  servers without MOVE; right after the MOVE otherwise); in_match_helper
  (the match helper process, before each text it matches).

With CONSULTANT_TEST_CRASH_LOG naming a file, the point's name is appended
to it just before the kill, so a harness can count kills per point.
"""

from __future__ import annotations

import os
import random
import signal
from functools import lru_cache

ENV = "CONSULTANT_TEST_CRASH"
LOG_ENV = "CONSULTANT_TEST_CRASH_LOG"


@lru_cache(maxsize=1)
def _armed() -> dict[str, float]:
    spec = os.environ.get(ENV, "").strip()
    points: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, chance = item.partition(":")
        points[name] = float(chance) if chance else 1.0
    return points


def crash_point(name: str) -> None:
    chance = _armed().get(name)
    if chance is not None and random.random() < chance:
        log_path = os.environ.get(LOG_ENV)
        if log_path:
            with open(log_path, "a", encoding="ascii") as log:
                log.write(f"{name}\n")
        os.kill(os.getpid(), signal.SIGKILL)
