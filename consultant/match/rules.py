"""ICD-10-CM conventions that change which codes are reported together.

- Combination codes: diabetes with chronic kidney disease (E1x.22 + N18.x),
  hypertension with CKD (I12.-), with heart failure (I11.0), with both (I13.-),
  always with the stage and heart-failure codes the notes ask for; with a
  heart disease of I51.4-I51.9 such as cardiomegaly (I11.9, or I13.1- with CKD).
- Excludes1: two codes whose notes exclude each other are never reported
  together; the lower-ranked one is dropped.
- "Use additional code" on a "with" sibling: a code "X without Y" reported
  beside a code that the note of its sibling "X with Y" asks for (BPH
  without LUTS beside nocturia) becomes "X with Y"; the other code stays.
- One category, one code: a second code of the same 3-character category is
  not reported beside the first (E11.9 beside E11.22), except for injuries
  and external causes, where several sites are normal.
"""

from __future__ import annotations

from consultant.match.index import ICD, CodeIndex

HYPERTENSIVE_HEART = frozenset({"I514", "I515", "I516", "I517", "I5189", "I519"})


def combination_codes(index: CodeIndex, keys: list[str], text_tokens: set[str]) -> list[tuple[str, str, str]]:
    """(code key, replaces-prefix, evidence) for combination codes implied by `keys`."""
    out: list[tuple[str, str, str]] = []
    # a hypertensive code that says CKD or heart failure says it for the combinations too
    ckd = [k for k in keys if k.startswith(("N18", "I12", "I13"))]
    diabetes = [k for k in keys if k[:3] in ("E08", "E09", "E10", "E11", "E13")]
    hypertension = any(k.startswith(("I10", "I11", "I12", "I13", "I15", "I16")) for k in keys) or "hypertension" in text_tokens
    heart_failure = [k for k in keys if k.startswith(("I50", "I110", "I130", "I132"))]
    # I11 and I13 also take the heart diseases of I51.4-I51.7, I51.89, I51.9 "due to hypertension"
    heart = [k for k in keys if k in HYPERTENSIVE_HEART]
    stage5 = any(k in ("N185", "N186", "I120", "I132", "I1311") for k in ckd)
    if diabetes and ckd:
        cat = diabetes[0][:3]
        out.append((cat + "22", cat, "diabetes with chronic kidney disease: combination code, stage coded separately"))
    if hypertension and ckd and heart_failure:
        code = "I132" if stage5 else "I130"
        out.append((code, "I1", "hypertension with heart failure and chronic kidney disease (I13.-)"))
    elif hypertension and ckd:
        code = "I120" if stage5 else "I129"
        out.append((code, "I1", "hypertension with chronic kidney disease is presumed linked (I12.-)"))
    elif hypertension and heart_failure:
        out.append(("I110", "I1", "hypertension with heart failure is presumed linked (I11.0)"))
    elif hypertension and ckd and heart:
        code = "I1311" if stage5 else "I1310"
        out.append((code, "I1", "hypertension with heart disease and chronic kidney disease (I13.1-)"))
    elif hypertension and heart:
        out.append(("I119", "I1", "hypertension with heart disease (I51.4-I51.9) is presumed linked (I11.9)"))
    return [(k, p, e) for k, p, e in out if index.row(ICD, k) is not None]


def excluded_together(index: CodeIndex, row_a: int, row_b: int) -> bool:
    """True when an Excludes1 note of either code (or its ancestors) names the other."""
    return _excludes(index, row_a, index.key[row_b]) or _excludes(index, row_b, index.key[row_a])


def _excludes(index: CodeIndex, row: int, other_key: str) -> bool:
    for r in [row, *index.ancestors(row)]:
        for prefix in index.excludes1.get(r, ()):
            if other_key.startswith(prefix) and not index.key[row].startswith(prefix):
                return True
    return False


def same_category_allowed(key: str) -> bool:
    return key[0] in "STVWXYZ"


def with_symptom_sibling(index: CodeIndex, row: int, other_keys: list[str]) -> tuple[int, str] | None:
    """(sibling row, the other code) when `row` is "X without Y" and a reported code is one that
    the note of its sibling "X with Y" asks to add."""
    title = index.official[row]
    if " without " not in title or not other_keys:
        return None
    parent = index.row(ICD, index.parent[row]) if index.parent[row] else None
    if parent is None:
        return None
    wanted = title.replace(" without ", " with ", 1)
    for sib in index.children.get(parent, []):
        if sib == row or index.official[sib] != wanted or not index.billable[sib] or index.status[sib] != "valid":
            continue
        refs = index.use_additional.get(sib, ())
        for key in other_keys:
            if key[:3] != index.key[row][:3] and any(key.startswith(ref) for ref in refs):
                return sib, index.display[index.row(ICD, key)] if index.row(ICD, key) is not None else key
    return None
