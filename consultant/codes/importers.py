"""Import a customer's licensed CPT file or the CMS HCPCS Level II file.

    import_file(engine, "cpt", "CPT2026_long.tsv")
    import_file(engine, "hcpcs", "HCPC2026_ANWEB.txt")

The whole file is read and checked before the database is touched; any
problem raises `CodeDataError` naming the file, the line and the column, and
the tables stay as they were. The rows are then written in one transaction
that replaces every earlier CPT (or HCPCS) release, the team sample included.
Accepted layouts are documented in codes_db/SOURCES.md:

CPT (tab- or comma-separated, header row optional)
    code, long descriptor[, short descriptor]; with a header the columns are
    found by name (code / CPT code; long descriptor / descriptor /
    description; short descriptor; optional effective date and deleted date).

HCPCS Level II
    * the CMS fixed-width record file (HCPCyyyy_ANWEB*.txt): positions 1-5 code,
      6-10 sequence number, 11 record id (3/4 procedure first/continuation
      line, 7/8 modifier first/continuation line), 12-91 long description
      part, 92-119 short description; later positions are not read;
    * its CSV/TSV export with a header row: HCPC, LONG DESCRIPTION, SHORT
      DESCRIPTION, ADD DT, TERM DT (SEQNUM, RECID, ACT EFF DT optional;
      split long descriptions are joined in SEQNUM order).
    Two-character codes are modifiers and go to the MOD system.
"""

from __future__ import annotations

import csv
import io
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

from sqlalchemy import delete, func, select, update
from sqlalchemy.engine import Engine

from consultant.codes import search, sources
from consultant.codes.plain import plain_for_rows
from consultant.errors import CodeDataError
from consultant.models import Code, CodeRelease

CPT_CODE = re.compile(r"^\d{4}[0-9A-Z]$")
HCPCS_CODE = re.compile(r"^[A-Z]\d{4}$")
MODIFIER_CODE = re.compile(r"^[A-Z0-9]{2}$")

CPT_COLUMNS = {
    "code": ("CODE", "CPTCODE", "CPT", "HCPCS", "CPTCODES"),
    "long": ("LONGDESCRIPTOR", "LONGDESCRIPTION", "DESCRIPTOR", "DESCRIPTION", "LONG"),
    "short": ("SHORTDESCRIPTOR", "SHORTDESCRIPTION", "SHORT"),
    "effective": ("EFFECTIVEDATE", "EFFECTIVE", "ADDDATE", "ADDDT"),
    "deleted": ("DELETEDDATE", "DELETED", "DELETEDATE", "TERMDATE", "TERMDT"),
}
HCPCS_COLUMNS = {
    "code": ("HCPC", "HCPCS", "CODE", "HCPCSCODE"),
    "long": ("LONGDESCRIPTION", "LONGDESC", "DESCRIPTION"),
    "short": ("SHORTDESCRIPTION", "SHORTDESC"),
    "seq": ("SEQNUM", "SEQUENCENUMBER", "SEQ"),
    "recid": ("RECID", "RECORDID", "RECORDIDENTIFICATION"),
    "effective": ("ADDDT", "ADDDATE", "ACTEFFDT"),
    "deleted": ("TERMDT", "TERMDATE"),
}


@dataclass
class Parsed:
    rows: dict[str, dict] = field(default_factory=dict)  # code -> fields
    first_line: dict[str, int] = field(default_factory=dict)


def _fail(path: Path, line: int, column: int, problem: str) -> CodeDataError:
    return CodeDataError(f"{path}, line {line}, column {column}: {problem}")


def _key(name: str) -> str:
    return re.sub(r"[^A-Z0-9]", "", name.upper())


def _date(value: str, path: Path, line: int, column: int) -> str | None:
    value = value.strip()
    if not value:
        return None
    for fmt in ("%Y%m%d", "%Y-%m-%d", "%m/%d/%Y", "%m/%d/%y"):
        try:
            return datetime.strptime(value, fmt).date().isoformat()
        except ValueError:
            continue
    raise _fail(path, line, column, f"{value!r} is not a date (YYYYMMDD, YYYY-MM-DD or MM/DD/YYYY)")


def _read_text(path: Path) -> str:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise CodeDataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    for enc in ("utf-8-sig", "cp1252"):
        try:
            return raw.decode(enc)
        except UnicodeDecodeError:
            continue
    raise CodeDataError(f"{path}: not UTF-8 or Windows-1252 text")


def _records(path: Path, text_: str) -> list[tuple[int, list[str]]]:
    """(line number, fields) of a tab- or comma-separated file; blank lines skipped."""
    first = next((ln for ln in text_.splitlines() if ln.strip()), "")
    delimiter = "\t" if "\t" in first else ","
    reader = csv.reader(io.StringIO(text_, newline=""), delimiter=delimiter, strict=True)
    out = []
    try:
        for fields in reader:
            if any(f.strip() for f in fields):
                out.append((reader.line_num, fields))
    except csv.Error as exc:
        kind = "tab" if delimiter == "\t" else "comma"
        raise _fail(path, reader.line_num, 1, f"unreadable {kind}-separated line ({exc})") from exc
    return out


def _header_map(fields: list[str], wanted: dict[str, tuple[str, ...]]) -> dict[str, int]:
    keys = [_key(f) for f in fields]
    found = {}
    for name, aliases in wanted.items():
        for alias in aliases:
            if alias in keys:
                found[name] = keys.index(alias)
                break
    return found


def _get(fields: list[str], idx: int | None) -> str:
    return fields[idx].strip() if idx is not None and idx < len(fields) else ""


def parse_cpt(path: Path) -> Parsed:
    """Check and read a CPT code/descriptor file."""
    text_ = _read_text(path)
    records = _records(path, text_)
    if not records:
        raise CodeDataError(f"{path}: empty file")
    cols = {"code": 0, "long": 1, "short": 2}
    line0, first = records[0]
    if not CPT_CODE.match(first[0].strip().upper()):
        cols = _header_map(first, CPT_COLUMNS)
        for needed, label in (("code", "code"), ("long", "descriptor")):
            if needed not in cols:
                raise _fail(path, line0, 1, f"no {label} column in the header (found: {', '.join(first)})")
        records = records[1:]
    out = Parsed()
    for line, fields in records:
        code = _get(fields, cols["code"]).upper()
        if not CPT_CODE.match(code):
            raise _fail(path, line, cols["code"] + 1, f"{code!r} is not a CPT code (four digits and a digit or letter)")
        if cols["long"] >= len(fields):
            raise _fail(path, line, len(fields) + 1, "missing descriptor")
        desc = " ".join(_get(fields, cols["long"]).split())
        if not desc:
            raise _fail(path, line, cols["long"] + 1, "empty descriptor")
        if code in out.rows:
            raise _fail(path, line, cols["code"] + 1, f"{code} already given on line {out.first_line[code]}")
        eff_i, del_i = cols.get("effective"), cols.get("deleted")
        out.rows[code] = {
            "long": desc,
            "short": " ".join(_get(fields, cols.get("short")).split()),
            "effective": _date(_get(fields, eff_i), path, line, (eff_i or 0) + 1),
            "deleted": _date(_get(fields, del_i), path, line, (del_i or 0) + 1),
        }
        out.first_line[code] = line
    return out


def _hcpcs_fixed(path: Path, text_: str) -> Parsed:
    parts: dict[str, list[tuple[int, str]]] = {}
    out = Parsed()
    for line, raw in enumerate(text_.splitlines(), start=1):
        if not raw.strip():
            continue
        if len(raw) < 12:
            raise _fail(path, line, len(raw) + 1, "record too short for the HCPCS layout (needs at least 12 characters)")
        code = raw[0:5].strip().upper()
        seq, recid = raw[5:10].strip(), raw[10]
        if recid not in "3478":
            raise _fail(path, line, 11, f"record id {recid!r} is not 3, 4, 7 or 8")
        pattern = MODIFIER_CODE if recid in "78" else HCPCS_CODE
        if not pattern.match(code):
            kind = "modifier" if recid in "78" else "HCPCS Level II code (a letter and four digits)"
            raise _fail(path, line, 1, f"{code!r} is not a {kind}")
        if not seq.isdigit():
            raise _fail(path, line, 6, f"sequence number {seq!r} is not a number")
        parts.setdefault(code, []).append((int(seq), raw[11:91].strip()))
        if recid in "37":
            if code in out.rows:
                raise _fail(path, line, 1, f"{code} starts a second time (first on line {out.first_line[code]})")
            out.rows[code] = {"short": raw[91:119].strip(), "effective": None, "deleted": None}
            out.first_line[code] = line
        elif code not in out.rows:
            raise _fail(path, line, 11, f"continuation line for {code} before its first line")
    for code, pieces in parts.items():
        out.rows[code]["long"] = " ".join(" ".join(p for _, p in sorted(pieces)).split())
    return out


def _hcpcs_delimited(path: Path, records: list[tuple[int, list[str]]]) -> Parsed:
    line0, header = records[0]
    cols = _header_map(header, HCPCS_COLUMNS)
    for needed, label in (("code", "HCPC"), ("long", "LONG DESCRIPTION")):
        if needed not in cols:
            raise _fail(path, line0, 1, f"no {label} column in the header (found: {', '.join(header)})")
    pieces: dict[str, list[tuple[int, str]]] = {}
    out = Parsed()
    for line, fields in records[1:]:
        code = _get(fields, cols["code"]).upper()
        recid = _get(fields, cols.get("recid"))
        modifier = recid in ("7", "8") or (not recid and len(code) == 2)
        if not (MODIFIER_CODE if modifier else HCPCS_CODE).match(code):
            raise _fail(path, line, cols["code"] + 1, f"{code!r} is not a HCPCS Level II code or modifier")
        seq_text = _get(fields, cols.get("seq")) or "0"
        if not seq_text.isdigit():
            raise _fail(path, line, cols["seq"] + 1, f"sequence number {seq_text!r} is not a number")
        pieces.setdefault(code, []).append((int(seq_text), _get(fields, cols["long"])))
        continuation = recid in ("4", "8")
        if code in out.rows and not continuation and "seq" not in cols:
            raise _fail(path, line, cols["code"] + 1, f"{code} already given on line {out.first_line[code]}")
        if code not in out.rows:
            eff_i, del_i = cols.get("effective"), cols.get("deleted")
            out.rows[code] = {
                "short": _get(fields, cols.get("short")),
                "effective": _date(_get(fields, eff_i), path, line, (eff_i or 0) + 1),
                "deleted": _date(_get(fields, del_i), path, line, (del_i or 0) + 1),
            }
            out.first_line[code] = line
    for code, parts in pieces.items():
        long = " ".join(" ".join(p for _, p in sorted(parts)).split())
        if not long:
            raise _fail(path, out.first_line[code], cols["long"] + 1, f"empty long description for {code}")
        out.rows[code]["long"] = long
    return out


def parse_hcpcs(path: Path) -> Parsed:
    """Check and read a CMS HCPCS file (fixed-width or its CSV/TSV export)."""
    text_ = _read_text(path)
    first = next((ln for ln in text_.splitlines() if ln.strip()), "")
    if not first:
        raise CodeDataError(f"{path}: empty file")
    if "\t" in first or "," in first and _key(first.split(",")[0]) in HCPCS_COLUMNS["code"]:
        return _hcpcs_delimited(path, _records(path, text_))
    return _hcpcs_fixed(path, text_)


def _dataset(system: str, release: str, source: str, parsed: Parsed, codes: list[str]) -> sources.Dataset:
    today = date.today().isoformat()
    ds = sources.Dataset(system, release, source, False)
    for code in codes:
        r = parsed.rows[code]
        gone = bool(r.get("deleted")) and r["deleted"] <= today
        notes = {"terminates": r["deleted"]} if r.get("deleted") and not gone else {}
        ds.rows.append(
            sources._row(  # noqa: SLF001 - same package
                system,
                code,
                code,
                r["long"],
                release,
                kind="modifier" if system == sources.MOD else "code",
                short=r.get("short", ""),
                billable=not gone and system != sources.MOD,
                status="deleted" if gone else "valid",
                effective=r.get("effective"),
                deleted_on=r["deleted"] if gone else None,
                notes=notes,
            )
        )
    plain_for_rows(system, ds.rows)
    return ds


def _recount(conn, system: str) -> None:
    """Refresh code_count/billable_count of every release of `system`."""
    code_t, rel_t = Code.__table__, CodeRelease.__table__
    totals: dict[str, list[int]] = {}
    rows = conn.execute(
        select(code_t.c.release, code_t.c.billable, func.count()).where(code_t.c.system == system).group_by(
            code_t.c.release, code_t.c.billable
        )
    ).all()
    for rel, billable, n in rows:
        t = totals.setdefault(rel, [0, 0])
        t[0] += n
        t[1] += n if billable else 0
    for rel, (n, billable) in totals.items():
        conn.execute(
            update(rel_t).where(rel_t.c.system == system, rel_t.c.release == rel).values(code_count=n, billable_count=billable)
        )


def import_file(engine: Engine, system: str, path: str | Path, *, release: str | None = None) -> dict:
    """Import a licensed CPT file or a CMS HCPCS file; returns a summary.

    Raises CodeDataError (file, line, column) before writing anything when
    the file is malformed.
    """
    from consultant.codes.loader import replace_dataset

    path = Path(path)
    kind = system.lower().replace("-", "").replace(" ", "")
    if kind in ("cpt", "cpt4"):
        parsed = parse_cpt(path)
        main_system = sources.CPT
        release = release or f"CPT licensed file {path.name}"
    elif kind in ("hcpcs", "hcpcsii", "hcpcslevelii"):
        parsed = parse_hcpcs(path)
        main_system = sources.HCPCS
        year = re.search(r"(20\d\d)", path.name)
        release = release or f"HCPCS Level II {year.group(1) + ' ' if year else ''}({path.name})"
    else:
        raise CodeDataError(f"{path}: cannot import system {system!r} (cpt or hcpcs)")
    if not parsed.rows:
        raise CodeDataError(f"{path}: no codes found")
    release = release[:80]
    main_codes = sorted(c for c in parsed.rows if len(c) == 5)
    mod_codes = sorted(c for c in parsed.rows if len(c) == 2)
    summary = {"system": main_system, "release": release, "codes": len(main_codes), "modifiers": len(mod_codes)}
    with engine.begin() as conn:
        ds = _dataset(main_system, release, f"imported from {path.name}", parsed, main_codes)
        replace_dataset(conn, ds, wipe_system=True)
        if mod_codes:
            mod_release = release[:70] + " modifiers"
            mods = _dataset(sources.MOD, mod_release, f"imported from {path.name}", parsed, mod_codes)
            code_t = Code.__table__
            for start in range(0, len(mod_codes), 500):
                part = mod_codes[start : start + 500]
                stmt = select(code_t.c.id).where(code_t.c.system == sources.MOD, code_t.c.code.in_(part))
                ids = [r[0] for r in conn.execute(stmt)]
                if ids:
                    search.forget_ids(conn, ids)
                    conn.execute(delete(code_t).where(code_t.c.id.in_(ids)))
            replace_dataset(conn, mods, wipe_system=False)
            _recount(conn, sources.MOD)
    return summary
