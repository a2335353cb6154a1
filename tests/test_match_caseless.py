"""`text.Caseless` gives the verdict of the same pattern under re.IGNORECASE, for every text.

The matcher's context patterns (pregnancy, newborn, injury, procedure ...)
are Caseless; these tests compare each with its IGNORECASE twin over texts in
every case, with the characters that case folding treats specially."""

from __future__ import annotations

import random
import re
import string

import pytest

from consultant.match import matcher as M
from consultant.match.text import Caseless

PATTERNS = [value for value in vars(M).values() if isinstance(value, Caseless)]
SPECIAL = ["\u0130", "\u0131", "\u017f", "\u212a", "\u00df", "\u00e9", "\u2019", "\u00b5"]  # İ ı ſ K ß é ’ µ


def _texts(pattern: str, rng: random.Random) -> list[str]:
    """Words of the pattern's alternatives and their neighbours, in random case, some with
    a special character put in."""
    words = re.findall(r"[a-z][a-z\- ]+[a-z]", pattern) + ["type 2", "g2p1", "x-ray", "e/m", "t1dm"]
    out = []
    for _ in range(400):
        picked = rng.sample(words, min(len(words), rng.randint(1, 3)))
        text = " ".join(picked + rng.sample(["pain", "noted", "the", "ecto", "my"], 2))
        text = "".join(ch.upper() if rng.random() < 0.4 else ch for ch in text)
        if rng.random() < 0.4:
            at = rng.randrange(len(text) + 1)
            text = text[:at] + rng.choice(SPECIAL) + text[at + 1:]
        if rng.random() < 0.2:
            text = text.replace("i", "\u0131").replace("s", "\u017f").replace("k", "\u212a")
        out.append(text)
    return out


def test_the_matcher_has_its_context_patterns_as_caseless():
    assert len(PATTERNS) >= 9


@pytest.mark.parametrize("pattern", PATTERNS, ids=lambda p: p.pattern[:30])
def test_same_verdict_as_ignorecase(pattern):
    twin = re.compile(pattern.pattern, re.IGNORECASE)
    rng = random.Random(pattern.pattern)
    found = 0
    for text in _texts(pattern.pattern, rng):
        expected = twin.search(text) is not None
        assert pattern.found(text) == expected, text
        found += expected
    assert found  # the texts do hit the pattern, so both verdicts were tried


def test_an_ascii_character_matches_a_letter_caselessly_only_by_its_lower_case():
    """What `found` relies on for ASCII texts, checked with `re` itself."""
    for ch in map(chr, range(128)):
        for letter in string.ascii_lowercase:
            assert (re.fullmatch(letter, ch, re.IGNORECASE) is not None) == (ch.lower() == letter)


def test_special_characters_take_the_ignorecase_path():
    injury = Caseless(r"\binjur\w*")
    assert injury.found("\u0130NJURY to the knee")  # İ is an i to IGNORECASE
    assert Caseless(r"\bsprain").found("\u017fprain of ankle")  # ſ is an s to IGNORECASE
    assert not injury.found("no harm")


@pytest.mark.parametrize("bad", [r"\bE/M\b", "caf\u00e9"])
def test_only_lower_case_ascii_patterns(bad):
    with pytest.raises(ValueError):
        Caseless(bad)
