"""Write bench/matcher_dev_cases.jsonl, the matcher's own development set.

Hand-written lay, ICD-9-era and vignette cases come from bench/hand_cases.tsv
and bench/hand_vignettes.jsonl; explicit-code and changed-code cases are
drawn (fixed seed) from the loaded `code` table and written in the varied
forms people use (dotted, undotted, lower case, "code" or not). Every
ICD-10-CM code is checked to be billable in FY2026, except a changed case's
deleted code.

    CONSULTANT_DATABASE_URL=sqlite:///var/consultant.sqlite3 python bench/make_dev_cases.py
"""

from __future__ import annotations

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

FORMS = [
    "What is {d}?", "{u} code lookup", "is {l} billable?", "ICD-10-CM {d} meaning", "code {u} - description please",
    "{l}", "title for {d} please", "icd10 {u}?",
]


def main() -> int:
    engine = make_engine(os.environ.get("CONSULTANT_DATABASE_URL", "sqlite:///var/consultant.sqlite3"))
    with engine.connect() as conn:
        rows = conn.execute(select(Code.system, Code.code, Code.display, Code.billable, Code.status, Code.change,
                                   Code.replaced_by)).all()
    cm = {r.code: r for r in rows if r.system == "ICD-10-CM"}
    rng = random.Random(2026)
    cases: list[dict] = []
    problems: list[str] = []

    def billable(display: str) -> bool:
        r = cm.get(display.replace(".", ""))
        return bool(r and r.billable and r.status == "valid")

    for n, line in enumerate((HERE / "hand_cases.tsv").read_text().splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        cat, text, code = line.split("\t")
        if not billable(code):
            problems.append(f"hand_cases.tsv:{n}: {code} is not a billable FY2026 code")
        cases.append({"id": f"dev-{cat}-{n:03d}", "category": cat, "text": text, "expected": [code], "acceptable": [],
                      "must_not": []})
    for n, line in enumerate((HERE / "hand_vignettes.jsonl").read_text().splitlines(), 1):
        v = json.loads(line)
        for code in v["expected"] + v["must_not"] + v.get("acceptable", []):
            if not billable(code):
                problems.append(f"hand_vignettes.jsonl:{n}: {code} is not a billable FY2026 code")
        cases.append({"id": f"dev-vignette-{n:03d}", "category": "vignette", "text": v["text"], "expected": v["expected"],
                      "acceptable": v.get("acceptable", []), "must_not": v["must_not"]})

    leaves = sorted(k for k, r in cm.items() if r.billable and r.status == "valid")
    for n, key in enumerate(rng.sample(leaves, 60), 1):
        d = cm[key].display
        form = FORMS[n % len(FORMS)]
        text = form.format(d=d, u=key, l=key.lower() if n % 2 else d.lower())
        cases.append({"id": f"dev-explicit-{n:03d}", "category": "explicit", "text": text, "expected": [d],
                      "acceptable": [], "must_not": []})
    new = sorted(k for k, r in cm.items() if r.change == "new" and r.billable)
    for n, key in enumerate(rng.sample(new, min(15, len(new))), 1):
        d = cm[key].display
        cases.append({"id": f"dev-changed-new-{n:03d}", "category": "changed", "text": f"is {d} a valid code?",
                      "expected": [d], "acceptable": [], "must_not": [], "status": "new_in_FY2026",
                      "note": "status=new_in_FY2026"})
    deleted = sorted(k for k, r in cm.items() if r.status == "deleted")
    for n, key in enumerate(deleted, 1):
        r = cm[key]
        repl = [cm[k].display for k in r.replaced_by if k in cm]
        form = ["can we still bill {d}?", "{u} still valid?", "{l} for the claim"][n % 3]
        cases.append({"id": f"dev-changed-del-{n:03d}", "category": "changed",
                      "text": form.format(d=r.display, u=key, l=key.lower()), "expected": [r.display],
                      "acceptable": repl, "must_not": [], "status": "deleted_in_FY2026",
                      "note": "status=deleted_in_FY2026"})
    out = HERE / "matcher_dev_cases.jsonl"
    out.write_text("".join(json.dumps(c) + "\n" for c in cases))
    print(f"{len(cases)} cases -> {out}", file=sys.stderr)
    for p in problems:
        print("PROBLEM", p, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
