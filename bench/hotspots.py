"""Read a py-spy profile (`--format raw`, collapsed stacks) and print where the time goes.

    python -m bench.hotspots PROFILE.txt [--top 25] [--under FUNCTION]

Inclusive share per function (a function counted once per stack, however
deep it recurses) and self share (the frame on top), as a percentage of all
samples; `--under` keeps only stacks passing through FUNCTION, to look inside
one stage of the pipeline.
"""

from __future__ import annotations

import argparse
import re
from collections import Counter
from pathlib import Path

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME = re.compile(r"^(?P<func>[^ ]+) \((?P<file>[^:]+)(?::\d+)?\)$")


def frame_name(frame: str) -> str:
    """`answer_case (consultant/pipeline.py:171)` -> `pipeline.py:answer_case`."""
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    return f"{Path(match['file']).name}:{match['func']}"


def read_stacks(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text().splitlines():
        match = _LINE.match(line)
        if match:
            frames = [frame_name(f) for f in match[1].split(";") if not f.startswith("process ")]
            stacks.append((frames, int(match[2])))
    return stacks


def hotspots(stacks: list[tuple[list[str], int]], *, under: str = "") -> tuple[int, Counter, Counter]:
    inclusive: Counter = Counter()
    own: Counter = Counter()
    total = 0
    for frames, count in stacks:
        if under and not any(under in f for f in frames):
            continue
        total += count
        for name in set(frames):
            inclusive[name] += count
        if frames:
            own[frames[-1]] += count
    return total, inclusive, own


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.hotspots")
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--under", default="")
    args = parser.parse_args(argv)
    total, inclusive, own = hotspots(read_stacks(args.profile), under=args.under)
    print(f"{total} samples{' under ' + args.under if args.under else ''}")
    print("inclusive:")
    for name, count in inclusive.most_common(args.top):
        print(f"  {100 * count / max(total, 1):5.1f}%  {name}")
    print("self:")
    for name, count in own.most_common(args.top):
        print(f"  {100 * count / max(total, 1):5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
