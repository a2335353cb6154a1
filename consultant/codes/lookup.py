"""Find codes in the `code` table by what a person typed.

    normalize_code("e11.9 ")            -> "E119"
    display_code("ICD-10-CM", "E119")   -> "E11.9"
    lookup(session, "E11.9")            -> [Code(E119)]  (every system that has it)
    near_codes(session, "E11.99")       -> likely intended codes for a typo
    billable_children(session, "G35")   -> the billable codes under a header
    system_name("cpt")                  -> "CPT"

Codes are stored canonical (upper case, no dot); the matcher and the CLI go
through these functions rather than querying `code` themselves.
"""

from __future__ import annotations

import re
import string

from sqlmodel import Session, select

from consultant.models import Code

CM, PCS, CPT, HCPCS, MOD = "ICD-10-CM", "ICD-10-PCS", "CPT", "HCPCS", "MOD"

_ALIASES = {
    "ICD10CM": CM,
    "ICD10": CM,
    "CM": CM,
    "DX": CM,
    "ICD10PCS": PCS,
    "PCS": PCS,
    "CPT": CPT,
    "CPT4": CPT,
    "HCPCS": HCPCS,
    "HCPCSII": HCPCS,
    "HCPCSLEVELII": HCPCS,
    "MOD": MOD,
    "MODIFIER": MOD,
    "MODIFIERS": MOD,
}

# Order in which systems are listed when one code string exists in several.
SYSTEM_ORDER = {CM: 0, PCS: 1, CPT: 2, HCPCS: 3, MOD: 4}

_ALPHABET = string.ascii_uppercase + string.digits
_CLEAN = re.compile(r"[\s.\u00b7]+")


def normalize_code(text: str) -> str:
    """Canonical form of a code: upper case, no dots, no spaces."""
    return _CLEAN.sub("", text or "").upper()


def display_code(system: str, code: str) -> str:
    """The form people write: a dot after the 3rd character for ICD-10-CM only."""
    code = normalize_code(code)
    if system_name(system) == CM and len(code) > 3 and "-" not in code and not code.startswith("CH"):
        return code[:3] + "." + code[3:]
    return code


def system_name(system: str | None) -> str | None:
    """The canonical system name for an alias ('icd10cm', 'cpt', 'hcpcs', ...)."""
    if system is None:
        return None
    key = re.sub(r"[^A-Z0-9]", "", system.upper())
    if key in _ALIASES:
        return _ALIASES[key]
    raise ValueError(f"unknown code system: {system!r}")


def _sorted(codes: list[Code]) -> list[Code]:
    return sorted(codes, key=lambda c: (SYSTEM_ORDER.get(c.system, 9), c.status != "valid", c.code))


def lookup(session: Session, text: str, system: str | None = None) -> list[Code]:
    """Every loaded code matching `text` in any written form (e119, E11.9, 62310, J3301).

    Several rows come back when the same string is a code in several systems
    (a modifier and a CPT code never collide, but '25' could be read both ways).
    An ICD-10-CM code written without its X placeholders (T07A for T07.XXXA)
    is found too.
    """
    code = normalize_code(text)
    if not code:
        return []
    sysname = system_name(system)
    stmt = select(Code).where(Code.code == code)
    if sysname:
        stmt = stmt.where(Code.system == sysname)
    found = list(session.exec(stmt))
    if not found and sysname in (None, CM) and 4 <= len(code) < 7 and code[0].isalpha():
        padded = code[:-1].ljust(6, "X") + code[-1]
        if padded != code:
            found = list(session.exec(select(Code).where(Code.code == padded, Code.system == CM)))
    return _sorted(found)


def get_code(session: Session, system: str, code: str) -> Code | None:
    """One code of one system, or None."""
    stmt = select(Code).where(Code.system == system_name(system), Code.code == normalize_code(code))
    return session.exec(stmt).first()


_LOOKALIKES = (("O", "0"), ("I", "1"), ("L", "1"), ("S", "5"), ("Z", "2"), ("B", "8"))


def _edits(code: str) -> dict[str, int]:
    """Every string one typo away, with a cost: 0 for a swap of two neighbours or a
    look-alike (O for 0, l for 1), 1 for a wrong, missing or extra character."""
    out: dict[str, int] = {}
    for i in range(len(code) + 1):
        for ch in _ALPHABET:
            out.setdefault(code[:i] + ch + code[i:], 1)
    for i in range(len(code)):
        out.setdefault(code[:i] + code[i + 1 :], 1)
        for ch in _ALPHABET:
            out.setdefault(code[:i] + ch + code[i + 1 :], 1)
    for i in range(len(code) - 1):
        out[code[:i] + code[i + 1] + code[i] + code[i + 2 :]] = 0
    for a, b in _LOOKALIKES:
        for i, ch in enumerate(code):
            if ch in (a, b):
                out[code[:i] + (b if ch == a else a) + code[i + 1 :]] = 0
    out.pop(code, None)
    out.pop("", None)
    return out


def near_codes(session: Session, text: str, limit: int = 5, system: str | None = None) -> list[Code]:
    """Valid codes that the text was probably meant to be (one typo away), best first.

    Billable codes come before headers; when nothing is one typo away, the
    billable codes under the longest existing prefix are offered instead.
    """
    code = normalize_code(text)
    if not code:
        return []
    sysname = system_name(system)
    edits = _edits(code)
    candidates = sorted(edits)
    found: list[Code] = []
    for start in range(0, len(candidates), 500):
        stmt = select(Code).where(Code.code.in_(candidates[start : start + 500]), Code.status == "valid")
        if sysname:
            stmt = stmt.where(Code.system == sysname)
        found.extend(session.exec(stmt))

    def rank(c: Code) -> tuple:
        same_len = len(c.code) == len(code)
        same_prefix = sum(1 for a, b in zip(c.code, code) if a == b)
        return (edits[c.code], not c.billable, not same_len, -same_prefix, SYSTEM_ORDER.get(c.system, 9), c.code)

    found.sort(key=rank)
    if len(found) < limit:
        for n in range(len(code) - 1, 2, -1):
            stem = code[:n]
            stmt = select(Code).where(Code.code == stem, Code.status == "valid")
            if sysname:
                stmt = stmt.where(Code.system == sysname)
            header = session.exec(stmt).first()
            if header is not None:
                seen = {(c.system, c.code) for c in found}
                extra = [c for c in billable_children(session, header.code, header.system, limit=limit) if (c.system, c.code) not in seen]
                found.extend(extra)
                break
    return found[:limit]


def billable_children(session: Session, code: str, system: str | None = CM, limit: int | None = None) -> list[Code]:
    """The valid billable codes under a header (category, subcategory, block or chapter)."""
    code = normalize_code(code)
    sysname = system_name(system) or CM
    stmt = select(Code).where(Code.system == sysname, Code.billable.is_(True), Code.status == "valid")
    if code.startswith("CH"):
        stmt = stmt.where(Code.chapter == code)
    elif "-" in code:
        stmt = stmt.where(Code.block == code)
    else:
        stmt = stmt.where(Code.code.startswith(code, autoescape=True), Code.code != code)
    stmt = stmt.order_by(Code.code)
    if limit:
        stmt = stmt.limit(limit)
    return list(session.exec(stmt))


def children(session: Session, code: str, system: str | None = CM) -> list[Code]:
    """The codes one level below `code` (any kind, any status)."""
    sysname = system_name(system) or CM
    stmt = select(Code).where(Code.system == sysname, Code.parent == normalize_code(code)).order_by(Code.code)
    return list(session.exec(stmt))


def lookup_any(session: Session, texts: list[str]) -> dict[str, list[Code]]:
    """Batch lookup: {normalized text: [codes]} in one query."""
    keys = sorted({normalize_code(t) for t in texts if normalize_code(t)})
    out: dict[str, list[Code]] = {k: [] for k in keys}
    for start in range(0, len(keys), 500):
        part = keys[start : start + 500]
        for c in session.exec(select(Code).where(Code.code.in_(part))):
            out[c.code].append(c)
    return {k: _sorted(v) for k, v in out.items()}
