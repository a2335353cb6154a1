"""The ICD-10-CM build: 7th characters, placeholders, notes, history (codes_db/build.py)."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "codes_db"))
import build  # noqa: E402  (codes_db/build.py, a script)

from consultant.codes.notes import expand_notes, own_and_inherited, resolve_cm_notes  # noqa: E402


@pytest.fixture(scope="module")
def shipped() -> tuple[dict, dict[str, dict]]:
    with gzip.open(ROOT / "codes_db" / build.CM_OUT, "rt", encoding="utf-8") as fh:
        header = json.loads(fh.readline())["header"]
        rows = [json.loads(line) for line in fh]
    return header, {r["code"]: r for r in rows}


def test_billable_count_of_the_april_2026_tabular(shipped):
    header, rows = shipped
    billable = [r for r in rows.values() if r["billable"]]
    # FY2025 had 74,260 billable codes; FY2026 added 487 and deleted 28.
    assert len(billable) == 74_719 == header["billable"]
    assert len(billable) == 74_260 + 487 - 28


def test_seventh_characters_and_placeholders_are_written_out(shipped):
    _, rows = shipped
    assert rows["S52502A"]["display"] == "S52.502A"
    assert rows["S52502A"]["billable"] and rows["S52502A"]["x7"] == "A"
    assert rows["S52502A"]["desc"].endswith("initial encounter for closed fracture")
    assert not rows["S52502"]["billable"]  # needs its 7th character
    # every S52 7th character, including the open-fracture ones
    assert {c for c in "ABCDEFGHJKMNPQRS"} == {k[-1] for k in rows if k.startswith("S52502") and len(k) == 7}
    # X placeholder to fill the 6th position (T36.0X1A) and several (T07.XXXA)
    assert rows["T360X1A"]["display"] == "T36.0X1A" and rows["T360X1A"]["billable"]
    assert rows["T07XXXA"]["billable"] and rows["T07XXXD"]["billable"]
    assert "T07A" not in rows
    # laterality as 7th character outside chapter 19 (E11.3211: right eye)
    assert rows["E113211"]["billable"] and rows["E1137X1"]["billable"]
    assert not rows["E11321"]["billable"]
    # a subcategory's own table overrides its category's (S52.01 has 6 characters, not 16)
    assert {k[-1] for k in rows if k.startswith("S52011") and len(k) == 7} == set("ADGKPS")


def test_s06_death_codes_take_only_the_initial_encounter(shipped):
    _, rows = shipped
    assert rows["S061X7A"]["billable"]
    assert "S061X7D" not in rows and "S061X8S" not in rows
    assert rows["S061X1D"]["billable"]


def test_hierarchy(shipped):
    _, rows = shipped
    e119 = rows["E119"]
    assert (e119["parent"], e119["block"], e119["chapter"]) == ("E11", "E08-E13", "CH4")
    assert rows["E11"]["kind"] == "category" and rows["E08-E13"]["kind"] == "block"
    assert rows["CH4"]["kind"] == "chapter"
    # a one-category block keeps a distinct canonical code
    assert rows["T07-T07"]["kind"] == "block" and rows["T07"]["kind"] == "category"


def test_own_notes_are_kept_per_node(shipped):
    _, rows = shipped
    assert rows["A000"]["notes"]["inclusionTerm"] == ["Classical cholera"]
    assert "traumatic amputation of forearm (S58.-)" in rows["S52"]["notes"]["excludes1"]
    assert rows["S52"]["seventh"]["A"] == "initial encounter for closed fracture"
    assert "(includes: initial encounter for open fracture NOS)" in rows["S52"]["seventh"]["B"]
    assert any("Z79.4" in n for n in rows["E11"]["notes"]["useAdditionalCode"])


def test_inherited_notes_resolve_top_down(shipped):
    _, rows = shipped
    wanted = ["CH19", "S50-S59", "S52", "S525", "S5250", "S52502", "S52502A"]
    nodes = [rows[c] for c in wanted]
    notes = resolve_cm_notes(nodes)[-1]
    sources = [i["from"] for i in notes["inherited"]]
    assert sources == ["Chapter 19", "block S50-S59", "S52", "S52.5"]
    assert notes["seventh"] == {"char": "A", "meaning": "initial encounter for closed fracture", "from": "S52"}
    # category excludes and subcategory inclusion terms reach the 7-character code
    assert "traumatic amputation of forearm (S58.-)" in own_and_inherited(notes, "excludes1")
    assert "Fracture of distal end of radius" in own_and_inherited(notes, "inclusionTerm")
    # chapter notes are referenced, then expanded on demand
    chapter_ref = notes["inherited"][0]
    assert chapter_ref["code"] == "CH19" and "excludes2" in chapter_ref["types"]
    full = expand_notes(notes, lambda code: rows[code]["notes"])
    assert "birth trauma (P10-P15)" in own_and_inherited(full, "excludes2")


def test_inclusion_terms_do_not_leak_from_chapters(shipped):
    _, rows = shipped
    nodes = [rows[c] for c in ("CH1", "A00-A09", "A00", "A000")]
    notes = resolve_cm_notes(nodes)
    assert notes[-1]["inclusionTerm"] == ["Classical cholera"]
    assert own_and_inherited(notes[2], "inclusionTerm") == []


def test_history_g35_became_a_category(shipped):
    header, rows = shipped
    g35 = rows["G35"]
    assert g35["kind"] == "category" and not g35["billable"]
    assert g35["status"] == "deleted" and g35["deleted_on"] == "2025-10-01"
    assert g35["replaced_by"][:2] == ["G35A", "G35B0"] and "G35D" in g35["replaced_by"]
    assert rows["G35A"]["change"] == "new"
    assert header["history"]["now_header"] >= 16


def test_history_r10_2_split(shipped):
    _, rows = shipped
    assert rows["R102"]["status"] == "deleted"
    assert rows["R102"]["replaced_by"] == ["R1020", "R1021", "R1022", "R1023", "R1024"]


def test_history_removed_7_character_codes_keep_their_7th_character(shipped):
    _, rows = shipped
    gone = rows["S301XXA"]  # contusion of abdominal wall: split by site in FY2026
    assert gone["status"] == "deleted" and gone["was_billable"] and not gone["billable"]
    assert gone["replaced_by"] and all(c.endswith("A") for c in gone["replaced_by"])
    assert rows["S301XXD"]["replaced_by"] == [c[:-1] + "D" for c in gone["replaced_by"]]


def test_history_counts_match_the_fy2026_addenda(shipped):
    _, rows = shipped
    new_billable = [r for r in rows.values() if r.get("change") == "new" and r["billable"]]
    deleted_billable = [r for r in rows.values() if r.get("status") == "deleted"]
    assert len(new_billable) == 487
    assert len(deleted_billable) == 28
    revised = rows["L02212"]
    assert revised["change"] == "revised" and "flank" not in revised["previous"]


def test_pcs_overlay():
    with gzip.open(ROOT / "codes_db" / build.PCS_OUT, "rt", encoding="utf-8") as fh:
        recs = [line.rstrip("\n").split("\t") for line in fh][1:]
    by = {r[0]: r for r in recs}
    assert by["0SG604Z"][4] == "deleted" and by["0SG604Z"][5] == "2024-10-01"
    assert by["0016070"][3] == build.PCS_RELEASE_2025
    assert by["B020ZZZ"][3] == build.PCS_RELEASE_2024  # imaging section, FY2024 only
    assert sum(1 for r in recs if r[6] == "new") == 325
    assert {r[0][0] for r in recs} >= set("0123456789BCDFGHX")


def test_build_is_reproducible():
    assert build.main(["--check"]) == 0
