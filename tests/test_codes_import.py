"""Importing a licensed CPT file and the CMS HCPCS file (consultant.codes.importers)."""

from __future__ import annotations

import hashlib

import pytest
from sqlalchemy import select
from sqlmodel import Session

from consultant.codes.importers import import_file
from consultant.codes.loader import load_codes
from consultant.codes.lookup import lookup
from consultant.codes.search import search_codes
from consultant.errors import CodeDataError
from consultant.models import Code, CodeRelease
from tests.test_codes_support import fresh_sqlite, mini_codes_db


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return mini_codes_db(tmp_path_factory.mktemp("codes_db"))


@pytest.fixture
def engine(tmp_path, data):
    eng = fresh_sqlite(tmp_path)
    load_codes(eng, directory=data)
    yield eng
    eng.dispose()


def snapshot(engine) -> str:
    """A digest of both code tables and the search index."""
    h = hashlib.sha256()
    with engine.connect() as conn:
        for row in conn.execute(select(Code.__table__).order_by(Code.system, Code.code)):
            h.update(repr(tuple(row)).encode())
        for row in conn.execute(select(CodeRelease.system, CodeRelease.release, CodeRelease.code_count).order_by(CodeRelease.id)):
            h.update(repr(tuple(row)).encode())
        for row in conn.exec_driver_sql("SELECT rowid, terms FROM code_fts ORDER BY rowid"):
            h.update(repr(tuple(row)).encode())
    return h.hexdigest()


def hcpcs_record(code: str, seq: int, recid: str, long: str, short: str = "") -> str:
    return f"{code:<5}{seq:05d}{recid}{long:<80}{short:<28}" + " " * 60


CPT_TSV = (
    "CPT Code\tLong Descriptor\tShort Descriptor\n"
    "99213\tLicensed descriptor text for 99213\tLICENSED SHORT 99213\n"
    "62321\tLicensed descriptor text for 62321\tLICENSED SHORT 62321\n"
    "0001U\tLicensed descriptor text for a PLA code\tPLA\n"
)


def test_cpt_tsv_with_header_replaces_the_sample(engine, tmp_path):
    path = tmp_path / "cpt.tsv"
    path.write_text(CPT_TSV)
    summary = import_file(engine, "cpt", path)
    assert summary == {"system": "CPT", "release": "CPT licensed file cpt.tsv", "codes": 3, "modifiers": 0}
    with Session(engine) as s:
        (c,) = lookup(s, "99213")
        assert c.official == "Licensed descriptor text for 99213" and c.short == "LICENSED SHORT 99213"
        assert c.release == "CPT licensed file cpt.tsv" and c.plain
        assert lookup(s, "62310") == []  # the sample is gone
        rel = s.exec(select(CodeRelease).where(CodeRelease.system == "CPT")).scalars().all()
        assert [(r.release, r.sample, r.code_count) for r in rel] == [("CPT licensed file cpt.tsv", False, 3)]
    assert [h.code for h in search_codes(engine, "licensed descriptor pla")] == ["0001U"]


def test_licensed_cpt_survives_a_reload(engine, tmp_path, data):
    path = tmp_path / "cpt.csv"
    path.write_text("99213,Licensed text\n99214,More licensed text\n")
    import_file(engine, "cpt", path, release="CPT 2026 licensed")
    summary = load_codes(engine, directory=data)
    cpt = next(r for r in summary["releases"] if r["system"] == "CPT")
    assert "CPT 2026 licensed" in cpt["skipped"]
    with Session(engine) as s:
        assert lookup(s, "99214")[0].release == "CPT 2026 licensed"
        assert lookup(s, "62310") == []


@pytest.mark.parametrize(
    "content,where",
    [
        ("99213\tGood\n6231\tFour digits only\n", "line 2, column 1"),
        ("CPT Code\tLong Descriptor\n99213\tGood\n99214\t\n", "line 3, column 2"),
        ("99213,Good\n99214\n", "line 2, column 2"),
        ("99213,Good\n99213,Again\n", "line 2, column 1"),
        ("Code\tSomething\n99213\tx\n", "line 1, column 1"),
        ('99213,"unterminated\n', "line"),
        ("CPT Code\tDescriptor\tDeleted date\n99213\tx\t31/31/2020\n", "line 2, column 3"),
    ],
)
def test_malformed_cpt_names_line_and_column_and_changes_nothing(engine, tmp_path, content, where):
    before = snapshot(engine)
    path = tmp_path / "bad.tsv"
    path.write_text(content)
    with pytest.raises(CodeDataError) as err:
        import_file(engine, "cpt", path)
    assert str(path) in str(err.value) and where in str(err.value)
    assert snapshot(engine) == before


def test_hcpcs_fixed_width_file(engine, tmp_path):
    path = tmp_path / "HCPC2026_ANWEB.txt"
    path.write_text(
        "\n".join(
            [
                hcpcs_record("J3301", 100, "3", "Injection, triamcinolone acetonide, not otherwise specified, 10 mg", "Triamcinolone acet inj NOS"),
                hcpcs_record("G0439", 100, "3", "Annual wellness visit, includes a personalized prevention plan of service (pps),", "Ppps, subseq visit"),
                hcpcs_record("G0439", 200, "4", "subsequent visit"),
                hcpcs_record("LT", 100, "7", "Left side (used to identify procedures performed on the left side of the body)", "Left side"),
            ]
        )
        + "\n"
    )
    summary = import_file(engine, "hcpcs", path)
    assert summary["release"] == "HCPCS Level II 2026 (HCPC2026_ANWEB.txt)"
    assert (summary["codes"], summary["modifiers"]) == (2, 1)
    with Session(engine) as s:
        g = lookup(s, "G0439", "HCPCS")[0]
        assert g.official.endswith("plan of service (pps), subsequent visit") and g.short == "Ppps, subseq visit"
        assert lookup(s, "J3301")[0].release == summary["release"]
        assert lookup(s, "LT")[0].official.startswith("Left side (used")
        assert lookup(s, "25")[0].release == "Modifiers (team wording)"  # other modifiers untouched
        assert lookup(s, "G0438", "HCPCS") == []  # the sample was replaced


def test_hcpcs_csv_export_with_dates(engine, tmp_path):
    path = tmp_path / "hcpcs.csv"
    path.write_text(
        "HCPC,SEQNUM,RECID,LONG DESCRIPTION,SHORT DESCRIPTION,ADD DT,TERM DT\n"
        'J3301,00100,3,"Injection, triamcinolone acetonide, not otherwise specified, 10 mg",Triamcinolone acet inj NOS,19950101,\n'
        'G0202,00100,3,"Screening mammography, producing direct digital image, bilateral, all views",Scr mammo bi incl cad,20020101,20161231\n'
        "GA,00100,7,Waiver of liability statement issued as required by payer policy,Waiver of liability,20020101,\n"
    )
    import_file(engine, "hcpcs", path)
    with Session(engine) as s:
        g = lookup(s, "G0202")[0]
        assert (g.status, g.deleted_on, g.billable) == ("deleted", "2016-12-31", False)
        j = lookup(s, "J3301")[0]
        assert (j.status, j.effective) == ("valid", "1995-01-01")
        assert lookup(s, "GA")[0].system == "MOD"


@pytest.mark.parametrize(
    "lines,where",
    [
        ([hcpcs_record("J3301", 100, "3", "ok"), hcpcs_record("J3301", 200, "5", "bad record id")], "line 2, column 11"),
        ([hcpcs_record("J330", 100, "3", "short code")], "line 1, column 1"),
        ([hcpcs_record("J3301", 100, "3", "ok"), "G0439 01"], "line 2, column 9"),
        ([hcpcs_record("G0439", 200, "4", "continuation first")], "line 1, column 11"),
    ],
)
def test_malformed_hcpcs_changes_nothing(engine, tmp_path, lines, where):
    before = snapshot(engine)
    path = tmp_path / "HCPC2026_ANWEB.txt"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(CodeDataError) as err:
        import_file(engine, "hcpcs", path)
    assert str(path) in str(err.value) and where in str(err.value), str(err.value)
    assert snapshot(engine) == before


def test_missing_file_and_unknown_system(engine, tmp_path):
    with pytest.raises(CodeDataError, match="cannot read"):
        import_file(engine, "cpt", tmp_path / "nope.tsv")
    (tmp_path / "x.tsv").write_text("99213\tx\n")
    with pytest.raises(CodeDataError, match="cpt or hcpcs"):
        import_file(engine, "loinc", tmp_path / "x.tsv")
