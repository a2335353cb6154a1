"""`consultant codes ...` sub-commands (consultant.codes.commands)."""

from __future__ import annotations

import argparse
import json

import pytest

from consultant.codes.commands import add_codes_parser, run_codes_command
from consultant.codes.loader import load_codes
from consultant.db import make_engine
from tests.test_codes_support import fresh_sqlite, loaded_sqlite_url, mini_codes_db


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="consultant")
    add_codes_parser(parser.add_subparsers(dest="command"))
    return parser.parse_args(["codes", *argv])


@pytest.fixture(scope="module")
def engine():
    eng = make_engine(loaded_sqlite_url())
    yield eng
    eng.dispose()


def run(engine, capsys, *argv) -> tuple[int, str]:
    code = run_codes_command(parse(*argv), engine)
    return code, capsys.readouterr().out


def test_show_g35_is_no_longer_billable(engine, capsys):
    code, out = run(engine, capsys, "show", "G35")
    assert code == 0
    assert "no longer a billable code since FY2026" in out
    assert "G35.A" in out and "G35.B0" in out and "G35.D" in out


def test_show_62310_deleted_2017(engine, capsys):
    code, out = run(engine, capsys, "show", "62310")
    assert code == 0
    assert "deleted on 2017-01-01" in out and "62320" in out and "62321" in out and "team sample" in out


def test_show_json_fields(engine, capsys):
    code, out = run(engine, capsys, "show", "e119", "--json")
    data = json.loads(out)
    assert code == 0
    for key in ("code", "system", "status", "official", "plain", "billable", "release", "replaced_by", "notes"):
        assert key in data
    assert (data["code"], data["system"], data["status"], data["billable"]) == ("E11.9", "ICD-10-CM", "valid", True)
    assert data["release"] == "ICD-10-CM FY2026 (April 1, 2026)"
    # chapter notes come expanded, not as references
    chapter = data["notes"]["inherited"][0]
    assert chapter["from"] == "Chapter 4" and chapter["excludes1"]
    code, out = run(engine, capsys, "show", "G35", "--json")
    data = json.loads(out)
    assert data["status"] == "deleted" and data["replaced_by"][0] == "G35.A" and data["deleted_on"] == "2025-10-01"


def test_show_header_lists_billable_codes(engine, capsys):
    code, out = run(engine, capsys, "show", "R10.2")
    assert code == 0 and "R10.20" in out and "R10.24" in out
    code, out = run(engine, capsys, "show", "E11")
    assert "is a heading, not a billable code" in out and "Billable codes under it (87)" in out and "E11.00" in out and "more" in out


def test_show_not_found_offers_near_matches(engine, capsys):
    code, out = run(engine, capsys, "show", "E11.99")
    assert code == 1
    assert "E11.99 is not a code in any loaded set" in out and "ICD-10-CM FY2026" in out and "Did you mean" in out
    code, out = run(engine, capsys, "show", "I1O", "--json")
    data = json.loads(out)
    assert code == 1 and data["status"] == "not_found" and data["near"][0]["code"] == "I10"


def test_show_pcs_names_its_release(engine, capsys):
    code, out = run(engine, capsys, "show", "0DTJ4ZZ")
    assert code == 0 and "ICD-10-PCS FY2025 (section 0)" in out


def test_stats(engine, capsys):
    code, out = run(engine, capsys, "stats")
    assert code == 0
    line = next(ln for ln in out.splitlines() if ln.startswith("ICD-10-CM"))
    assert "FY2026" in line and "74,719" in line
    assert "ICD-10-PCS FY2024" in out and "(sample)" in out


def test_search(engine, capsys):
    code, out = run(engine, capsys, "search", "high", "blood", "pressure", "--json")
    hits = json.loads(out)
    assert code == 0 and hits[0]["display"] == "I10"
    code, out = run(engine, capsys, "search", "kidney", "stone")
    assert out.startswith("N20.0")


def test_load_and_import(tmp_path, capsys):
    eng = fresh_sqlite(tmp_path)
    data = mini_codes_db(tmp_path / "db", categories=("E11",), pcs_per_release=5)
    load_codes(eng, directory=data)
    bad = tmp_path / "bad.tsv"
    bad.write_text("99213\tok\nabc\tnot a code\n")
    code = run_codes_command(parse("import", "--system", "cpt", str(bad)), eng)
    captured = capsys.readouterr()
    assert code == 1 and "line 2, column 1" in captured.err and "nothing changed" in captured.err
    good = tmp_path / "good.tsv"
    good.write_text("99213\tok\n")
    code, out = run(eng, capsys, "import", "--system", "cpt", str(good))
    assert code == 0 and "imported 1 CPT codes" in out
    eng.dispose()
