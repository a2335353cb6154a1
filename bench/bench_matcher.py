"""Run the shared eval runner on the public sample and on our development set.

    CONSULTANT_DATABASE_URL=sqlite:///var/consultant.sqlite3 python bench/bench_matcher.py [--cases sample|dev|both]

Prints the runner's report for each set. The matcher runs in batch mode
(`python -m consultant.match.commands suggest --batch`), one process per set.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT.parent / "shared" / "eval" / "run_eval.py"
SETS = {"sample": ROOT.parent / "shared" / "eval" / "sample_cases.jsonl", "dev": ROOT / "bench" / "matcher_dev_cases.jsonl"}


def run(name: str, *extra: str) -> str:
    cmd = [sys.executable, str(RUNNER), "--cases", str(SETS[name]), "--batch",
           f"{sys.executable} -m consultant.match.commands suggest --batch", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False).stdout


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", choices=["sample", "dev", "both"], default="both")
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()
    names = ["sample", "dev"] if args.cases == "both" else [args.cases]
    for name in names:
        print(f"== {name}")
        print(run(name, *(["--show-misses"] if args.show_misses else [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
