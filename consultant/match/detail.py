"""What detail would make a code more specific ("more_specific" in a suggestion).

A coder who gets an unspecified or defaulted code needs to know what to look
for in the record. The answer is read from the code's own title and from its
siblings in the tabular:

- "unspecified knee", "unspecified eye" where the siblings say right and
  left: laterality;
- "unspecified site", "unspecified part of ...": the site, with the sites the
  siblings name as examples;
- "unspecified type", "unspecified organism", "unspecified trimester",
  "unspecified stage"...: that word;
- "unspecified carpal bone": which carpal bone;
- a title ending in "unspecified" ("Heart failure, unspecified"): the words
  the sibling codes add (systolic, diastolic, acute, chronic...);
- 7th characters and fracture defaults the text did not state (encounter,
  closed, displaced) are named with the default that was applied.
"""

from __future__ import annotations

import re
from collections import Counter

from consultant.match.index import ICD, CodeIndex
from consultant.match.text import STOPWORDS, words

_BODY = frozenset(
    """eye ear knee hip shoulder arm leg hand foot lung kidney breast wrist ankle elbow limb thigh lower upper forearm
    finger toe thumb orbit eyelid femur tibia fibula humerus radius ulna clavicle scapula calf heel buttock ovary
    fallopian tube testis ureter side great lesser ring middle index little side"""
    .split()
)
_SITE = frozenset("site sites part parts region location organ joint level".split())
_NAMED = {
    "type": "the type",
    "organism": "the organism",
    "cause": "the cause",
    "trimester": "the trimester",
    "stage": "the stage",
    "severity": "the severity",
    "degree": "the degree",
    "depth": "the depth",
    "episode": "the episode",
    "kind": "the kind",
    "complication": "the complication",
    "complications": "the complications",
    "substance": "the substance",
    "intent": "the intent (accidental, intentional, assault, undetermined)",
    "encounter": "the encounter",
    "phase": "the phase",
    "lobe": "the lobe",
    "vessel": "the vessel",
    "artery": "the artery",
    "vein": "the vein",
    "nerve": "the nerve",
    "tooth": "the tooth",
    "teeth": "the teeth",
    "chamber": "the chamber",
}
# never examples of a "kind": a side or a place is asked for on its own
_SIDE_AND_PLACE = frozenset({"right", "left", "bilateral", "unilateral", "ear", "eye", "side", "encounter", "initial",
                             "subsequent", "sequela"})
_UNSPEC = re.compile(r"\bunspecified ((?:[a-z\-]+)(?: [a-z\-]+){0,3})")
_STOP_AT = frozenset({"of", "with", "without", "in", "due", "and", "or", "for", "to", "on", "initial", "subsequent", "sequela"})
_GENERIC = frozenset(
    """other unspecified specified nos nec type not elsewhere classified disease disorder disorders condition
    conditions due unspecified without current episode""".split()
) | STOPWORDS


def more_specific(index: CodeIndex, row: int) -> str:
    """What the record would have to say for a more specific code than `row` ("" when none)."""
    if index.system[row] != ICD:
        return ""
    title = index.official[row].lower()
    gaps: list[str] = []
    for m in _UNSPEC.finditer(title):
        phrase = []
        for w in m.group(1).split():
            if w in _STOP_AT:
                break
            phrase.append(w)
        if not phrase:
            continue
        head = phrase[-1]
        if phrase[0] == "whether":
            gaps.append(" ".join(phrase))
        elif head in _BODY or phrase[0] in ("side",):
            gaps.append(f"laterality (right or left {' '.join(phrase)})" if head != "side" else "laterality (right or left)")
        elif head in _SITE:
            gaps.append(_with_examples(f"the {' '.join(phrase)}", _sibling_words(index, row, title)))
        elif head in _NAMED:
            gaps.append(_with_examples(_NAMED[head], _sibling_words(index, row, title)))
        elif m.start() == 0:
            gaps.append(_with_examples(f"the kind of {' '.join(phrase)}", _sibling_words(index, row, title)))
        else:
            gaps.append(f"which {' '.join(phrase)}")
    if not gaps and re.search(r"(^|, )unspecified(,|$)", title):
        gaps.append(_with_examples("what kind", _sibling_words(index, row, title)))
    if not gaps and re.search(r"\bnot otherwise specified\b|\bnos\b", title):
        gaps.append(_with_examples("what kind", _sibling_words(index, row, title)))
    return "; ".join(dict.fromkeys(gaps))


def seventh_character_defaults(title: str, text_tokens: set[str]) -> list[str]:
    """Fracture and encounter defaults that the text did not state."""
    low = title.lower()
    out = []
    if "initial encounter" in low and not text_tokens & {"initial", "subsequent", "sequela"}:
        out.append("the encounter (initial assumed; a follow-up visit or a sequela changes the 7th character)")
    if "closed fracture" in low and "closed" not in text_tokens:
        out.append("open or closed (closed is the default)")
    if low.startswith("displaced") and not text_tokens & {"displaced", "nondisplaced"}:
        out.append("displaced or not (displaced is the default)")
    return out


def _sibling_words(index: CodeIndex, row: int, title: str) -> list[str]:
    """Words the codes around `row` add to its title: what a more specific code would say.

    The siblings are asked first; when they differ from `row` only in
    words it already has (G43.909 beside G43.901), the parent's siblings,
    up to the category."""
    own = set(words(title))
    counts: Counter[str] = Counter()
    current = row
    if row in index.family_of:
        # a 7th-character code: its siblings differ only in the encounter
        parent = index.row(ICD, index.parent[row]) if index.parent[row] else None
        current = parent if parent is not None else row
    for _ in range(3):
        if len(index.key[current]) <= 3:
            break
        parent = index.parent[current]
        prow = index.row(ICD, parent) if parent else None
        if prow is None:
            break
        for sib in index.children.get(prow, []):
            if sib == current:
                continue
            for w in dict.fromkeys(words(index.official[sib])):
                if w not in own and w not in _GENERIC and w not in _SIDE_AND_PLACE and not w.isdigit() and len(w) > 2:
                    counts[w] += 1
        if len(counts) >= 2:
            break
        current = prow
    return [w for w, _ in counts.most_common(5)]


def _with_examples(what: str, examples: list[str]) -> str:
    return f"{what} (e.g. {', '.join(examples)})" if examples else what
