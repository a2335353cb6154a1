"""Write docs/PLAIN_EXAMPLES.md: random plain-language descriptions across chapters.

    .venv/bin/python -m consultant.codes.examples > docs/PLAIN_EXAMPLES.md

One billable ICD-10-CM code from each of the 22 chapters, then ICD-10-PCS
codes, drawn with a fixed seed so the page only changes when the data or the
glossary does. Reads the shipped data directly; no database needed.
"""

from __future__ import annotations

import argparse
import random
import sys

COMMAND = ".venv/bin/python -m consultant.codes.examples > docs/PLAIN_EXAMPLES.md"


def pick(seed: int = 2026, total: int = 25) -> list[dict]:
    """`total` rows: one billable code per ICD-10-CM chapter, the rest ICD-10-PCS."""
    from consultant.codes import sources
    from consultant.codes.plain import plain_for_rows

    rng = random.Random(seed)
    cm = sources.read_cm()
    by_chapter: dict[str, list[dict]] = {}
    for row in cm.rows:
        if row["billable"] and row["status"] == "valid":
            by_chapter.setdefault(row["chapter"], []).append(row)
    chosen = [rng.choice(by_chapter[ch]) for ch in sorted(by_chapter, key=lambda c: int(c[2:]))]
    pcs = [r for ds in sources.read_pcs() for r in ds.rows if r["status"] == "valid"]
    chosen += rng.sample(pcs, max(0, total - len(chosen)))
    blocks = {r["code"]: r["official"] for r in cm.rows if r["kind"] == "block"}
    for row in chosen:
        row["plain"] = ""
        row["group"] = blocks.get(row.get("block") or "", "")
        plain_for_rows(row["system"], [row])
    return chosen[:total]


def render(rows: list[dict], seed: int) -> str:
    out = [
        "# Plain-language descriptions: 25 random examples",
        "",
        "Generated, not hand-edited. Regenerate with:",
        "",
        f"    {COMMAND}",
        "",
        f"Seed {seed}: one billable ICD-10-CM code drawn at random from each of the 22 chapters,",
        "then ICD-10-PCS codes. The plain text is built by `consultant/codes/plain.py` from the",
        "official title, the hierarchy and the notes with the lay glossary in",
        "`consultant/codes/glossary.tsv`; codes listed in `plain_overrides.tsv` use their",
        "hand-written text instead.",
        "",
    ]
    for row in rows:
        out += [
            f"## {row['display']} ({row['system']})",
            "",
            f"- Official: {row['official']}",
            f"- Plain: {row['plain']}",
            "",
        ]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="print docs/PLAIN_EXAMPLES.md")
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args(argv)
    sys.stdout.write(render(pick(args.seed), args.seed))
    return 0


if __name__ == "__main__":
    sys.exit(main())
