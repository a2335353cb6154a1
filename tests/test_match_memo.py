"""The search memo (consultant/match/memo.py) answers exactly what `search` does.

Its key leaves out the negated words no candidate title holds; these tests
check, on the made-up index of test_match_search, that such words change no
hit (so leaving them out of the key is exact), that the words that do count
are kept, and that a memo small enough to evict still gives every query the
hits a fresh search gives it."""

from __future__ import annotations

import random
from dataclasses import replace

import numpy as np
import pytest

from consultant.match import search as S
from consultant.match.index import build_index
from consultant.match.memo import SearchMemo
from consultant.match.text import tokenize
from tests.test_match_search import WORDS, _queries, _rows


@pytest.mark.parametrize("seed", range(4))
def test_negations_left_out_of_the_key_change_no_hit(seed):
    index = build_index(_rows(seed))
    rng = random.Random(seed)
    checked = dropped = 0
    for query in _queries(index, rng, 150):
        planned = S.plan(index, query)
        documents = np.sort(planned.candidates).astype(np.int32)
        kept = frozenset(t for t in query.neg if S.negation_counts(index, query.group, documents, t))
        dropped += len(query.neg) - len(kept)
        for limit in (1, 12, 60):
            assert S.search(index, replace(query, neg=kept), limit=limit) == S.search(index, query, limit=limit)
            checked += 1
    assert checked and dropped  # some negations were left out, and nothing changed for it


def test_a_negated_word_on_a_candidate_title_counts():
    index = build_index(_rows(1))
    for word in WORDS:
        tokens = tokenize(word)
        if not tokens or tokens[0] not in index.vocab:
            continue
        query = S.make_query(index, tokens, neg=tokens)
        planned = S.plan(index, query)
        if len(planned.candidates):
            documents = np.sort(planned.candidates).astype(np.int32)
            assert S.negation_counts(index, query.group, documents, index.vocab[tokens[0]])
            return
    pytest.fail("no word of the made-up index found a title")


def test_seventh_character_words_always_count():
    index = build_index(_rows(2))
    none = np.zeros(0, dtype=np.int32)
    sequela = index.vocab["sequela"]
    assert S.negation_counts(index, S.DX, none, sequela)  # _pick_member reads them off the families


@pytest.mark.parametrize("size", [3, 1000])
def test_the_memo_gives_what_a_fresh_search_gives(size):
    index = build_index(_rows(5))
    rng = random.Random(5)
    queries = list(_queries(index, rng, 120))
    asked = queries + rng.sample(queries, 60)  # some again, with their own negations
    memo = SearchMemo(index, size)
    for query in asked:
        for limit in (12, 60):
            assert list(memo.hits(query, limit)) == S.search(index, query, limit=limit)
            then = memo.hits(query, limit, then=lambda hits: sorted(hits, key=lambda h: h.row), then_key=("rows",))
            assert list(then) == sorted(S.search(index, query, limit=limit), key=lambda h: h.row)
    assert len(memo) <= size


def test_one_key_asked_with_ever_new_negations_keeps_few_results(monkeypatch):
    from consultant.match import memo as memo_module

    monkeypatch.setattr(memo_module, "RESULTS_PER_KEY", 2)
    index = build_index(_rows(6))
    memo = SearchMemo(index, 100)
    words = [w for w in WORDS if w in index.vocab]
    asked = 0
    for first in words:
        for second in words:
            query = S.make_query(index, tokenize("fracture femur"), neg=[first, second])
            assert list(memo.hits(query, 12)) == S.search(index, query, limit=12)
            asked += 1
    assert asked > 50
    assert all(len(kept.results) <= 3 for kept in memo._keys.values())
