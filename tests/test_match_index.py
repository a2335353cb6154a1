"""The in-memory code index's compact layout (consultant/match/index.py), on a few made-up rows."""

from __future__ import annotations

import pickle

from consultant.match.index import ICD, Texts, build_index, title_roles
from consultant.match.search import make_query, search
from consultant.match.text import tokenize


def _row(code: str, official: str, *, system: str = ICD, billable: bool = True, parent: str = "", notes=None,
         plain: str = "") -> dict:
    return {
        "system": system, "code": code, "display": code, "official": official, "short": "", "plain": plain or official,
        "billable": billable, "parent": parent, "status": "valid", "change": "", "replaced_by": [],
        "notes": notes or {}, "release": f"{system} test", "kind": "code",
    }


ROWS = [
    _row("K21", "Gastro-esophageal reflux disease", billable=False),
    _row("K21.0", "Gastro-esophageal reflux disease with esophagitis", billable=False, parent="K21"),
    _row("K21.00", "Gastro-esophageal reflux disease with esophagitis, without bleeding", parent="K21.0",
         notes={"inclusion": ["Reflux esophagitis without bleeding"]}),
    _row("K21.01", "Gastro-esophageal reflux disease with esophagitis, with bleeding", parent="K21.0"),
    _row("K21.9", "Gastro-esophageal reflux disease without esophagitis", parent="K21", plain="Säure-Reflux ohne Entzündung"),
    _row("99214", "Office or other outpatient visit, established patient", system="CPT"),
    _row("99214", "Made-up HCPCS code with the same key", system="HCPCS"),
]


def test_texts_round_trip():
    texts = Texts()
    for t in ["", "plain ASCII", "Säure-Reflux — ohne Entzündung", "x"]:
        texts.append(t)
    assert len(texts) == 4
    assert list(texts) == ["", "plain ASCII", "Säure-Reflux — ohne Entzündung", "x"]
    assert texts[2] == "Säure-Reflux — ohne Entzündung"


def test_rows_titles_and_documents():
    index = build_index(ROWS)
    assert index.plain[index.row(ICD, "K21.9")] == "Säure-Reflux ohne Entzündung"
    # a key on two rows (two systems) finds both, or the one of the system asked for
    assert [index.system[r] for r in index.rows_for("99214")] == ["CPT", "HCPCS"]
    assert index.system[index.row("HCPCS", "99214")] == "HCPCS"
    assert index.rows_for("Z99.99") == [] and index.row(ICD, "K21.00") is not None
    # every row's title as title_roles reads it
    for row, title in enumerate(index.official):
        assert index.titles[row] == title_roles(title)
    # every document is on the postings of each of its words, in its group
    for d in range(len(index.docs)):
        lo, hi = index.docs.start[d], index.docs.start[d + 1]
        target = index.docs.target[d]
        group = "dx" if index.system[target] == ICD else "px"
        for t in index.docs.tokens[lo:hi]:
            assert d in index.postings[group][t]
    # the inclusion term says "without bleeding" (stemmed to hemorrhage; "without" is a WITHOUT word too)
    assert index.said_absent[index.row(ICD, "K21.00")] == {"without", "hemorrhage"}
    assert index.row(ICD, "K21.01") not in index.said_absent


def test_a_pickled_index_answers_the_same():
    index = build_index(ROWS)
    again = pickle.loads(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
    tokens = tokenize("reflux esophagitis with bleeding")
    hits = search(index, make_query(index, tokens))
    assert index.key[hits[0].row] == "K2101"
    assert search(again, make_query(again, tokens)) == hits


def test_a_pickled_index_keeps_every_map_and_one_object_per_row_number():
    rows = [
        *ROWS,
        _row("S52.5", "Fracture of lower end of radius", billable=False),
        _row("S52.501A", "Unspecified fracture of the lower end of right radius, initial encounter", parent="S52.5"),
        _row("S52.501D", "Unspecified fracture of the lower end of right radius, subsequent encounter", parent="S52.5"),
        {**_row("0DT", "Resection of gastrointestinal system", system="ICD-10-PCS"), "display": "0DT (odd)"},
    ]
    index = build_index(rows)
    again = pickle.loads(pickle.dumps(index, protocol=pickle.HIGHEST_PROTOCOL))
    for name in ("key", "system", "by_key", "same_key", "children", "family_of"):
        assert getattr(again, name) == getattr(index, name), name
    assert again.families == index.families and again.families[0].members == (8, 9)
    # displays come from the keys (a dot after the third character in ICD-10-CM) unless written otherwise
    assert [again.display[r] for r in range(len(again))] == [r["display"] for r in rows]
    assert again.display.odd == {len(rows) - 1: "0DT (odd)"}
    # a row number is one object wherever it is held (pickle would make one per place)
    family_row = again.families[0].members[0]
    assert again.family_of[family_row] == 0
    assert next(k for k in again.family_of if k == family_row) is family_row
    assert again.by_key["S52501A"] is family_row
    assert next(kid for kid in again.children[again.by_key["S525"]] if kid == family_row) is family_row
