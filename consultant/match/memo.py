"""Searches remembered across questions, exactly.

A search's hits depend on its query's weighted words, its 7th-character
words, its group and its limit (the key), and on its negated words only
where the candidates' titles hold them (`search.negation_counts`): a note
that denies fever searches "hypertension" exactly as one that denies chest
pain does. So each key keeps the candidates' numbers and one result per set
of negated words that count, and a search asked again with other negations
that change nothing is a lookup. Before, the whole set of a note's negated
words was part of the key, and a third of the searches of a day's notes
were run again for that alone (docs/BENCHMARKS.md).

The matcher's own steps after a search (the context and side rules of
`CodeMatcher._search`) are kept beside its result, keyed by what they read
(`then_key`), so a remembered search skips them too. What is kept are token
ids and code rows, never a question's text.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence

import numpy as np

from consultant.match.index import CodeIndex
from consultant.match.search import Hit, Query, negation_counts, plan, prepare, search

RESULTS_PER_KEY = 16  # results kept for one key (negation sets x rules after the search)


class _Remembered:
    """One key's candidates, each negated word's verdict, and its results. The candidates are
    sorted (for `negation_counts`) only when a query of this key first negates a word."""

    __slots__ = ("_documents", "_sorted", "results", "verdicts")

    def __init__(self, candidates: np.ndarray) -> None:
        self._documents = candidates
        self._sorted = False
        self.verdicts: dict[int, bool] = {}
        self.results: dict[tuple[frozenset[int], Hashable], Sequence[Hit]] = {}

    @property
    def documents(self) -> np.ndarray:
        if not self._sorted:
            self._documents, self._sorted = np.sort(self._documents), True
        return self._documents


class SearchMemo:
    """`search` for the matcher, remembering up to `size` keys (least recently used goes first)."""

    def __init__(self, index: CodeIndex, size: int) -> None:
        self.index = index
        self.size = size
        prepare(index)
        self._keys: OrderedDict[tuple, _Remembered] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def hits(
        self, query: Query, limit: int, *, then: Callable[[Sequence[Hit]], Sequence[Hit]] | None = None,
        then_key: Hashable = None,
    ) -> Sequence[Hit]:
        """`search(query, limit)`, and `then` applied to it when given: `then` must depend on
        nothing but the hits and `then_key` (a tuple)."""
        key = (frozenset(query.weights.items()), query.group, query.ext, limit)
        remembered = self._keys.get(key)
        planned = None
        if remembered is None:
            planned = plan(self.index, query)
            remembered = self._keys[key] = _Remembered(planned.candidates)
            if len(self._keys) > self.size:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key)
        neg = self._negations(remembered, query)
        results = remembered.results
        found = results.get((neg, then_key)) if then is not None else None
        if found is not None:
            return found
        hits = results.get((neg, None))
        if hits is None:
            if len(results) >= RESULTS_PER_KEY:
                results.clear()  # a word searched with ever new negations: its memory stays bounded
            hits = results[(neg, None)] = tuple(search(self.index, query, limit=limit, planned=planned))
        if then is None:
            return hits
        found = results[(neg, then_key)] = tuple(then(hits))
        return found

    def _negations(self, remembered: _Remembered, query: Query) -> frozenset[int]:
        if not query.neg:
            return query.neg
        verdicts = remembered.verdicts
        kept = []
        for token in query.neg:
            counts = verdicts.get(token)
            if counts is None:
                counts = verdicts[token] = negation_counts(self.index, query.group, remembered.documents, token)
            if counts:
                kept.append(token)
        return frozenset(kept)
