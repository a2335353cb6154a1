"""Finding codes written in the text: E119, e11.9, S161XXA, CPT 99213, J3301, 0FT44ZZ.

Only the shape is checked here; whether a token is a real code is the index's
business. The shapes are strict enough that dates, phone numbers, ZIP codes,
record numbers and doses do not look like codes:

- ICD-10-CM: a letter, two characters (digit, then digit or letter), then an
  optional dot and up to four more; a bare 3-character token must have a digit
  or an ICD letter pattern (I5A), and words such as "ICD10" or "ICD-10-CM"
  are never codes.
- CPT: five digits (or four digits and F/T/U), when the text names a code
  (CPT, code, billing) or is a short question about that one number ("what is
  62311?"), and no other number pattern explains them (not a ZIP after a
  state, not part of a phone number or date).
- HCPCS Level II: a letter A-V and four digits (J3301), upper or lower case.
- ICD-10-PCS: seven characters of digits and letters (no I or O) with at
  least one digit, in capitals or after the word PCS.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A letter, digit, digit/letter, then an optional dot and 1-4 alphanumerics.
_SPACED_TAIL = re.compile(r" (\d[0-9A-Za-z]{0,3})(?![\w\-/]|\.\d)")
_ICD = re.compile(r"(?<![A-Za-z0-9.\-/])([A-Za-z]\d[0-9A-Za-z])(?:\.?([0-9A-Za-z]{1,4}))?(?![A-Za-z0-9\-/]|\.\d)")
_FIVE = re.compile(r"(?<![\w.\-/()])(\d{4}[0-9FTUftu])(?![\w\-/]|\.\d)")
_HCPCS = re.compile(r"(?<![\w.\-/])([A-Va-v]\d{4})(?![\w\-/]|\.\d)")
_PCS = re.compile(r"(?<![\w.\-/])([0-9A-HJ-NP-Za-hj-np-z]{7})(?![\w\-/])")

_CPT_HINT = re.compile(r"\bcpt\b|\bprocedure code\b|\bcode\b|\bbill(?:ed|ing)?\b", re.IGNORECASE)
_PCS_HINT = re.compile(r"\bpcs\b|\bicd[\s-]?10[\s-]?pcs\b", re.IGNORECASE)
_LAB_WORDS = {"b12", "b6", "b1", "d3", "d2", "k2", "t3", "t4", "a1c", "c3", "c4", "e2", "g6", "h2", "o2", "s1", "s2", "s3", "s4", "l4", "l5", "c5", "c6", "c7", "t12"}
_CODE_BEFORE = re.compile(r"(?:\bcodes?|\bicd[\w-]*|\bdx)\W{0,3}$", re.IGNORECASE)
_NOT_CODE_WORDS = {"icd", "icd9", "icd10", "icd11", "cpt", "pcs", "hcpcs"}
# Abbreviations shaped like a code, never one (no ICD-10-CM category is T2D, T1D or H1N):
# diabetes types and influenza strains.
_ABBREVIATIONS = {"t2dm", "t1dm", "t2d", "t1d", "h1n1", "h3n2", "h5n1", "h7n9"}
_UNITS = re.compile(r"^\s*(?:mg|mcg|ml|g|kg|lb|lbs|units?|iu|mmhg|%|cc|mm|cm|hrs?|hours?|days?|weeks?)\b", re.IGNORECASE)
# A state is written in capitals ("IL 62704"); "is 62311" is a question
_ZIP_BEFORE = re.compile(r"\b(?:[A-Z]{2}|(?i:zip|zip code|postal code))\s*$")
# Words that say a number is something other than a code (a record, a phone, a room, a ZIP)
_NUMBER_WORDS = "mrn|record|account|acct|member|policy|claim|id|phone|tel|fax|call|ext|room|rm|bed|bay|ward|zip|dob|npi|ssn"
_NUMBER_CONTEXT = re.compile(rf"(?:{_NUMBER_WORDS}|#)\W{{0,3}}$", re.IGNORECASE)


@dataclass(frozen=True)
class Mention:
    """A code-like token found in the text."""

    raw: str  # as written
    key: str  # canonical: upper case, no dot
    system: str  # ICD-10-CM, CPT, HCPCS, ICD-10-PCS (a guess from the shape)
    start: int
    hinted: bool = False  # the text names the system next to it
    weak: bool = False  # a bare five-digit number, or "E78 5": a code only if the code set has it


def find_mentions(text: str) -> list[Mention]:
    """Every code-like token in `text`, in order of appearance, without repeats."""
    found: dict[tuple[str, str], Mention] = {}
    taken: list[tuple[int, int]] = []

    def add(m: Mention, end: int) -> None:
        if any(s <= m.start < e for s, e in taken):
            return
        taken.append((m.start, end))
        found.setdefault((m.system, m.key), m)

    for match in _HCPCS.finditer(text):
        before = text[max(0, match.start() - 12) : match.start()].lower()
        raw = match.group(1)
        hinted = "hcpcs" in before
        # J3301 is also a valid ICD shape (J33.01); the HCPCS reading wins only
        # with a hint, or when the ICD reading cannot be a code (checked later).
        add(Mention(raw, raw.upper(), "HCPCS", match.start(), hinted), match.end())
        taken.pop()  # keep the span free; ICD may also claim it

    for match in _PCS.finditer(text):
        raw = match.group(1)
        if not any(ch.isdigit() for ch in raw) or raw.isdigit():
            continue
        hinted = bool(_PCS_HINT.search(text[max(0, match.start() - 20) : match.start()]))
        # PCS codes start with a section digit or letter; lower-case words such as
        # "unknown" have no digit and were skipped above.
        if not (raw.isupper() or raw[0].isdigit() or hinted):
            continue
        if _ICD.fullmatch(raw) and not raw[0].isdigit():
            continue  # an ICD-10-CM 7-character code (S161XXA); ICD wins
        add(Mention(raw, raw.upper(), "ICD-10-PCS", match.start(), hinted), match.end())

    for match in _ICD.finditer(text):
        head, tail = match.group(1), match.group(2) or ""
        raw = match.group(0)
        if (head + tail).lower() in _NOT_CODE_WORDS | _ABBREVIATIONS or head.lower() in ("icd",):
            continue
        if re.fullmatch(r"[Gg]\d{1,2}[Pp]\d{1,4}", raw):  # gravida and para (G2P1, G3P2012)
            continue
        if not head[1].isdigit():
            continue
        if re.fullmatch(r"[A-Za-z]\d{2}", head) is None and not tail and not re.fullmatch(r"[A-Za-z]\d[A-Za-z]", head):
            continue
        if _UNITS.match(text[match.end() :]) and not tail:
            continue
        # Lower-case words that happen to fit (e.g. "b12" vitamin) need a dot,
        # a 4+ character tail, or a capital letter to count.
        if not tail and raw.lower() in _LAB_WORDS and not _CODE_BEFORE.search(text[max(0, match.start() - 20) : match.start()]):
            continue  # "A1c 6.1" is a lab, "code B12" may be asked about
        key = (head + tail).upper()
        if key.startswith("ICD") or _NUMBER_CONTEXT.search(text[max(0, match.start() - 30) : match.start()]):
            continue  # "bed C12" is a place
        spaced = None if tail else _SPACED_TAIL.match(text, match.end())
        if spaced and not _UNITS.match(text[spaced.end() :]):
            # "E78 5": a space for the dot, read as E78.5 only if the code set has it
            add(Mention(raw + spaced.group(0), key + spaced.group(1).upper(), "ICD-10-CM", match.start(), weak=True),
                spaced.end())
            taken.pop()  # the category alone stays a reading of its own
        add(Mention(raw, key, "ICD-10-CM", match.start()), match.end())

    for match in _FIVE.finditer(text):
        raw = match.group(1)
        before = text[max(0, match.start() - 30) : match.start()]
        after = text[match.end() : match.end() + 6]
        if _NUMBER_CONTEXT.search(before) or _ZIP_BEFORE.search(before):
            continue
        if re.match(r"[-)]\d", after) or re.search(r"\d[-(]$", before):
            continue  # part of a phone number or a ZIP+4 ("93000 - 12 lead ECG" is a code and its words)
        if _UNITS.match(after):
            continue
        hinted = bool(re.search(r"\bcpt\b", before, re.IGNORECASE))
        weak = not hinted and not _CPT_HINT.search(text) and not _short_question(text, raw)
        if weak and _OTHER_NUMBERS.search(text):
            continue  # "my zip is 62704", "weighs 12345": a bare number beside words of other numbers
        add(Mention(raw, raw.upper(), "CPT", match.start(), hinted, weak), match.end())

    return sorted(found.values(), key=lambda m: m.start)


_WORD = re.compile(r"[A-Za-z']+")
_ASKING = frozenset(
    "what what's whats mean means meaning valid deleted replaced billable description describe".split()
)
_OTHER_NUMBERS = re.compile(rf"\b(?:{_NUMBER_WORDS}|postal|weighs?|lbs?)\b", re.IGNORECASE)


def _short_question(text: str, number: str) -> bool:
    """ "What is 62311?", "99213 still valid?": a few words about one five-digit number
    ask about a code, though no word says CPT."""
    words = [w.lower() for w in _WORD.findall(text.replace(number, " "))]
    asked = "?" in text or bool(_ASKING.intersection(words))
    return asked and len(_FIVE.findall(text)) == 1 and len(words) <= 6 and not _OTHER_NUMBERS.search(text)


def icd_display(key: str) -> str:
    """E119 -> E11.9; codes of three characters keep no dot."""
    return key if len(key) <= 3 else f"{key[:3]}.{key[3:]}"
