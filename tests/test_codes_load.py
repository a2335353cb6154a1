"""Loading codes_db/ into the code tables: everything, idempotently, quickly (consultant.codes.loader)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select
from sqlmodel import Session

from consultant.codes.loader import ensure_codes_loaded, load_codes, missing_releases
from consultant.codes.lookup import lookup
from consultant.db import make_engine
from consultant.models import Code, CodeRelease
from tests.test_codes_support import LOAD_SUMMARY, fresh_sqlite, loaded_sqlite_url, mini_codes_db


@pytest.fixture(scope="module")
def full():
    started = time.monotonic()
    url = loaded_sqlite_url()
    engine = make_engine(url)
    yield engine, time.monotonic() - started
    engine.dispose()


def _count(engine, *where) -> int:
    with engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(Code).where(*where)).scalar_one()


def test_everything_shipped_is_loaded(full):
    engine, _ = full
    with Session(engine) as s:
        releases = {(r.system, r.release): r for r in s.exec(select(CodeRelease)).scalars()}
    cm = releases[("ICD-10-CM", "ICD-10-CM FY2026 (April 1, 2026)")]
    assert cm.billable_count == 74_719 and not cm.sample
    assert _count(engine, Code.system == "ICD-10-CM", Code.billable.is_(True)) == 74_719
    assert {s for s, _ in releases} == {"ICD-10-CM", "ICD-10-PCS", "CPT", "HCPCS", "MOD"}
    assert releases[("CPT", "CPT team sample (not AMA text)")].sample
    assert ("ICD-10-PCS", "ICD-10-PCS FY2024") in releases and ("ICD-10-PCS", "ICD-10-PCS FY2025 (section 0)") in releases
    assert _count(engine, Code.system == "ICD-10-PCS") == 78_928


def test_load_time_is_under_a_minute(full):
    _, _ = full
    assert LOAD_SUMMARY["seconds"] < 60


def test_every_code_has_official_and_plain_text(full):
    engine, _ = full
    assert _count(engine, Code.official == "") == 0
    assert _count(engine, Code.plain == "") == 0


def test_rows_carry_hierarchy_history_and_release(full):
    engine, _ = full
    with Session(engine) as s:
        (e119,) = lookup(s, "E11.9")
        assert (e119.parent, e119.block, e119.chapter, e119.kind) == ("E11", "E08-E13", "CH4", "code")
        assert e119.release == "ICD-10-CM FY2026 (April 1, 2026)"
        assert any("Z79.4" in n for i in e119.notes["inherited"] for n in i.get("useAdditionalCode", []))
        (g35,) = lookup(s, "G35")
        assert g35.status == "deleted" and g35.deleted_on == "2025-10-01" and not g35.billable
        assert g35.replaced_by[:2] == ["G35A", "G35B0"]
        (g35a,) = lookup(s, "G35.A")
        assert g35a.change == "new" and g35a.billable
        (cpt,) = lookup(s, "62310")
        assert cpt.status == "deleted" and cpt.deleted_on == "2017-01-01" and cpt.replaced_by == ["62320", "62321"]


def test_load_is_idempotent_and_ensure_loads_only_when_missing(tmp_path):
    data = mini_codes_db(tmp_path / "codes_db")
    engine = fresh_sqlite(tmp_path)
    assert missing_releases(engine, data)
    first = ensure_codes_loaded(engine, directory=data)
    assert first is not None and first["codes"] > 1000
    total = _count(engine)
    assert ensure_codes_loaded(engine, directory=data) is None
    again = load_codes(engine, directory=data)
    assert again["codes"] == total == _count(engine)
    with engine.connect() as conn:
        dupes = conn.execute(
            select(Code.system, Code.code).group_by(Code.system, Code.code).having(func.count() > 1)
        ).all()
        releases = conn.execute(select(func.count()).select_from(CodeRelease)).scalar_one()
    assert dupes == [] and releases == 6
    engine.dispose()
