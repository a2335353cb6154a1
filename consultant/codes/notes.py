"""Tabular notes of ICD-10-CM, resolved the way the tabular means them.

The shipped file keeps each node's own notes only. A note written at a
chapter, block, category or subcategory applies to every code below it, so
the loader stores, for each code, its own notes and the notes it inherits:

    {
      "excludes1": ["..."],                          # own notes, by type
      "inherited": [                                 # top-down: chapter, block, category, ...
        {"from": "Chapter 19", "code": "CH19", "types": ["excludes2", "notes"]},
        {"from": "block S50-S59", "code": "S50-S59", "types": ["excludes2"]},
        {"from": "S52", "notes": ["..."], "excludes1": ["..."]},
      ],
      "seventh": {"char": "A", "meaning": "initial encounter ...", "from": "S52"},
      "sevenChrDef": {"A": "...", "D": "..."},       # only where the table is defined
      "sevenChrDef_from": "S52",                     # codes that still need a 7th character
      "history": {"change": "revised", "previous": "FY2025 text"},
    }

Chapter and block notes apply to thousands of codes, so they are inherited
by reference (their text stays on the chapter or block row; `expand_notes`
fills it in); notes from categories and subcategories are copied inline.
Inclusion terms are inherited only from codes (category and below), never
from chapters or blocks; 7th-character notes are replaced by the meaning of
the code's own 7th character.
"""

from __future__ import annotations

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
    "visualImpairment",
)

# Notes that reach down to every code below the node that carries them.
INHERITED_TYPES = ("includes", "excludes1", "excludes2", "codeFirst", "useAdditionalCode", "codeAlso", "notes")
CODE_ONLY_INHERITED = ("inclusionTerm",)

NOTE_LABELS = {
    "inclusionTerm": "Inclusion terms",
    "includes": "Includes",
    "excludes1": "Excludes1 (never code together)",
    "excludes2": "Excludes2 (not included here; may code both)",
    "codeFirst": "Code first",
    "useAdditionalCode": "Use additional code",
    "codeAlso": "Code also",
    "notes": "Notes",
    "sevenChrNote": "7th character",
    "visualImpairment": "Visual impairment categories",
}


def _inheritable(node: dict) -> dict[str, list[str]]:
    own = node.get("notes") or {}
    keep = INHERITED_TYPES + (CODE_ONLY_INHERITED if node["kind"] in ("category", "code") else ())
    return {k: own[k] for k in keep if own.get(k)}


def source_name(node: dict) -> str:
    """How a note's origin is named: "Chapter 19", "block S50-S59", "S52.5"."""
    if node["kind"] == "block":
        return "block " + node["display"]
    return node["display"]


def resolve_cm_notes(nodes: list[dict]) -> list[dict]:
    """Notes with inheritance for each node, in the order given.

    `nodes` are rows of the shipped ICD-10-CM file: code, display, kind,
    parent, notes (own), and optionally seventh (a 7th-character table
    defined here), x7 (this code's 7th character), history fields.
    """
    by_code = {n["code"]: n for n in nodes}
    chain_cache: dict[str, list[dict]] = {}

    def chain(code: str | None) -> list[dict]:
        """Ancestors of `code` including itself, top-down."""
        if code is None or code not in by_code:
            return []
        if code not in chain_cache:
            node = by_code[code]
            chain_cache[code] = chain(node["parent"]) + [node]
        return chain_cache[code]

    out = []
    for node in nodes:
        notes: dict = {k: list(v) for k, v in (node.get("notes") or {}).items() if v}
        ancestors = chain(node["parent"])
        inherited = []
        for anc in ancestors:
            got = _inheritable(anc)
            if not got:
                continue
            if anc["kind"] in ("chapter", "block"):
                # Shared by thousands of codes: stored once, on the chapter or block row.
                inherited.append({"from": source_name(anc), "code": anc["code"], "types": list(got)})
            else:
                inherited.append({"from": anc["display"], **got})
        if inherited:
            notes["inherited"] = inherited
        if node.get("seventh"):
            notes["sevenChrDef"] = node["seventh"]
        table_from = next((a for a in reversed(ancestors + [node]) if a.get("seventh")), None)
        if node.get("x7"):
            if table_from is not None:
                meaning = table_from["seventh"].get(node["x7"], "")
                notes["seventh"] = {"char": node["x7"], "meaning": meaning, "from": table_from["display"]}
        elif table_from is not None and not node.get("billable") and node.get("status", "valid") == "valid":
            notes["sevenChrDef_from"] = table_from["display"]
        history = {k: node[k] for k in ("change", "previous", "was_billable") if node.get(k)}
        if history:
            notes["history"] = history
        if node.get("placeholder"):
            notes["placeholder"] = True
        out.append(notes)
    return out


def own_and_inherited(notes: dict, kind: str) -> list[str]:
    """Every note of one type that applies to a code: inherited first, then its own."""
    found: list[str] = []
    for inh in notes.get("inherited", []):
        found.extend(inh.get(kind, []))
    found.extend(notes.get(kind, []))
    return found


def expand_notes(notes: dict, lookup_notes) -> dict:
    """`notes` with chapter/block references replaced by their text.

    lookup_notes(code) returns the stored notes of a chapter or block row.
    """
    out = dict(notes)
    expanded = []
    for inh in notes.get("inherited", []):
        if "types" in inh and "code" in inh:
            src = lookup_notes(inh["code"]) or {}
            expanded.append({"from": inh["from"], **{t: src.get(t, []) for t in inh["types"]}})
        else:
            expanded.append(inh)
    if expanded:
        out["inherited"] = expanded
    return out
