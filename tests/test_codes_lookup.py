"""Finding codes by what people type (consultant.codes.lookup)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlmodel import Session

from consultant.codes.lookup import (
    billable_children,
    children,
    display_code,
    lookup,
    near_codes,
    normalize_code,
    system_name,
)
from consultant.db import make_engine
from tests.test_codes_support import loaded_sqlite_url


@pytest.fixture(scope="module")
def session():
    engine = make_engine(loaded_sqlite_url())
    with Session(engine) as s:
        yield s
    engine.dispose()


@pytest.mark.parametrize(
    "text,expected",
    [("e11.9", "E119"), (" E11.9 ", "E119"), ("s52.502a", "S52502A"), ("623 10", "62310"), ("j3301", "J3301"), ("", "")],
)
def test_normalize_code(text, expected):
    assert normalize_code(text) == expected


@given(st.text(alphabet="abcdefXYZ0123456789. ", max_size=12))
def test_normalize_is_idempotent_and_clean(text):
    once = normalize_code(text)
    assert normalize_code(once) == once
    assert "." not in once and " " not in once and once == once.upper()


def test_display_code():
    assert display_code("ICD-10-CM", "E119") == "E11.9"
    assert display_code("icd10cm", "S52502A") == "S52.502A"
    assert display_code("ICD-10-CM", "I10") == "I10"
    assert display_code("ICD-10-CM", "E08-E13") == "E08-E13"
    assert display_code("CPT", "62310") == "62310"
    assert display_code("ICD-10-PCS", "0DTJ4ZZ") == "0DTJ4ZZ"
    assert display_code("HCPCS", "j3301") == "J3301"


def test_system_aliases():
    assert system_name("cpt") == "CPT" and system_name("icd10cm") == "ICD-10-CM" and system_name("pcs") == "ICD-10-PCS"
    with pytest.raises(ValueError):
        system_name("snomed")


@pytest.mark.parametrize(
    "text,system,display",
    [
        ("e119", "ICD-10-CM", "E11.9"),
        ("E11.9", "ICD-10-CM", "E11.9"),
        ("62310", "CPT", "62310"),
        ("J3301", "HCPCS", "J3301"),
        ("t36.0x1a", "ICD-10-CM", "T36.0X1A"),
        ("T07A", "ICD-10-CM", "T07.XXXA"),  # placeholders left out
        ("0DTJ4ZZ", "ICD-10-PCS", "0DTJ4ZZ"),
        ("xs", "MOD", "XS"),
    ],
)
def test_lookup_any_form(session, text, system, display):
    found = lookup(session, text)
    assert found and found[0].system == system and found[0].display == display


def test_lookup_restricted_to_a_system(session):
    assert lookup(session, "G0439", "HCPCS")[0].system == "HCPCS"
    both = lookup(session, "G0439")  # also ICD-10-CM G04.39
    assert [c.system for c in both] == ["ICD-10-CM", "HCPCS"]
    assert lookup(session, "E11.9", "cpt") == []


def test_near_codes_for_typos(session):
    assert lookup(session, "E11.99") == []
    near = [c.display for c in near_codes(session, "E11.99")]
    assert "E11.9" in near or any(n.startswith("E11.") for n in near)
    assert "E11.9" in [c.display for c in near_codes(session, "E1l.9", limit=5)]  # letter l for digit 1
    assert near_codes(session, "I1O")[0].display == "I10"  # letter O for zero
    assert near_codes(session, "E191")[0].display == "E11.9"  # two characters swapped
    assert "62321" in [c.display for c in near_codes(session, "62312", system="cpt")]


def test_billable_children_of_headers(session):
    assert [c.display for c in billable_children(session, "G35")] == [
        "G35.A", "G35.B0", "G35.B1", "G35.B2", "G35.C0", "G35.C1", "G35.C2", "G35.D",
    ]
    assert [c.display for c in billable_children(session, "R10.2")] == ["R10.20", "R10.21", "R10.22", "R10.23", "R10.24"]
    s52 = billable_children(session, "S52.50")
    assert "S52.502A" in [c.display for c in s52] and all(c.billable for c in s52)
    assert len(billable_children(session, "E08-E13")) > 300  # a block
    assert [c.display for c in children(session, "E11")][:2] == ["E11.0", "E11.1"]
