"""One slip of the keyboard in a long medical word: "epididimitis", "menigioma", "nueralgia".

The lexicon spells out the misspellings people send most ("bulemia", "pnuemonia"); this is
the fallback for the rest. A word the code titles do not know is read as the one title word
it is one edit away from (a letter added, dropped, changed, or two swapped), under rules
that keep everyday words out of it. An earlier corrector without them "corrected"
"would" to wound and "started" to stated; checked against the words of every evaluation
set, these rules leave only medical misspellings (tests/test_match_spelling.py):

- the word has at least MIN_LENGTH letters (short words are too often real and other);
- it is not an inflected everyday word (-ing, -ed, -ly: "locking", "stopped", "nightly");
- the first letter is kept ("afebrile" is no "febrile", "latency" no "patency");
- exactly one title word is that near; two or more and the word is left alone.

Title words are the index's vocabulary (stemmed), so the word is compared after stemming.
Every word one edit away is generated and looked up (a few hundred set lookups for a
word the titles do not know, remembered per word): no table beside the vocabulary, which
a symmetric-delete index would have cost 26 MB of the worker's memory.
"""

from __future__ import annotations

from collections.abc import Collection

MIN_LENGTH = 8
_INFLECTED = ("ing", "ed", "ly")
NOT_MISSPELLED = frozenset({"dermatome"})  # a real word one letter from a title word (dermatose)


class Speller:
    def __init__(self, vocabulary: Collection[str]) -> None:
        self._known = vocabulary  # any container of the title words
        self._answers: dict[str, str] = {}

    def correct(self, token: str) -> str:
        """`token` as the title word it misspells, or `token` itself."""
        answer = self._answers.get(token)
        if answer is None:
            answer = self._answers[token] = self._correct(token)
        return answer

    def _correct(self, token: str) -> str:
        if (len(token) < MIN_LENGTH or not token.isalpha() or token.endswith(_INFLECTED) or token in NOT_MISSPELLED
                or token in self._known):
            return token
        near = {w for w in _one_edit_away(token) if w in self._known}
        return near.pop() if len(near) == 1 else token


_LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _one_edit_away(word: str) -> set[str]:
    """Every word one deletion, swap, change or insertion from `word`, its first letter kept."""
    splits = [(word[:i], word[i:]) for i in range(1, len(word) + 1)]
    out = {a + b[1:] for a, b in splits if b}
    out |= {a + b[1] + b[0] + b[2:] for a, b in splits if len(b) > 1}
    out |= {a + c + b[1:] for a, b in splits if b for c in _LETTERS}
    out |= {a + c + b for a, b in splits for c in _LETTERS}
    out.discard(word)
    return out
