"""Plain-language descriptions and the lay glossary (consultant.codes.plain)."""

from __future__ import annotations

import csv
import re

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from consultant.codes import plain
from consultant.codes.lookup import lookup
from consultant.db import make_engine
from consultant.models import Code
from tests.test_codes_support import loaded_sqlite_url


def _glossary_rows():
    with open(plain.GLOSSARY_FILE, encoding="utf-8", newline="") as fh:
        lines = [ln for ln in fh if ln.strip() and not ln.startswith("#")]
    return list(csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE))


def test_glossary_file_is_well_formed():
    rows = _glossary_rows()
    assert len(rows) > 300
    seen = set()
    for r in rows:
        assert set(r) == {"kind", "term", "plain"} and r["kind"] and r["term"], r
        key = (r["kind"], r["term"].lower())
        assert key not in seen, f"duplicate glossary entry {key}"
        seen.add(key)
        assert r["term"] == r["term"].strip() and (r["plain"] or "") == (r["plain"] or "").strip()
        if r["kind"] == "term":
            assert r["term"].lower() != (r["plain"] or "").lower(), f"{r['term']!r} maps to itself"


@pytest.mark.parametrize(
    "term,lay",
    [
        ("neoplasm", "growth (tumor)"),
        ("malignant", "cancerous"),
        ("myocardial infarction", "heart attack"),
        ("hypertension", "high blood pressure"),
        ("calculus", "stone"),
        ("laceration", "cut"),
    ],
)
def test_glossary_core_terms(term, lay):
    assert plain.lay(term) == lay
    assert plain.lay(term.upper()) == lay


def test_longest_term_wins_and_words_stay_whole():
    assert plain.lay("malignant neoplasm of colon") == "cancer of colon (large bowel)"
    assert plain.lay("calculus of kidney") == "kidney stone"
    assert plain.lay("acute myocardial infarction") == "heart attack"
    # no replacement inside a longer word ("hypertensive" has its own entry, "calculi" too)
    assert "stone" not in plain.lay("calculation")
    assert plain.lay("body mass index") == "body mass index (BMI)"  # not "body lump (mass) index"


def test_seventh_character_phrases():
    assert plain.seventh_phrase("initial encounter") == "first visit for this injury"
    assert plain.seventh_phrase("subsequent encounter") == "follow-up visit"
    assert "sequela" in plain.seventh_phrase("sequela")
    assert "closed fracture" in plain.seventh_phrase("initial encounter for closed fracture")
    assert plain.seventh_phrase("initial encounter for open fracture type I or II (includes: x)").startswith("first visit")


def test_describe_icd10cm_injury():
    text = plain.describe(
        "ICD-10-CM",
        "Laceration without foreign body of right forearm, initial encounter",
        code="S51811A",
        notes={"seventh": {"char": "A", "meaning": "initial encounter", "from": "S51"}},
    )
    assert text == "Cut without object stuck in the body (foreign body) of the right forearm. First visit for this injury."


def test_describe_poisoning_is_not_called_an_injury():
    text = plain.describe(
        "ICD-10-CM",
        "Poisoning by penicillins, accidental (unintentional), initial encounter",
        code="T360X1A",
        notes={"seventh": {"char": "A", "meaning": "initial encounter", "from": "T36"}},
    )
    assert text == "Poisoning by penicillins, by accident. First visit for this problem."


def test_describe_unspecified_side_and_headers():
    text = plain.describe("ICD-10-CM", "Puncture wound with foreign body of unspecified hand", code="S61449", billable=False)
    assert "hand, side not stated" in text and text.endswith(plain.HEADER_NOTE)
    assert plain.describe("ICD-10-CM", "Hyperlipidemia, unspecified", code="E78X").startswith("High blood fats")
    assert plain.describe("ICD-10-CM", "Unspecified fracture of shaft of right femur", code="S7230").startswith(
        "Break (fracture) of the shaft of the right thigh bone (femur), not further specified"
    )


def test_inclusion_terms_are_used():
    text = plain.describe("ICD-10-CM", "Cholera due to Vibrio cholerae 01, biovar cholerae", code="A000",
                          notes={"inclusionTerm": ["Classical cholera"]})
    assert text.endswith("Also covers: classical cholera.")


def test_overrides_for_most_asked_codes():
    table = plain.overrides()
    assert len(table) >= 50
    assert table[("ICD-10-CM", "E119")].startswith("Type 2 diabetes")
    assert plain.describe("ICD-10-CM", "Essential (primary) hypertension", code="I10") == table[("ICD-10-CM", "I10")]


def test_describe_pcs():
    assert plain.describe("ICD-10-PCS", "Resection of Appendix, Percutaneous Endoscopic Approach", code="0DTJ4ZZ") == (
        "Removing all of the appendix, through small cuts with a scope (keyhole surgery)."
    )
    text = plain.describe("ICD-10-PCS", "Drainage of Common Bile Duct, Via Natural or Artificial Opening Endoscopic, Diagnostic", code="0F998ZX")
    assert text.startswith("Draining the common bile duct") and "biopsy" in text
    assert plain.describe("ICD-10-PCS", "Ultrasonography of Left Upper Extremity Arteries", code="B34JZZZ").startswith("Imaging: ")


def test_samples_keep_the_team_wording():
    text = "Drawing blood from a vein with a needle (routine venipuncture)"
    assert plain.describe("CPT", text, code="36415", notes={"sample": True}) == text


@pytest.fixture(scope="module")
def engine():
    eng = make_engine(loaded_sqlite_url())
    yield eng
    eng.dispose()


def test_every_loaded_code_has_a_plain_description(engine):
    with engine.connect() as conn:
        missing = conn.execute(select(func.count()).select_from(Code).where(Code.plain == "")).scalar_one()
        same = conn.execute(
            select(func.count()).select_from(Code).where(Code.system == "ICD-10-CM", Code.plain == Code.official)
        ).scalar_one()
        total = conn.execute(select(func.count()).select_from(Code).where(Code.system == "ICD-10-CM")).scalar_one()
    assert missing == 0
    assert same < total * 0.2  # most descriptions are actually rewritten


def test_overridden_codes_exist_and_are_loaded_with_the_override(engine):
    with Session(engine) as s:
        for (system, code), text in plain.overrides().items():
            found = lookup(s, code, system)
            assert found, f"override for unknown code {system} {code}"
            assert found[0].plain == text


def test_plain_text_reads_as_sentences(engine):
    with engine.connect() as conn:
        rows = conn.execute(select(Code.plain).where(Code.system == "ICD-10-CM").limit(5000)).all()
    for (text,) in rows:
        assert text[0].isupper() or text[0].isdigit(), text
        assert "  " not in text and " ," not in text and "()" not in text, text
        assert not re.search(r"\bthe the\b", text), text
