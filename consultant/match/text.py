"""Turning free text and code titles into comparable tokens.

Both sides of a match (the question and every code title) go through the same
`tokenize`, so a plural, a possessive or a hyphen never decides a match. The
stemmer is deliberately small: it folds plurals and a few word forms and leaves
everything else alone, because clinical words are short and over-stemming
merges distinct conditions ("ulcer"/"ulcerative" must stay apart).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

# Words that carry no meaning for matching, on either side.
STOPWORDS = frozenset(
    """a an the of and or in on at to for by from as is are was were be been being this that these those
    it its his her their our my your patient pt has have had having which who whom whose into onto
    per via than then there here very also just so such any each due with""".split()
)

# Title words that a question need not mention: they describe the default.
# ("A fracture not indicated as displaced or nondisplaced should be coded to
# displaced": the tabular's own default.)
DEFAULT_WORDS = frozenset(
    """unspecified nos site part type unsp specified elsewhere classified not uncomplicated displaced unilateral
    female side accidental unintentional nonrheumatic""".split()
)

_WORD = re.compile(r"[a-z0-9]+(?:'[a-z]+)?")


class Caseless:
    """Whether a pattern of lower-case ASCII occurs in a text, case ignored.

    An ASCII text is lowered and searched with the pattern compiled without
    IGNORECASE, which `re` runs three to five times faster on the matcher's
    long alternations ("fractur\\w*|broke\\w*|..."); lowering changes no
    character's verdict there, since an ASCII character matches an ASCII
    letter under IGNORECASE exactly when its lower case is that letter. Any
    other text is searched with IGNORECASE itself, where case folding has more
    rules (İ, ı, ſ and the Kelvin sign also match ASCII letters)."""

    def __init__(self, pattern: str) -> None:
        if not pattern.isascii() or re.search(r"(?<!\\)[A-Z]", pattern):
            raise ValueError("a Caseless pattern is lower-case ASCII")
        self.pattern = pattern
        self._lowered = re.compile(pattern)
        self._caseless = re.compile(pattern, re.IGNORECASE)

    def found(self, text: str) -> bool:
        if text.isascii():
            return self._lowered.search(text.lower()) is not None
        return self._caseless.search(text) is not None


# Irregular or medical word forms folded to one stem (both directions matter:
# titles say "diabetes", people say "diabetic").
_FORMS = {
    "diabetic": "diabetes",
    "diabetes": "diabetes",
    "mellitus": "mellitus",
    "hypertensive": "hypertension",
    "fractured": "fracture",
    "fractures": "fracture",
    "feet": "foot",
    "teeth": "tooth",
    "women": "woman",
    "men": "man",
    "children": "child",
    "lungs": "lung",
    "kidneys": "kidney",
    "renal": "kidney",
    "pulmonary": "pulmonary",
    "infected": "infection",
    "infectious": "infection",
    "infective": "infection",
    "ulcers": "ulcer",
    "ulcerated": "ulcer",
    "bleeding": "hemorrhage",
    "haemorrhage": "hemorrhage",
    "hemorrhagic": "hemorrhage",
    "anaemia": "anemia",
    "anemic": "anemia",
    "oedema": "edema",
    "oesophagus": "esophagus",
    "oesophageal": "esophagus",
    "esophageal": "esophagus",
    "gastric": "stomach",
    "hepatic": "liver",
    "cardiac": "heart",
    "ocular": "eye",
    "leukaemia": "leukemia",
    "tumour": "tumor",
    "tumours": "tumor",
    "faecal": "fecal",
    "paediatric": "pediatric",
    "orthopaedic": "orthopedic",
    "haematuria": "hematuria",
    "ischaemic": "ischemic",
    "ischemia": "ischemia",
    "dyspnoea": "dyspnea",
    "coeliac": "celiac",
    "caesarean": "cesarean",
    "cesarian": "cesarean",
    "oestrogen": "estrogen",
    "sprained": "sprain",
    "strained": "strain",
    "burned": "burn",
    "burnt": "burn",
    "bitten": "bite",
    "dislocated": "dislocation",
    "lacerated": "laceration",
    "obstructed": "obstruction",
    "obstructive": "obstruction",
    "perforated": "perforation",
    "ruptured": "rupture",
    "inflamed": "inflammation",
    "inflammatory": "inflammation",
    "allergic": "allergy",
    "allergies": "allergy",
    "pregnant": "pregnancy",
    "gestational": "gestational",
    "malignancy": "malignant",
    "cancerous": "malignant",
    "metastatic": "secondary",
    "metastasis": "secondary",
    "metastases": "secondary",
    "intractable": "intractable",
    "dependent": "dependence",
    "depressive": "depressed",
    "depression": "depression",
    "addicted": "dependence",
    "addiction": "dependence",
    "abusing": "abuse",
    "vomiting": "vomiting",
    "nauseated": "nausea",
    "hypertrophic": "hypertrophy",
    "hypertrophied": "hypertrophy",
    "enlarged": "enlargement",
    "deformed": "deformity",
    "deformities": "deformity",
    "congenital": "congenital",
    "chronically": "chronic",
    "acutely": "acute",
    "bilaterally": "bilateral",
    "both": "bilateral",
    "lt": "left",
    "rt": "right",
    "ii": "2",
    "iii": "3",
    "iv": "4",
    "first": "1",
    "second": "2",
    "third": "3",
    "fourth": "4",
    "fifth": "5",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
    "twice": "2",
    "manic": "mania",
    "biceps": "biceps",
    "triceps": "triceps",
    "quadriceps": "quadriceps",
    "forceps": "forceps",
    "lapse": "lapse",
    "abdominal": "abdomen",
    "venous": "vein",
    "retinal": "retina",
    "detached": "detachment",
    "noninfectious": "noninfective",
    "vs": "versus",
    "pancreatic": "pancreas",
    "hiatal": "hiatus",
    "colonic": "colon",
    "rectal": "rectum",
    "uterine": "uterus",
    "ovarian": "ovary",
    "prostatic": "prostate",
    "duodenal": "duodenum",
    "splenic": "spleen",
    "testicular": "testis",
    "laryngeal": "larynx",
    "tracheal": "trachea",
    "pleural": "pleura",
    "neonatal": "newborn",
    "neonate": "newborn",
    "neonates": "newborn",
    "bowel": "intestine",
    "bowels": "intestine",
    "oral": "mouth",
    "candidal": "candidiasis",
    "monilial": "candidiasis",
    "moniliasis": "candidiasis",
    "cutaneous": "skin",
    "nasal": "nose",
    "stills": "stills",
    "bells": "bells",
}

# Eponyms whose bare word is an ordinary English word: only the possessive
# ("Still's disease") names the condition, so "still valid?" never does.
_EPONYM_POSSESSIVE = {"still": "stills", "bell": "bells"}

# Endings that must not lose their final "s".
_KEEP_S = ("ss", "us", "is", "ys", "os", "as")


def fold(text: str) -> str:
    """Lower-case, strip accents and unify dashes and apostrophes."""
    if text.isascii():
        return text.lower()  # nothing to normalise
    text = unicodedata.normalize("NFKD", text)
    text = "".join(ch for ch in text if not unicodedata.combining(ch))
    text = text.replace("\u2019", "'").replace("\u2018", "'")
    return text.lower()


def stem(word: str) -> str:
    """Fold one lower-case word to its matching form."""
    if word.endswith("'s"):
        word = word[:-2]
        if word in _EPONYM_POSSESSIVE:
            return _EPONYM_POSSESSIVE[word]
    word = word.replace("'", "")
    if word in _FORMS:
        return _FORMS[word]
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 5 and word.endswith(("ches", "shes", "sses", "xes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(_KEEP_S):
        word = word[:-1]
        return _FORMS.get(word, word)
    return word


def words(text: str) -> list[str]:
    """The raw lower-case words of `text`, in order (no stemming)."""
    # "toe(s)", "finger(s)": the plural mark is not a word
    return _WORD.findall(fold(text).replace("(s)", "").replace("-", " ").replace("/", " "))


def tokenize(text: str) -> list[str]:
    """Stemmed content tokens of `text`, in order, stopwords removed, with their compounds."""
    memo = _REMEMBERED.get()
    if memo is None:
        return _tokenize(text)
    got = memo.get(text)
    if got is None:
        got = memo[text] = tuple(_tokenize(text))
    return list(got)


def _tokenize(text: str) -> list[str]:
    tokens = [t for t in (stem(w) for w in words(text)) if t and t not in STOPWORDS]
    return tokens + [c for c in compounds(tokens) if c not in tokens]


_REMEMBERED: ContextVar[dict[str, tuple[str, ...]] | None] = ContextVar("remembered_tokens", default=None)


@contextmanager
def tokens_remembered() -> Iterator[None]:
    """Within one question, a text tokenized again costs a lookup (the matcher tokenizes each
    clause of a note many times over). Forgotten when the question is answered, so no text
    outlives its question in memory."""
    reset = _REMEMBERED.set({})
    try:
        yield
    finally:
        _REMEMBERED.reset(reset)


# A number belongs to the word that names its axis: "stage 2" is not "type 2"
# ("Type 1 diabetes with CKD stage 2" must not reach stage 1). The pair is
# kept as one more token ("stage2"), on both sides of a match.
AXIS_BEFORE = frozenset({"stage", "type", "grade", "class", "phase", "level", "zone", "gravida", "para"})
AXIS_AFTER = frozenset({"degree", "trimester", "week", "weeks", "rib", "ribs", "stage"})
_NUMBERISH = re.compile(r"^(?:\d{1,2}[a-d]?|[a-d])$")


def is_compound(token: str) -> bool:
    head = token.rstrip("0123456789abcd")
    return head != token and (head in AXIS_BEFORE or head in AXIS_AFTER) and bool(_NUMBERISH.match(token[len(head):]))


def compounds(tokens: list[str]) -> list[str]:
    out = []
    for a, b in zip(tokens, tokens[1:]):
        if a in AXIS_BEFORE and _NUMBERISH.match(b):
            out.append(f"{a}{b}")
        elif _NUMBERISH.match(a) and a[0].isdigit() and b in AXIS_AFTER:
            out.append(f"{'week' if b == 'weeks' else b}{a}")
    return out
