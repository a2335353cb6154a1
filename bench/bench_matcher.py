"""Run the shared eval runner on the public sample and on our development sets.

    CONSULTANT_DATABASE_URL=sqlite:///var/consultant.sqlite3 python bench/bench_matcher.py [--cases NAME ...]

NAME is one of
    sample        ../shared/eval/sample_cases.jsonl (the public sample, 50 cases)
    dev           bench/matcher_dev_cases.jsonl (bench/make_dev_cases.py)
    icd9-common   bench/matcher_icd9_common.jsonl (bench/matcher_make_icd9.py: common ICD-9 codes)
    icd9          bench/matcher_icd9_cases.jsonl (bench/matcher_make_icd9.py: ICD-9 codes drawn at random)
    blind         bench/matcher_blind_cases.jsonl (610 cases written with no sight of the matcher, docs/MATCHER.md)
    all           every set above (the default is sample and dev)

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
SETS = {
    "sample": ROOT.parent / "shared" / "eval" / "sample_cases.jsonl",
    "dev": ROOT / "bench" / "matcher_dev_cases.jsonl",
    "icd9-common": ROOT / "bench" / "matcher_icd9_common.jsonl",
    "icd9": ROOT / "bench" / "matcher_icd9_cases.jsonl",
    "blind": ROOT / "bench" / "matcher_blind_cases.jsonl",
}


def run(name: str, *extra: str) -> str:
    cmd = [sys.executable, str(RUNNER), "--cases", str(SETS[name]), "--batch",
           f"{sys.executable} -m consultant.match.commands suggest --batch", *extra]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False).stdout


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", nargs="+", choices=[*SETS, "all", "both"], default=["sample", "dev"])
    parser.add_argument("--show-misses", action="store_true")
    args = parser.parse_args()
    names: list[str] = []
    for name in args.cases:
        names += list(SETS) if name == "all" else (["sample", "dev"] if name == "both" else [name])
    for name in dict.fromkeys(names):
        print(f"== {name}")
        print(run(name, *(["--show-misses"] if args.show_misses else [])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
