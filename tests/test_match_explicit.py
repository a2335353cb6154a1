"""Explicit code extraction, including what must not be read as a code."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from consultant.match.explicit import find_mentions


def keys(text):
    return [(m.key, m.system) for m in find_mentions(text)]


@pytest.mark.parametrize(
    "text, expected",
    [
        ("What does ICD-10-CM H40.1131 mean?", ("H401131", "ICD-10-CM")),
        ("s161xxa whiplash", ("S161XXA", "ICD-10-CM")),
        ("I5A code lookup", ("I5A", "ICD-10-CM")),
        ("CPT 62310 replaced?", ("62310", "CPT")),
        ("hcpcs j3301 for 40 mg", ("J3301", "HCPCS")),
        ("0FT44ZZ pcs", ("0FT44ZZ", "ICD-10-PCS")),
        ("e11.9", ("E119", "ICD-10-CM")),
    ],
)
def test_finds_codes(text, expected):
    assert expected in keys(text)


def test_two_codes_in_two_forms():
    found = [k for k, s in keys("M17.11 vs m1712 - which one?") if s == "ICD-10-CM"]
    assert found == ["M1711", "M1712"]


@pytest.mark.parametrize(
    "text",
    [
        "seen 03/14/2024, MRN 12345678",
        "call 555-123-4567",
        "Springfield IL 62704",
        "icd10 code for HTN",
        "ICD-10-CM question",
        "dose 40 mg twice daily",
        "B12 deficiency",
        "T2DM on insulin",
        "T1DM with hypoglycemia",
        "H1N1 influenza",
        "my zip is 62704?",
        "patient weighs 12345",
        "G2P1 at 32 weeks",
        "G3P2012, postpartum",
    ],
)
def test_no_false_positives(text):
    assert keys(text) == []


@given(st.dates())
def test_dates_are_never_codes(d):
    assert keys(f"seen on {d.isoformat()} and {d.month}/{d.day}/{d.year}") == []


@pytest.mark.parametrize("text", ["what is 62311", "what's 99213?", "62311 still valid?", "62311 deleted?"])
def test_a_short_question_about_one_five_digit_number_asks_about_a_cpt_code(text):
    assert [m.system for m in find_mentions(text)] == ["CPT"]


def test_a_bare_five_digit_number_is_a_weak_cpt_mention_and_a_place_is_no_code():
    (m,) = find_mentions("20610 R knee injection with 40 mg kenalog")
    assert (m.system, m.key, m.weak) == ("CPT", "20610", True)
    assert [x.key for x in find_mentions("cpt 93000 - 12 lead ekg, pt 67 yo")] == ["93000"]  # a dash and words
    assert [x.key for x in find_mentions("pt in bed C12 with A41.9 and R65.20")] == ["A419", "R6520"]


def test_a_space_for_the_dot_is_a_weak_reading_beside_the_category():
    found = find_mentions("Dx E78 5 - pt on atorvastatin")
    assert [(m.key, m.weak) for m in found] == [("E785", True), ("E78", False)]
    assert [m.key for m in find_mentions("I10 2 weeks ago")] == ["I10"]  # a unit after the number: no code
