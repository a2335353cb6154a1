"""Full-text search: sensible answers, and the same answers on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlmodel import SQLModel

from consultant.codes.loader import load_codes
from consultant.codes.search import rebuild_index, search_codes, stem, terms
from consultant.db import make_engine
from tests.test_codes_support import fresh_sqlite, loaded_sqlite_url, mini_codes_db, pg_database

PARITY_CATEGORIES = (
    "A00", "A41", "E11", "E78", "G35", "G43", "I10", "I21", "I25", "I48", "J06", "J18", "J45", "K21", "M17", "M54",
    "N20", "N39", "R05", "R10", "R51", "S52", "S62", "S72", "S93", "T36", "T07", "Z00", "Z79",
)
QUERIES = [
    "type 2 diabetes",
    "diabetes with hyperglycemia",
    "heart attack",
    "high blood pressure",
    "kidney stone",
    "broken wrist",
    "fracture of femur shaft",
    "ankle sprain",
    "migraine",
    "asthma uncomplicated",
    "low back pain",
    "epidural injection",
    "annual wellness visit",
    "triamcinolone",
    "multiple sclerosis",
    "pelvic pain",
    "poisoning penicillin",
    "sepsis",
    "left",
    "pneumon",
    "cholera",
    "xyzzy plugh",
    "anticoagulant long term",
    "colonoscopy",
]


def test_terms_and_stemming():
    assert terms("Fractures of the Femur, NOS") == ["fracture", "femur", "nos"]
    assert stem("injuries") == "injury" and stem("abscesses") == "abscess" and stem("diabetes") == "diabete"
    assert stem("pelvis") == "pelvis" and stem("virus") == "virus"
    assert terms("Sjögren") == ["sjogren"]


@pytest.fixture(scope="module")
def full():
    engine = make_engine(loaded_sqlite_url())
    yield engine
    engine.dispose()


def test_search_finds_lay_and_official_wording(full):
    assert search_codes(full, "high blood pressure")[0].display == "I10"
    assert search_codes(full, "kidney stone")[0].display == "N20.0"
    assert search_codes(full, "classical cholera")[0].display == "A00.0"  # inclusion term
    assert [h.display for h in search_codes(full, "annual wellness", system="hcpcs")] == ["G0438", "G0439"]
    assert search_codes(full, "triamcinolone")[0].display == "J3301"
    hits = search_codes(full, "fracture femur shaft", limit=3)
    assert all(h.display.startswith("S72.") for h in hits)
    assert search_codes(full, "xyzzy plugh") == []
    assert search_codes(full, "  ") == []


def test_search_prefix_and_fallback(full):
    assert any(h.display.startswith("J18") for h in search_codes(full, "pneumon", limit=20))
    # no code has every word: any of them will do (whole words)
    assert search_codes(full, "cholera xyzzy")[0].display.startswith("A00")


def test_index_stays_in_step(tmp_path):
    data = mini_codes_db(tmp_path / "db", categories=("A00", "E11"), pcs_per_release=10)
    engine = fresh_sqlite(tmp_path)
    load_codes(engine, directory=data)
    assert rebuild_index(engine) == 0  # the loader indexed everything already
    assert rebuild_index(engine, full=True) > 100
    assert search_codes(engine, "cholera")[0].display.startswith("A00")
    engine.dispose()


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same data loaded into SQLite and a fresh PostgreSQL database."""
    data = mini_codes_db(tmp_path_factory.mktemp("parity_db"), categories=PARITY_CATEGORIES, pcs_per_release=2000)
    url, drop = pg_database()
    pg = make_engine(url)
    try:
        SQLModel.metadata.create_all(pg)
        load_codes(pg, directory=data)
        lite = fresh_sqlite(tmp_path_factory.mktemp("parity_sqlite"))
        load_codes(lite, directory=data)
        yield lite, pg
        lite.dispose()
    finally:
        pg.dispose()
        drop()


@pytest.mark.integration
def test_same_answers_on_sqlite_and_postgresql(both):
    lite, pg = both
    nonempty = 0
    for q in QUERIES:
        a = [(h.system, h.code, h.score, h.matched) for h in search_codes(lite, q, limit=10)]
        b = [(h.system, h.code, h.score, h.matched) for h in search_codes(pg, q, limit=10)]
        assert a == b, q
        nonempty += bool(a)
    assert nonempty >= len(QUERIES) - 2
    for system in ("ICD-10-CM", "CPT", "HCPCS", "ICD-10-PCS"):
        assert [h.code for h in search_codes(lite, "injection", system=system)] == [
            h.code for h in search_codes(pg, "injection", system=system)
        ]


@pytest.mark.integration
def test_postgresql_reload_is_idempotent(both):
    _, pg = both
    from sqlalchemy import func, select

    from consultant.models import Code

    with pg.connect() as conn:
        before = conn.execute(select(func.count()).select_from(Code)).scalar_one()
        indexed = conn.exec_driver_sql("SELECT count(*) FROM code_search").scalar_one()
    assert before == indexed
    assert rebuild_index(pg) == 0
