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
- COPD with an acute lower respiratory infection is J44.0, beside the infection's code.
- A condition of a pregnant patient is coded "complicating pregnancy" first (O99.28- beside
  E03.9, O10.01- beside I10, O23.- beside a UTI), for the trimester the weeks give.
- One category, one code: a second code of the same 3-character category is
  not reported beside the first (E11.9 beside E11.22), except for injuries
  and external causes, where several sites are normal.
"""

from __future__ import annotations

from collections.abc import Sequence

from consultant.match.index import ICD, CodeIndex

HYPERTENSIVE_HEART = frozenset({"I514", "I515", "I516", "I517", "I5189", "I519"})


def combination_codes(index: CodeIndex, keys: list[str], text_tokens: set[str],
                      candidates: Sequence[str] = ()) -> list[tuple[str, str, str]]:
    """(code key, replaces-prefix, evidence) for combination codes implied by `keys` (the codes
    reported; `candidates`, every code found, reported or not)."""
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
    # COPD with an acute lower respiratory infection (bronchitis, pneumonia) is J44.0, the infection
    # coded beside it; an exacerbation (J44.1) may be reported with it
    # (a COPD title's "chronic bronchitis" takes an acute bronchitis's words: it is looked for in the text)
    copd = any(k.startswith("J44") for k in keys)
    acute_bronchitis = {"acute", "bronchitis"} <= text_tokens
    if copd and (acute_bronchitis or any(
            k[:3] in ("J09", "J10", "J11", "J12", "J13", "J14", "J15", "J16", "J17", "J18", "J20", "J21", "J22")
            for k in keys)):
        out.append(("J440", "J449", "COPD with an acute lower respiratory infection (J44.0), the infection as well"))
        if acute_bronchitis and not any(k.startswith("J20") for k in keys):
            out.append(("J209", "J20", "the acute bronchitis itself, beside J44.0"))
    # gestational diabetes is in pregnancy unless the text is after the delivery
    puerperium = bool({"puerperium", "postpartum"} & text_tokens)
    # gestational diabetes (read as a diabetes of the weeks' trimester, O24.91-, when the weeks are
    # said) treated with insulin or pills is "insulin controlled", with no Z79 code beside it
    # (guideline I.C.15.g)
    gestational = [k for k in keys if k.startswith("O244")] or (
        ["O2441"] if "gestational" in text_tokens and "diabetes" in text_tokens
        and any(k.startswith(("O249", "O244")) for k in (*keys, *candidates)) else [])
    if gestational:
        control = "4" if "Z794" in keys else "5" if "Z7984" in keys else "" if gestational[0] in keys else "9"
        if control:
            out.append((("O2443" if puerperium else "O2441") + control, "O24",
                        "gestational diabetes, by how it is controlled"))
    return [(k, p, e) for k, p, e in out if index.row(ICD, k) is not None]


# What a pregnancy makes of a condition the patient has (guideline I.C.15.a.1): the chapter 15
# code "complicating pregnancy" for the trimester, listed first, with the condition's own code
# after it. (code prefixes, the chapter 15 category without its trimester); the first match wins.
_IN_PREGNANCY: tuple[tuple[tuple[str, ...], str], ...] = (
    (("E10",), "O2401"), (("E11",), "O2411"), (("E66",), "O9921"),
    (("E0", "E1", "E2", "E3", "E4", "E5", "E6", "E7", "E8"), "O9928"),
    (("D5", "D60", "D61", "D62", "D63", "D64"), "O9901"), (("D6", "D7", "D8"), "O9911"),
    (("F10",), "O9931"), (("F17",), "O9933"), (("F11", "F12", "F13", "F14", "F15", "F16", "F18", "F19"), "O9932"),
    (("F",), "O9934"), (("G",), "O9935"),
    (("I10",), "O1001"), (("I11",), "O1011"), (("I12",), "O1021"), (("I13",), "O1031"), (("I15",), "O1041"),
    (("I",), "O9941"), (("J",), "O9951"),
    (("K7", "K80", "K81", "K82", "K83"), "O2661"), (("K",), "O9961"), (("L",), "O9971"),
    (("N10", "N11", "N12"), "O230"), (("N30",), "O231"), (("N390",), "O234"),
)


def pregnancy_codes(index: CodeIndex, keys: list[str], trimester: int | None) -> list[tuple[str, str, str]]:
    """(code key, the condition's key, evidence) for the conditions `keys` of a pregnant patient."""
    out = []
    for key in keys:
        base = next((b for prefixes, b in _IN_PREGNANCY if key.startswith(prefixes)), None)
        if base is None:
            continue
        digits = (str(trimester),) if trimester else ("9", "0")
        code = next((base + d for d in digits if index.row(ICD, base + d) is not None), None)
        if code is not None:
            out.append((code, key, f"{index.display[index.row(ICD, key)]} in a pregnancy: its chapter 15 code first"))
    return out


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
