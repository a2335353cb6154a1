"""The code database: every code set, loaded, looked up, searched and explained.

Importing this package does nothing; import the module you need.

Data (shipped in codes_db/, described in codes_db/SOURCES.md)
    ICD-10-CM FY2026 (April 1, 2026), with FY2025 -> FY2026 history
    ICD-10-PCS FY2025 section 0 over FY2024 (all sections)
    CPT, HCPCS Level II and modifiers: team-written samples, replaced by imports

Modules and their public functions
    loader      load_codes(engine, *, progress=False, directory=None) -> dict
                ensure_codes_loaded(engine, *, progress=False, directory=None) -> dict | None
                missing_releases(engine, directory=None) -> list[(system, release)]
    lookup      normalize_code(text) -> str
                display_code(system, code) -> str
                system_name(alias) -> str | None
                lookup(session, text, system=None) -> list[Code]
                get_code(session, system, code) -> Code | None
                near_codes(session, text, limit=5, system=None) -> list[Code]
                billable_children(session, code, system="ICD-10-CM", limit=None) -> list[Code]
                children(session, code, system="ICD-10-CM") -> list[Code]
    search      search_codes(engine, text, *, limit=10, system=None) -> list[SearchHit]
                rebuild_index(engine, *, full=False) -> int
    importers   import_file(engine, system: "cpt" | "hcpcs", path, *, release=None) -> dict
    plain       describe(system, official, *, code, kind, billable, notes, group) -> str
                lay(text) -> str                      (the glossary alone)
    notes       expand_notes(notes, lookup_notes) -> dict
                own_and_inherited(notes, kind) -> list[str]
    commands    add_codes_parser(subparsers), run_codes_command(args, engine) -> int
    sources     data_dir(), read_cm(), read_pcs(), read_samples(), shipped_releases()
    examples    python -m consultant.codes.examples > docs/PLAIN_EXAMPLES.md

The `code` table row (consultant.models.Code)
    system       ICD-10-CM, ICD-10-PCS, CPT, HCPCS, MOD
    code         canonical: upper case, no dot (E119, S52502A, 62310); chapters are
                 CH1..CH22, blocks A00-A09 (T07-T07 for a one-category block)
    display      as written (E11.9, S52.502A, Chapter 4)
    kind         chapter, block, category, code, modifier
    billable     valid for billing now (headers, deleted codes and modifiers: false)
    status       valid or deleted; deleted_on, replaced_by (canonical codes)
    change       new or revised in this release
    notes        tabular notes, own and inherited (see consultant.codes.notes);
                 CPT/HCPCS/MOD samples carry {"sample": true}
    plain        plain-language description, for every code
    release      the release the row came from (also in code_release)
"""

# The most used functions, importable from the package itself (not `lookup`:
# that name is the module consultant.codes.lookup). Resolved on
# first access (PEP 562), so importing the package still loads nothing.
_EXPORTS = {
    "load_codes": "consultant.codes.loader",
    "ensure_codes_loaded": "consultant.codes.loader",
    "normalize_code": "consultant.codes.lookup",
    "display_code": "consultant.codes.lookup",
    "near_codes": "consultant.codes.lookup",
    "billable_children": "consultant.codes.lookup",
    "search_codes": "consultant.codes.search",
    "import_file": "consultant.codes.importers",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'consultant.codes' has no attribute {name!r}")
