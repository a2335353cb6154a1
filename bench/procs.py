"""Child processes of the bench (workers, the baseline loop, the service) and the figures kept of them.

A child speaks the small protocol of bench/worker.py: `ready` when started,
`go` and `stop` on stdin, one JSON line of its own counts at the end. Its
stderr goes to a log file beside the results. `MachineLoad` samples
/proc/stat and /proc/loadavg around a measurement, so each figure carries how
busy the machine was (the cores are shared with other people's tests).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def base_env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONSULTANT_") or k in {
        "CONSULTANT_INDEX_DIR", "CONSULTANT_TEST_POSTGRES_URL"}}
    env["PYTHONPATH"] = str(ROOT) + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(extra)
    return env


@dataclass
class Child:
    name: str
    popen: subprocess.Popen
    lines: queue.Queue[str] = field(default_factory=queue.Queue)

    def start_reader(self) -> None:
        def read() -> None:
            assert self.popen.stdout is not None
            for line in self.popen.stdout:
                self.lines.put(line.rstrip("\n"))
            self.lines.put("")

        threading.Thread(target=read, daemon=True).start()

    def expect(self, word: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            except queue.Empty:
                raise RuntimeError(f"{self.name}: no {word!r} within {timeout:.0f} s") from None
            if line.strip() == word:
                return
            if line == "":  # end of output: the child is gone
                raise RuntimeError(f"{self.name}: exited with {self.popen.wait(timeout=10)} before {word!r}")

    def say(self, word: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(word + "\n")
        self.popen.stdin.flush()

    def finish(self, timeout: float = 60) -> dict:
        """Send `stop`, wait for the exit, return the child's JSON line."""
        try:
            self.say("stop")
            assert self.popen.stdin is not None
            self.popen.stdin.close()
        except (BrokenPipeError, OSError):
            pass
        self.popen.wait(timeout=timeout)
        result: dict = {}
        while True:
            try:
                line = self.lines.get(timeout=2)
            except queue.Empty:
                break
            if line.startswith("{"):
                result = json.loads(line)
            if line == "":
                break
        return result


    def kill(self) -> None:
        """End the child if it is still running (after an error in the bench)."""
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)


def spawn(name: str, module: str, env: dict[str, str], *, log_dir: Path) -> Child:
    log_dir.mkdir(parents=True, exist_ok=True)
    stderr = (log_dir / f"{name}.log").open("a")
    popen = subprocess.Popen([sys.executable, "-m", module], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=stderr, text=True, env=env, cwd=log_dir)
    child = Child(name, popen)
    child.start_reader()
    return child


def attach_profiler(pid: int, output: Path) -> subprocess.Popen:
    """py-spy sampling `pid` until it exits; collapsed stacks (one line per stack and count)."""
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    return subprocess.Popen([py_spy, "record", "--format", "raw", "--rate", "200", "--nonblocking", "--subprocesses",
                             "--output", str(output), "--pid", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def peak_rss_mb(pid: int | str = "self") -> float:
    """VmHWM: the process's own peak RSS. (rusage's ru_maxrss is no good for children:
    Linux carries the parent's peak over fork and exec into it.)"""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return 0.0


def child_pids(pid: int) -> list[int]:
    """The direct children of `pid` (the match helper of a `consultant run`)."""
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as fh:
            return [int(p) for p in fh.read().split()]
    except OSError:
        return []


def process_cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of process `pid` so far (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(values: list[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(int(-(-p * len(ordered) // 100)) - 1, 0)
    return ordered[min(rank, len(ordered) - 1)]


def median(values: list[float]) -> float:
    return percentile(values, 50)


@dataclass
class MachineLoad:
    """Busy cores and load average over an interval (whole machine, every user)."""

    busy0: int = 0
    total0: int = 0
    load0: float = 0.0

    @staticmethod
    def _jiffies() -> tuple[int, int]:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
        idle = fields[3] + fields[4]
        return sum(fields) - idle, sum(fields)

    @staticmethod
    def loadavg() -> float:
        with open("/proc/loadavg") as fh:
            return float(fh.read().split()[0])

    def start(self) -> MachineLoad:
        self.busy0, self.total0 = self._jiffies()
        self.load0 = self.loadavg()
        return self

    def stop(self) -> dict[str, float]:
        busy, total = self._jiffies()
        cores = os.cpu_count() or 1
        share = (busy - self.busy0) / max(total - self.total0, 1)
        return {"busy_cores": round(share * cores, 2), "loadavg_before": self.load0, "loadavg_after": self.loadavg()}
