"""Plain-language descriptions for every code, built from the official text.

    describe("ICD-10-CM", "Unspecified fracture of shaft of right femur", ...)
      -> "Break (fracture) of the shaft of the right thigh bone (femur), not further specified"

How a description is made (nothing is copied from anywhere):

* a hand-written override for the most asked codes (`plain_overrides.tsv`);
* otherwise the official text is rewritten: leading "Unspecified" and
  trailing ", unspecified" become "not further specified", an unstated side
  is said so, articles are put back ("of right femur" -> "of the right
  femur"), and every glossary term (`glossary.tsv`: neoplasm -> growth,
  laceration -> cut, myocardial infarction -> heart attack, ...) is replaced
  in one pass, longest term first;
* ICD-10-CM 7th characters become a second sentence about the visit
  ("First visit for this broken bone, skin not broken (closed fracture).");
* inclusion terms (the notes) are added as "Also covers: ...", and a header
  says that a more detailed code is needed;
* ICD-10-PCS text is read axis by axis (root operation, body part, device,
  approach) into a sentence.

The glossary is loaded on first use, never at import.
"""

from __future__ import annotations

import csv
import functools
import re
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
GLOSSARY_FILE = HERE / "glossary.tsv"
OVERRIDES_FILE = HERE / "plain_overrides.tsv"

HEADER_NOTE = "A heading: a more detailed code under it is needed for billing."

# Body parts that come in a right and a left, so "unspecified X" means the side is not stated.
SIDED = (
    "eye ear eyelid eyelids orbit arm upper arm forearm lower arm hand wrist finger fingers thumb index finger "
    "middle finger ring finger little finger leg lower leg thigh knee ankle foot feet toe toes great toe "
    "lesser toe lesser toes hip shoulder elbow femur tibia fibula humerus radius ulna kidney ureter breast "
    "lung ovary fallopian tube testis side limb upper limb lower limb calcaneus clavicle scapula patella "
    "buttock heel metacarpal bone metatarsal bone talus"
).split()
_SIDED_RE = re.compile(
    r"\bunspecified (" + "|".join(sorted((re.escape(w) for w in set(SIDED)), key=len, reverse=True)) + r")\b",
    re.IGNORECASE,
)
_TRAILING_SIDE_RE = re.compile(
    r",\s*unspecified (" + "|".join(sorted((re.escape(w) for w in set(SIDED)), key=len, reverse=True)) + r")$",
    re.IGNORECASE,
)
_ARTICLE_RE = re.compile(
    r"\b(of|to|at|on|in|into|from)\s+(?!the\b|a\b|an\b)(?=(?:right|left|upper|lower|middle|shaft|head|neck|base|"
    r"lateral|medial|anterior|posterior|distal|proximal|"
    + "|".join(re.escape(w) for w in set(SIDED))
    + r")\b)",
    re.IGNORECASE,
)

PCS_SECTIONS = {
    "1": "Obstetrics",
    "2": "Placement",
    "3": "Giving a substance",
    "4": "Measurement and monitoring",
    "5": "Support by a machine",
    "6": "Treatment by a machine",
    "7": "Osteopathic treatment",
    "8": "Other procedure",
    "9": "Chiropractic treatment",
    "B": "Imaging",
    "C": "Nuclear medicine",
    "D": "Radiation therapy",
    "F": "Physical rehabilitation or hearing test",
    "G": "Mental health care",
    "H": "Substance use treatment",
    "X": "New technology",
}


@dataclass(frozen=True)
class Glossary:
    terms: dict[str, str]
    seventh: dict[str, str]
    pcs_root: dict[str, str]
    pcs_approach: dict[str, str]
    pcs_device: dict[str, str]

    @functools.cached_property
    def term_re(self) -> re.Pattern:
        return _alternation(self.terms)

    @functools.cached_property
    def pcs_re(self) -> re.Pattern:
        extra = {"bilateral": "", "upper extremities": "", "lower extremities": ""}
        return _alternation({**self.terms, **{k.lower(): v for k, v in self.pcs_device.items()}, **extra})


def _trie_regex(words: list[str]) -> str:
    """A regex matching any of `words`, factored as a character trie (much faster than a flat alternation).

    Longer words are preferred: at each node the branches are tried before
    the end of a word, so "malignant neoplasm" wins over "malignant".
    """
    trie: dict = {}
    for w in words:
        node = trie
        for ch in w:
            node = node.setdefault(ch, {})
        node[""] = True

    def build(node: dict) -> str:
        branches = [re.escape(ch) + build(child) for ch, child in sorted(node.items()) if ch != ""]
        end = "" in node
        if not branches:
            return ""
        body = branches[0] if len(branches) == 1 else "(?:" + "|".join(branches) + ")"
        return "(?:" + body + ")?" if end else body

    return build(trie)


def _alternation(terms: dict[str, str]) -> re.Pattern:
    # A term only counts when it ends at a word boundary; the trie tries longer
    # words first and backs off to a shorter one when the boundary is missing.
    words = sorted({t.lower() for t in terms if t})
    return re.compile(r"(?<![\w-])(" + _trie_regex(words) + r")(?![\w-])", re.IGNORECASE)


def read_glossary(path: Path = GLOSSARY_FILE) -> Glossary:
    """Parse glossary.tsv (kind, term, plain); '#' lines are comments."""
    tables: dict[str, dict[str, str]] = {k: {} for k in ("term", "seventh", "pcs_root", "pcs_approach", "pcs_device")}
    with open(path, encoding="utf-8", newline="") as fh:
        lines = [ln for ln in fh if ln.strip() and not ln.startswith("#")]
    for rec in csv.DictReader(lines, delimiter="\t", quoting=csv.QUOTE_NONE):
        kind, term, plain = rec["kind"], rec["term"], rec["plain"] or ""
        if kind not in tables:
            raise ValueError(f"{path}: unknown kind {kind!r} for {term!r}")
        key = term.lower() if kind in ("term", "seventh") else term
        tables[kind][key] = plain
    return Glossary(tables["term"], tables["seventh"], tables["pcs_root"], tables["pcs_approach"], tables["pcs_device"])


@functools.cache
def glossary() -> Glossary:
    return read_glossary()


@functools.cache
def overrides() -> dict[tuple[str, str], str]:
    """Hand-written descriptions: {(system, canonical code): text}."""
    if not OVERRIDES_FILE.exists():
        return {}
    with open(OVERRIDES_FILE, encoding="utf-8", newline="") as fh:
        lines = [ln for ln in fh if ln.strip() and not ln.startswith("#")]
    return {(r["system"], r["code"].replace(".", "").upper()): r["plain"] for r in csv.DictReader(lines, delimiter="\t")}


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:] if text else text


_TIDY = [
    (re.compile(r"\s+"), " "),
    (re.compile(r"\(\s*\)"), ""),
    (re.compile(r"\)\s*\("), "; "),
    (re.compile(r"\bthe (the|a|an)\b", re.IGNORECASE), r"\1"),
    (re.compile(r"\s+([,;.)])"), r"\1"),
    (re.compile(r"([(])\s+"), r"\1"),
    (re.compile(r",\s*,"), ","),
    (re.compile(r"(,\s*)+$"), ""),
]


def _tidy(text: str) -> str:
    for pattern, repl in _TIDY:
        text = pattern.sub(repl, text)
    return text.strip()


def lay(text: str, table: re.Pattern | None = None, words: dict[str, str] | None = None) -> str:
    """Replace every glossary term in `text` (one pass, longest term first)."""
    g = glossary()
    pattern = table or g.term_re
    mapping = words or g.terms

    def sub(m: re.Match) -> str:
        return mapping.get(m.group(1).lower(), m.group(1))

    return _tidy(pattern.sub(sub, text))


_CAPWORD = re.compile(r"\b([A-Z][a-z]+)\b")


def _lower_words(text: str) -> str:
    """Lower-case Capitalised Words, keeping acronyms (LDR, HIV) and codes."""
    return _CAPWORD.sub(lambda m: m.group(1).lower(), text)


@functools.lru_cache(maxsize=65536)
def _cm_title(text: str) -> str:
    """One ICD-10-CM title (without its 7th character) in plain words."""
    suffix = ""
    if re.match(r"unspecified\s", text, re.IGNORECASE):
        text = text[len("unspecified ") :]
        suffix = ", not further specified"
    if re.search(r",\s*unspecified$", text, re.IGNORECASE):
        text = re.sub(r",\s*unspecified$", "", text, flags=re.IGNORECASE)
        suffix = ", not further specified"
    text = re.sub(r",\s*undetermined$", ", intent not known", text, flags=re.IGNORECASE)
    text = _TRAILING_SIDE_RE.sub(lambda m: ", side not stated" if m.group(1).lower() == "side" else f", which {m.group(1)} not stated", text)
    text = _SIDED_RE.sub(lambda m: m.group(1) + " \x00", text)
    text = _ARTICLE_RE.sub(lambda m: m.group(1) + " the ", text)
    text = lay(text) + suffix
    text = re.sub(r" \x00(?=\s*(?:$|,))", ", side not stated", text)
    text = text.replace(" \x00", " (side not stated)")
    return _cap(_tidy(text))


def seventh_phrase(meaning: str) -> str:
    """The meaning of a 7th character as a phrase about the visit."""
    key = meaning.split(" (includes:")[0].strip().lower()
    g = glossary()
    return g.seventh.get(key) or lay(key)


def _is_injury(code: str) -> bool:
    """Injuries (S00-T34, T66-T88) and external causes (V00-Y99) versus poisonings and the rest."""
    if code.startswith(("S", "V", "W", "X", "Y")):  # injuries and their external causes
        return True
    if code.startswith("T") and code[1:3].isdigit():
        return not 36 <= int(code[1:3]) <= 65
    return False


_RANGE = re.compile(r"\s*\([A-Z0-9]{3}-[A-Z0-9]{3}\)\s*$")


def describe_cm(
    official: str, *, code: str = "", kind: str = "code", billable: bool = True, notes: dict | None = None, group: str = ""
) -> str:
    """group: the title of the code's block, used when the title itself has no everyday wording."""
    notes = notes or {}
    seventh = notes.get("seventh")
    base = official
    sentences = []
    if seventh and seventh.get("meaning"):
        short = seventh["meaning"].split(" (includes:")[0]
        if base.endswith(", " + short):
            base = base[: -len(short) - 2]
        phrase = seventh_phrase(short)
        if not _is_injury(code):
            phrase = phrase.replace("this injury", "this problem").replace("earlier injury", "original problem")
        sentences = [_cm_title(base), _cap(phrase)]
    else:
        sentences = [_cm_title(_RANGE.sub("", official))]
    if group and kind == "code" and sentences[0].rstrip(".").lower() == base.lower():
        # Nothing in the title has an everyday word (a named syndrome, say): say what group it is in.
        title = _cm_title(_RANGE.sub("", group))
        sentences.insert(1, f"It belongs to the group: {title[:1].lower() + title[1:]}")
    said = " ".join(sentences).lower()
    extra = []
    for term in notes.get("inclusionTerm", []):
        lay_term = lay(term[:1].lower() + term[1:])
        if term.lower() != official.lower() and lay_term.lower() not in said:
            extra.append(lay_term)
    if extra and billable:
        sentences.append("Also covers: " + "; ".join(extra[:3]))
    removed = notes.get("history", {}).get("was_billable")
    if not billable and kind in ("category", "code") and not removed:
        sentences.append(HEADER_NOTE)
    return " ".join(s if s.endswith((".", "?", "!")) else s + "." for s in sentences if s)


# In procedure names these read better than the diagnosis wording.
PCS_WORDS = {"bilateral": "both", "upper extremity": "arm", "lower extremity": "leg", "upper extremities": "arms", "lower extremities": "legs"}


@functools.cache
def _pcs_words() -> dict[str, str]:
    g = glossary()
    return {**g.terms, **{k.lower(): v for k, v in g.pcs_device.items()}, **PCS_WORDS}


def describe_pcs(code: str, official: str) -> str:
    """An ICD-10-PCS title as a sentence: what is done, to what, with what, how."""
    g = glossary()
    parts = [p.strip() for p in official.split(",")]
    approach = ""
    qualifiers: list[str] = []
    main = ""
    for p in parts:
        if p in g.pcs_approach:
            approach = g.pcs_approach[p]
        elif p == "Diagnostic":
            qualifiers.append("to take a sample for testing (biopsy)")
        elif not main:
            main = p
        else:
            qualifiers.append(_pcs_phrase(p))
    text = _pcs_main(code[:1], main or official)
    extra = ", ".join(q for q in qualifiers if q)
    if extra:
        text += ", " + extra
    if approach:
        text += ", " + approach
    return _cap(_tidy(text)) + "."


@functools.lru_cache(maxsize=65536)
def _pcs_phrase(text: str) -> str:
    g = glossary()
    return lay(_lower_words(text), g.pcs_re, _pcs_words())


_PCS_OF = re.compile(r"^of\s+")
_PCS_MATTER = re.compile(r"^Matter (from|in)\b")
_PCS_NO_ARTICLE = re.compile(r"(the|a|an|bleeding|solid|in|from|into|on|at)\b")
_PCS_PREP = re.compile(r"\b(from|in|into|to|on)\s+(?!the\b|a\b)")
_PCS_WITH = re.compile(r"\bwith\b")


@functools.lru_cache(maxsize=65536)
def _pcs_main(section: str, main: str) -> str:
    """The part before the first comma: root operation, body part, device."""
    g = glossary()
    first, _, rest = main.partition(" ")
    if section in "01" and first in g.pcs_root:
        rest = _PCS_OF.sub("", rest)
        rest = _PCS_MATTER.sub(r"solid matter such as a clot or stone \1", rest)
        rest = _lower_words(rest)
        if not _PCS_NO_ARTICLE.match(rest):
            rest = "the " + rest
        rest = _PCS_PREP.sub(r"\1 the ", rest)
        rest = _PCS_WITH.sub("using", rest)
        return g.pcs_root[first] + " " + _pcs_phrase(rest)
    label = PCS_SECTIONS.get(section, "")
    text = _pcs_phrase(main)
    return f"{label}: {text}" if label and section != "0" else _cap(text)


def describe_other(official: str, notes: dict | None = None) -> str:
    """CPT, HCPCS and modifiers: the team samples are already plain; imported text gets the glossary."""
    if (notes or {}).get("sample"):
        return official
    return _cap(lay(official))


def describe(
    system: str,
    official: str,
    *,
    code: str = "",
    kind: str = "code",
    billable: bool = True,
    notes: dict | None = None,
    group: str = "",
) -> str:
    """A plain-language description of one code (group: its block title, ICD-10-CM only)."""
    hand = overrides().get((system, code.replace(".", "").upper()))
    if hand:
        return hand
    if system == "ICD-10-CM":
        return describe_cm(official, code=code, kind=kind, billable=billable, notes=notes, group=group)
    if system == "ICD-10-PCS":
        return describe_pcs(code, official)
    return describe_other(official, notes)


def plain_for_rows(system: str, rows: list[dict]) -> None:
    """Fill row["plain"] for rows about to be loaded."""
    blocks = {r["code"]: r["official"] for r in rows if r["kind"] == "block"}
    for row in rows:
        if not row.get("plain"):
            row["plain"] = describe(
                system,
                row["official"],
                code=row["code"],
                kind=row["kind"],
                billable=row["billable"],
                notes=row["notes"],
                group=blocks.get(row.get("block") or "", row.get("group", "")),
            )
