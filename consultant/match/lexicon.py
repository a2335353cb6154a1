"""The words people use, rewritten into the words the code titles use.

`lexicon.tsv` beside this module holds one rule a line:

    kind <TAB> phrase <TAB> expansion [<TAB> flags]

`kind` is documentation (abbr, lay, misspell, form, icd9, drug, qualifier);
the behaviour comes from the flags:

    add     keep the phrase and add the expansion (a synonym that titles may
            use either way); without it the phrase is replaced
    upper   match only when the phrase is written in capitals in the text
            (abbreviations that are also ordinary words: AS, ALL, MS, PE)
    ctx=w1|w2
            a second-pass rule: applied to the rewritten words of a clause
            only when one of the words w1, w2 is among them ("wrist" means
            "carpal bone" only beside "fracture"; "lower leg" means "knee"
            only beside "osteoarthritis")

An empty expansion drops the phrase (filler such as "episode of care").
Phrases are matched longest first on lower-cased words, so "type 2 diabetes"
wins over "diabetes".
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

from consultant.match.text import words

LEXICON_PATH = Path(__file__).with_name("lexicon.tsv")
TRANSPARENT = frozenset({"left", "right", "bilateral", "both", "lt", "rt", "really", "very"})
_ACRONYM_PLURAL = re.compile(r"[A-Z]{2,}s")  # "PEs", "UTIs", "TIAs": the plural of an abbreviation
_RAW_WORD = re.compile(r"[A-Za-z0-9]+(?:'[A-Za-z]+)?")


@dataclass(frozen=True)
class Rule:
    kind: str
    phrase: tuple[str, ...]
    expansion: tuple[str, ...]
    add: bool = False
    upper: bool = False
    ctx: frozenset[str] = frozenset()


class Lexicon:
    """Longest-match phrase rewriting over a word sequence."""

    def __init__(self, rules: list[Rule]) -> None:
        self.rules = rules
        self._by_first: dict[str, list[Rule]] = {}
        self._ctx_by_first: dict[str, list[Rule]] = {}
        self._ctx_words: frozenset[str] = frozenset(w for r in rules for w in r.ctx)
        for rule in rules:
            table = self._ctx_by_first if rule.ctx else self._by_first
            table.setdefault(rule.phrase[0], []).append(rule)
        for table in (self._by_first, self._ctx_by_first):
            for bucket in table.values():
                bucket.sort(key=lambda r: -len(r.phrase))

    def __len__(self) -> int:
        return len(self.rules)

    @cached_property
    def adverse_drugs(self) -> tuple[str, ...]:
        """The drugs named by their class beside an adverse effect (`drug` rules), longest first."""
        return tuple(sorted({" ".join(r.phrase) for r in self.rules if r.kind == "drug" and "adverse" in r.ctx},
                            key=len, reverse=True))

    def find(self, phrase: str) -> list[Rule]:
        key = tuple(words(phrase))
        return [r for r in self._by_first.get(key[0], []) if r.phrase == key] if key else []

    def rewrite(self, text: str) -> tuple[list[str], list[str]]:
        """Return (words after rewriting, evidence lines "phrase -> expansion")."""
        raw = _raw_words(text)
        out, evidence = self._pass(raw, [w.lower() for w in raw], self._by_first)
        if self._ctx_words and self._ctx_words.intersection(out):
            present = set(out)
            # only the words of the text (and their singulars) are ever looked up
            looked_up = present.union(*map(_singulars, present))
            table = {
                first: [r for r in self._ctx_by_first[first] if r.ctx & present]
                for first in looked_up & self._ctx_by_first.keys()
            }
            out, more = self._pass(out, out, table)
            evidence += more
        return out, evidence

    def _pass(self, raw: list[str], low: list[str], table: dict[str, list[Rule]]) -> tuple[list[str], list[str]]:
        out: list[str] = []
        evidence: list[str] = []
        i = 0
        while i < len(low):
            found = self._match_at(raw, low, i, table)
            if found is None:
                out.append(low[i])
                i += 1
                continue
            rule, end, skipped = found
            if rule.add:
                out.extend(rule.phrase)
            out.extend(rule.expansion)
            out.extend(skipped)
            evidence.append(f"{' '.join(rule.phrase)} -> {' '.join(rule.expansion) or '(dropped)'}")
            i = end
        return out, evidence

    def _match_at(
        self, raw: list[str], low: list[str], i: int, table: dict[str, list[Rule]]
    ) -> tuple[Rule, int, list[str]] | None:
        rules = table.get(low[i], ())
        forms = (low[i][:-1],) if _ACRONYM_PLURAL.fullmatch(raw[i]) else _singulars(low[i])
        if forms:
            plural = [rule for form in forms for rule in table.get(form, ())]
            if plural:
                rules = [*rules, *plural]
        if not rules:
            return None
        if len(rules) > 1:
            rules = sorted(rules, key=lambda r: -len(r.phrase))
        for rule in rules:
            j, k, skipped = i, 0, []
            while k < len(rule.phrase) and j < len(low):
                plural_of_acronym = _ACRONYM_PLURAL.fullmatch(raw[j]) is not None and low[j][:-1] == rule.phrase[k]
                if low[j] == rule.phrase[k] or plural_of_acronym or (
                    not rule.upper and rule.phrase[k] in _singulars(low[j])
                ):
                    if rule.upper and not (raw[j].isupper() or raw[j].isdigit() or plural_of_acronym):
                        break
                    j, k = j + 1, k + 1
                elif k > 0 and low[j] in TRANSPARENT and len(skipped) < 2:
                    # "frozen left shoulder" is still "frozen shoulder" (left kept)
                    skipped.append(low[j])
                    j += 1
                else:
                    break
            if k == len(rule.phrase):
                return rule, j, skipped
        return None


@lru_cache(maxsize=8192)  # asked again at every comparison of a rule with a word
def _singulars(word: str) -> tuple[str, ...]:
    """ "blisters" matches a rule written for "blister" ("fever blisters on the lip"), and a
    possessive one written without it ("de Quervain's" for "de quervain")."""
    if word.endswith("'s"):
        return (word[:-2],)
    if len(word) <= 3 or not word.endswith("s") or word.endswith(("ss", "us", "is")):
        return ()
    return (word[:-1], word[:-2]) if word.endswith("es") else (word[:-1],)


def _raw_words(text: str) -> list[str]:
    # The same word boundaries as text.words, keeping case for the `upper` flag.
    plain = text if text.isascii() else "".join(
        ch for ch in unicodedata.normalize("NFKD", text) if not unicodedata.combining(ch)
    )
    plain = plain.replace("\u2019", "'").replace("\u2018", "'").replace("-", " ").replace("/", " ")
    return _RAW_WORD.findall(plain)


def parse_rules(lines: list[str]) -> list[Rule]:
    rules = []
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.rstrip("\n").split("\t")
        if len(parts) < 3:
            raise ValueError(f"lexicon line {number}: expected kind, phrase, expansion: {line!r}")
        kind, phrase, expansion = parts[0].strip(), parts[1].strip(), parts[2].strip()
        flags = {f.strip() for f in parts[3].split(",")} if len(parts) > 3 else set()
        ctx = frozenset(w for f in flags if f.startswith("ctx=") for w in f[4:].split("|") if w)
        phrase_words = tuple(w.lower() for w in _raw_words(phrase))
        if not phrase_words:
            raise ValueError(f"lexicon line {number}: empty phrase")
        rules.append(
            Rule(
                kind=kind,
                phrase=phrase_words,
                expansion=tuple(words(expansion)),
                add="add" in flags,
                upper="upper" in flags,
                ctx=ctx,
            )
        )
    return rules


@lru_cache(maxsize=4)
def load_lexicon(path: Path = LEXICON_PATH) -> Lexicon:
    return Lexicon(parse_rules(path.read_text(encoding="utf-8").splitlines()))
