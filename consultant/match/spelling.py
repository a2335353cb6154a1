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
The deletions of the title words (symmetric delete) are built on the first word that needs
them, once per matcher, and each word's answer is remembered.
"""

from __future__ import annotations

from collections.abc import Iterable

MIN_LENGTH = 8
_INFLECTED = ("ing", "ed", "ly")
NOT_MISSPELLED = frozenset({"dermatome"})  # a real word one letter from a title word (dermatose)


class Speller:
    def __init__(self, vocabulary: Iterable[str]) -> None:
        self._vocabulary = vocabulary
        self._known: frozenset[str] | None = None
        self._by_deletion: dict[str, tuple[str, ...]] = {}
        self._answers: dict[str, str] = {}

    def correct(self, token: str) -> str:
        """`token` as the title word it misspells, or `token` itself."""
        answer = self._answers.get(token)
        if answer is None:
            answer = self._answers[token] = self._correct(token)
        return answer

    def _correct(self, token: str) -> str:
        if len(token) < MIN_LENGTH or not token.isalpha() or token.endswith(_INFLECTED) or token in NOT_MISSPELLED:
            return token
        known = self._index()
        if token in known:
            return token
        near = set(self._by_deletion.get(token, ()))
        for variant in _deletions(token):
            near.update(self._by_deletion.get(variant, ()))
        near = {w for w in near if w[0] == token[0] and _one_edit(token, w)}
        return near.pop() if len(near) == 1 else token

    def _index(self) -> frozenset[str]:
        if self._known is None:
            known = frozenset(self._vocabulary)
            table: dict[str, list[str]] = {}
            for word in known:
                if len(word) >= MIN_LENGTH - 1 and word.isalpha():
                    for variant in (word, *_deletions(word)):
                        table.setdefault(variant, []).append(word)
            self._by_deletion = {k: tuple(v) for k, v in table.items()}
            self._known = known
        return self._known


def _deletions(word: str) -> set[str]:
    return {word[:i] + word[i + 1 :] for i in range(len(word))}


def _one_edit(a: str, b: str) -> bool:
    """Damerau-Levenshtein distance of at most 1 (an insertion, a deletion, a substitution or a swap)."""
    if a == b:
        return True
    if len(a) == len(b):
        diff = [i for i in range(len(a)) if a[i] != b[i]]
        return len(diff) == 1 or (
            len(diff) == 2 and diff[1] == diff[0] + 1 and a[diff[0]] == b[diff[1]] and a[diff[1]] == b[diff[0]]
        )
    if abs(len(a) - len(b)) != 1:
        return False
    short, long = (a, b) if len(a) < len(b) else (b, a)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))
