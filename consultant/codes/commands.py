"""The `consultant codes ...` commands: load, show, search, stats, import.

    add_codes_parser(subparsers)        adds "codes" and its sub-commands to an argparse parser
    run_codes_command(args, engine)     runs one; prints to stdout, returns the exit code

`consultant.cli` owns the top-level parser and the engine and calls these
two. Exit codes: 0 done, 1 not found (show) or bad data (import).
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from sqlmodel import Session

from consultant.codes.lookup import billable_children, display_code, get_code, lookup, near_codes
from consultant.codes.notes import NOTE_LABELS, expand_notes
from consultant.errors import CodeDataError
from consultant.models import Code, CodeRelease

SHOW_CHILDREN = 40


def add_codes_parser(subparsers) -> argparse.ArgumentParser:
    """Add `codes` with sub-commands load, show, search, stats, import."""
    codes = subparsers.add_parser("codes", help="the code database: load, show, search, stats, import")
    sub = codes.add_subparsers(dest="codes_command", required=True)
    sub.add_parser("load", help="load or refresh every shipped code set (idempotent)")
    show = sub.add_parser("show", help="show one code in any form (e119, E11.9, 62310, J3301)")
    show.add_argument("code")
    show.add_argument("--system", default=None, help="ICD-10-CM, ICD-10-PCS, CPT, HCPCS or MOD")
    show.add_argument("--json", action="store_true", help="print JSON")
    search = sub.add_parser("search", help="full-text search over descriptions")
    search.add_argument("text", nargs="+")
    search.add_argument("--system", default=None)
    search.add_argument("--limit", type=int, default=10)
    search.add_argument("--json", action="store_true", help="print JSON")
    sub.add_parser("stats", help="counts per system and release")
    imp = sub.add_parser("import", help="import a licensed CPT file or the CMS HCPCS file")
    imp.add_argument("--system", required=True, choices=["cpt", "hcpcs"])
    imp.add_argument("--release", default=None, help="release name to record (default: from the file name)")
    imp.add_argument("file")
    return codes


def run_codes_command(args: argparse.Namespace, engine: Engine) -> int:
    """Run the `codes` sub-command in `args`; returns the process exit code."""
    handlers = {"load": _load, "show": _show, "search": _search, "stats": _stats, "import": _import}
    return handlers[args.codes_command](args, engine)


# ---------------------------------------------------------------- load / import


def _load(args, engine: Engine) -> int:
    from consultant.codes.loader import load_codes

    summary = load_codes(engine, progress=True)
    for rel in summary["releases"]:
        note = f"  ({rel['skipped']})" if rel["skipped"] else ""
        print(f"{rel['system']:<11} {rel['release']:<45} {rel['codes']:>7,} codes {rel['billable']:>7,} billable{note}")
    print(f"{summary['codes']:,} codes in the database; loaded in {summary['seconds']:.1f} s")
    return 0


def _import(args, engine: Engine) -> int:
    from consultant.codes.importers import import_file

    try:
        summary = import_file(engine, args.system, args.file, release=args.release)
    except CodeDataError as exc:
        print(f"import failed, nothing changed: {exc}", file=sys.stderr)
        return 1
    mods = f" and {summary['modifiers']:,} modifiers" if summary["modifiers"] else ""
    print(f"imported {summary['codes']:,} {summary['system']} codes{mods} as release {summary['release']!r}")
    return 0


# ---------------------------------------------------------------- show


def _fiscal_year(release: str) -> str:
    m = re.search(r"FY\s?(\d{4})", release)
    return f"FY{m.group(1)}" if m else release


def code_record(session: Session, code: Code) -> dict:
    """Everything `codes show --json` prints about one code."""
    notes = code.notes or {}
    if code.system == "ICD-10-CM":
        notes = expand_notes(notes, lambda c: (get_code(session, "ICD-10-CM", c) or Code(official="")).notes or {})
    replaced = []
    for r in code.replaced_by or []:
        target = get_code(session, code.system, r)
        replaced.append(
            {"code": display_code(code.system, r), "official": target.official if target else "", "plain": target.plain if target else ""}
        )
    record = {
        "code": code.display,
        "canonical": code.code,
        "system": code.system,
        "kind": code.kind,
        "status": code.status,
        "billable": code.billable,
        "official": code.official,
        "short": code.short,
        "plain": code.plain,
        "release": code.release,
        "change": code.change,
        "effective": code.effective,
        "deleted_on": code.deleted_on,
        "replaced_by": [r["code"] for r in replaced],
        "replacements": replaced,
        "parent": display_code(code.system, code.parent) if code.parent and code.system == "ICD-10-CM" else code.parent,
        "chapter": code.chapter,
        "block": code.block,
        "notes": notes,
    }
    if not code.billable and code.kind in ("chapter", "block", "category", "code") and code.system == "ICD-10-CM":
        kids = billable_children(session, code.code, code.system)
        record["billable_codes"] = [k.display for k in kids]
    return record


def _explain_status(rec: dict) -> list[str]:
    lines = []
    fy = _fiscal_year(rec["release"])
    repl = rec["replacements"]
    if rec["status"] == "deleted":
        if rec["kind"] in ("category", "code") and rec["system"] == "ICD-10-CM" and rec.get("billable_codes"):
            lines.append(
                f"{rec['code']} is no longer a billable code since {fy} (effective {rec['deleted_on']}): "
                "it is now a heading with more specific codes under it."
            )
        else:
            lines.append(f"{rec['code']} was deleted on {rec['deleted_on']}; it is not valid for dates of service after that.")
        if repl:
            lines.append("Use instead:")
            lines += [f"  {r['code']:<9} {r['official']}" for r in repl]
    elif not rec["billable"] and rec["kind"] != "modifier":
        lines.append(f"{rec['code']} is a heading, not a billable code.")
    if rec.get("change") == "new":
        lines.append(f"New in {fy}.")
    elif rec.get("change") == "revised":
        prev = rec["notes"].get("history", {}).get("previous")
        lines.append(f"Title revised in {fy}" + (f" (was: {prev})." if prev else "."))
    return lines


def _note_lines(notes: dict) -> list[str]:
    lines = []
    for kind, label in NOTE_LABELS.items():
        own = notes.get(kind) or []
        if own:
            lines.append(f"  {label}: " + "; ".join(own))
    for inh in notes.get("inherited", []):
        for kind, label in NOTE_LABELS.items():
            if inh.get(kind):
                lines.append(f"  {label} (from {inh['from']}): " + "; ".join(inh[kind]))
    if notes.get("seventh"):
        s = notes["seventh"]
        lines.append(f"  7th character {s['char']}: {s['meaning']} (defined at {s['from']})")
    if notes.get("sevenChrDef_from"):
        lines.append(f"  Needs a 7th character (table at {notes['sevenChrDef_from']})")
    return lines


def _print_record(rec: dict) -> None:
    print(f"{rec['code']}  {rec['system']}  [{rec['release']}]")
    status = rec["status"] + (", billable" if rec["billable"] else ", not billable")
    print(f"Status:   {status}")
    print(f"Official: {rec['official']}")
    print(f"Plain:    {rec['plain']}")
    for line in _explain_status(rec):
        print(line)
    kids = rec.get("billable_codes")
    if kids and rec["status"] != "deleted":
        shown = ", ".join(kids[:SHOW_CHILDREN])
        more = f" ... and {len(kids) - SHOW_CHILDREN} more" if len(kids) > SHOW_CHILDREN else ""
        print(f"Billable codes under it ({len(kids)}): {shown}{more}")
    elif kids and not rec["replacements"]:
        print(f"Billable codes under it ({len(kids)}): " + ", ".join(kids[:SHOW_CHILDREN]))
    note_lines = _note_lines(rec["notes"])
    if note_lines:
        print("Notes:")
        for line in note_lines:
            print(line)


def _releases(session: Session) -> list[str]:
    return [f"{s} {r}" if not r.startswith(s) else r for s, r in session.exec(select(CodeRelease.system, CodeRelease.release))]


def _show(args, engine: Engine) -> int:
    with Session(engine) as session:
        found = lookup(session, args.code, args.system)
        if not found:
            near = near_codes(session, args.code, limit=5, system=args.system)
            releases = _releases(session)
            if args.json:
                print(
                    json.dumps(
                        {
                            "query": args.code,
                            "status": "not_found",
                            "releases": releases,
                            "near": [{"code": c.display, "system": c.system, "official": c.official} for c in near],
                        },
                        indent=2,
                    )
                )
            else:
                print(f"{args.code} is not a code in any loaded set ({'; '.join(releases)}).")
                if near:
                    print("Did you mean:")
                    for c in near:
                        print(f"  {c.display:<9} {c.system:<10} {c.official}")
            return 1
        records = [code_record(session, c) for c in found]
    if args.json:
        out = dict(records[0])
        if len(records) > 1:
            out["also"] = records[1:]
        print(json.dumps(out, indent=2, ensure_ascii=False))
    else:
        for i, rec in enumerate(records):
            if i:
                print("\nThe same characters are also a code in another system:\n")
            _print_record(rec)
    return 0


# ---------------------------------------------------------------- search / stats


def _search(args, engine: Engine) -> int:
    from consultant.codes.search import search_codes

    hits = search_codes(engine, " ".join(args.text), limit=args.limit, system=args.system)
    if args.json:
        print(json.dumps([h.__dict__ for h in hits], indent=2, ensure_ascii=False))
        return 0
    if not hits:
        print("no matching codes")
        return 0
    for h in hits:
        flag = "" if h.status == "valid" else f" [{h.status}]"
        flag += "" if h.billable or h.status != "valid" else " [heading]"
        print(f"{h.display:<9} {h.system:<10} {h.official}{flag}")
        if h.plain and h.plain != h.official:
            print(f"{'':<21}{h.plain}")
    return 0


def stats(engine: Engine) -> list[dict]:
    """Per system and release: codes, billable, deleted, new, revised, sample flag."""
    c = Code.__table__
    with engine.connect() as conn:
        releases = conn.execute(
            select(CodeRelease.system, CodeRelease.release, CodeRelease.sample, CodeRelease.loaded_at).order_by(
                CodeRelease.system, CodeRelease.release
            )
        ).all()
        rows = conn.execute(
            select(c.c.system, c.c.release, c.c.billable, c.c.status, c.c.change, func.count()).group_by(
                c.c.system, c.c.release, c.c.billable, c.c.status, c.c.change
            )
        ).all()
    out = []
    for system, release, sample, loaded_at in releases:
        mine = [r for r in rows if r[0] == system and r[1] == release]
        out.append(
            {
                "system": system,
                "release": release,
                "sample": bool(sample),
                "codes": sum(r[5] for r in mine),
                "billable": sum(r[5] for r in mine if r[2]),
                "deleted": sum(r[5] for r in mine if r[3] == "deleted"),
                "new": sum(r[5] for r in mine if r[4] == "new"),
                "revised": sum(r[5] for r in mine if r[4] == "revised"),
                "loaded_at": str(loaded_at),
            }
        )
    return out


def _stats(args, engine: Engine) -> int:
    table = stats(engine)
    if not table:
        print("no code sets loaded; run `consultant codes load`")
        return 0
    print(f"{'system':<11} {'release':<46} {'codes':>8} {'billable':>8} {'deleted':>7} {'new':>5} {'revised':>7}")
    for r in table:
        sample = " (sample)" if r["sample"] else ""
        print(
            f"{r['system']:<11} {(r['release'] + sample)[:46]:<46} {r['codes']:>8,} {r['billable']:>8,}"
            f" {r['deleted']:>7,} {r['new']:>5,} {r['revised']:>7,}"
        )
    return 0
