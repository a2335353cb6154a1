"""The ranking (consultant/match/search.py, its scoring loop in C) gives exactly
what the Python loop over each candidate's tokens gave: same codes, same
order, same scores to the last bit, on a made-up index with negations,
"without" clauses, inclusion terms, ancestors and 7th-character families."""

from __future__ import annotations

import random
from array import array

import numpy as np
import pytest

from consultant.match import _scoring
from consultant.match import search as S
from consultant.match.index import ANCESTOR, DX, ICD, PX, ROLE_COST, WITHOUT, build_index
from consultant.match.text import tokenize


def _reference_candidates(postings: list[array], weights: dict[int, float], cost: array) -> list[int]:
    rare = {t: w for t, w in weights.items() if len(postings[t]) <= S.COMMON_POSTINGS}
    walked = iter((rare or weights).items())
    first = next(walked, None)
    if first is None:
        return []
    acc = dict.fromkeys(postings[first[0]], 0.0 + first[1])
    get = acc.get
    for t, w in walked:
        for d in postings[t]:
            acc[d] = get(d, 0.0) + w
    top = max(acc.values())
    floor = top * S.CANDIDATE_FLOOR
    out = [d for d, v in acc.items() if v >= floor]
    if len(out) > S.MAX_CANDIDATES:
        out.sort(key=lambda d: -acc[d] * (0.3 + 0.7 * min(1.0, acc[d] / (cost[d] or 1.0))))
        del out[S.MAX_CANDIDATES:]
    return out


def _reference_search(index, query, *, limit: int = 20) -> list[S.Hit]:
    """The loop over each candidate's tokens that search() replaced."""
    if not query.weights:
        return []
    postings = index.postings[query.group]
    base_weights = {t: w for t, w in query.weights.items() if postings[t] and t not in query.ext}
    ext_weights = {t: w for t, w in query.weights.items() if t not in base_weights}
    q_total = sum(base_weights.values()) or 1.0
    idf = index.idf[query.group]
    docs = index.docs
    neg = query.neg
    without = index.vocab.get("without")
    best: dict = {}
    also: dict = {}
    for d in _reference_candidates(postings, base_weights, docs.cost):
        lo, hi = docs.start[d], docs.start[d + 1]
        matched_q = matched_cost = credit = 0.0
        penalty = 1.0
        hit_tokens = []
        for t, role in zip(docs.tokens[lo:hi], docs.roles[lo:hi]):
            w = base_weights.get(t)
            if w is not None:
                if role == WITHOUT and t not in neg and t != without:
                    penalty *= S.CONTRADICTED_PENALTY
                    continue
                matched_q += w * S.ANCESTOR_MATCH if role == ANCESTOR else w
                matched_cost += idf[t] * ROLE_COST[role]
                hit_tokens.append(t)
                if t in neg and role != WITHOUT:
                    penalty *= S.NEGATED_PENALTY
            elif t in neg:
                if role == WITHOUT:
                    credit += 0.06
                    matched_cost += idf[t] * ROLE_COST[role]
                else:
                    penalty *= S.NEGATED_PENALTY
        qcov = matched_q / q_total
        cost = docs.cost[d]
        dcov = matched_cost / cost if cost > 0 else 1.0
        score = qcov * (0.3 + 0.7 * dcov) * penalty + credit
        if docs.alias[d]:
            score *= 0.97
        target = docs.target[d]
        prev = best.get(target)
        if prev is None or score > prev[0]:
            best[target] = (score, d, hit_tokens, matched_q, credit, dcov)
        if penalty == 1.0 and hit_tokens:
            also.setdefault(target, set()).update(hit_tokens)
    for target, tokens in also.items():
        score, d, matched, explained, credit, dcov = best[target]
        if len(tokens) > len(matched) and score > credit:
            union_tokens = tokens | frozenset(matched)
            union = sum(base_weights[t] for t in union_tokens)
            if union > explained:
                gain = union / explained if explained else 1.0
                best[target] = ((score - credit) * gain + credit, d, union_tokens, union, credit, dcov)
    hits = []
    for target, (score, d, matched, explained, _, dcov) in sorted(best.items(), key=lambda kv: -kv[1][0]):
        matched = frozenset(matched)
        if target >= 0:
            row = target
        else:
            row, bonus = S._pick_member(index, -target - 1, query, matched, ext_weights, q_total)
            score += bonus
        hits.append(S.Hit(row=row, score=round(min(score, 1.0), 4), matched=matched, alias=bool(docs.alias[d]),
                          explained=explained, dcov=round(dcov, 4)))
        if len(hits) >= limit:
            break
    hits.sort(key=lambda h: -h.score)
    return hits


WORDS = ("reflux esophagitis bleeding ulcer gastric duodenal chronic acute fracture femur humerus wrist "
         "infection bacterial viral pneumonia asthma diabetes neuropathy retinopathy kidney hypertension "
         "heart failure stage left right bilateral").split()
SEVENTH = (
    ("A", "initial encounter for closed fracture"),
    ("D", "subsequent encounter for fracture with routine healing"),
    ("S", "sequela"),
)


def _title(rng: random.Random) -> str:
    title = " ".join(rng.sample(WORDS, rng.randint(1, 5))).capitalize()
    extra = rng.random()
    if extra < 0.25:
        title += f" without {rng.choice(WORDS)}"
    elif extra < 0.45:
        title += f", {rng.choice(('unspecified', 'other', 'not elsewhere classified'))}"
    elif extra < 0.6:
        title += f" with {rng.choice(WORDS)} and {rng.choice(WORDS)}"
    return title


def _rows(seed: int) -> list[dict]:
    rng = random.Random(seed)

    def row(code, official, *, billable=True, parent="", notes=None, system=ICD):
        return {"system": system, "code": code, "display": code, "official": official, "short": "", "plain": "",
                "billable": billable, "parent": parent, "status": "valid", "change": "", "replaced_by": [],
                "notes": notes or {}, "release": "test", "kind": "code"}

    rows = []
    for h in range(12):
        head = f"K{h + 10:02d}"
        rows.append(row(head, _title(rng), billable=False,
                        notes={"inclusion": [_title(rng)]} if rng.random() < 0.5 else None))
        for c in range(rng.randint(2, 8)):
            notes = {"inclusion": [_title(rng) for _ in range(rng.randint(1, 3))]} if rng.random() < 0.4 else None
            rows.append(row(f"{head}.{c}", _title(rng), parent=head, notes=notes))
    for f in range(4):  # 7th-character families
        base, title = f"S{f + 40}.00{f}", _title(rng)
        rows.append(row(base, title, billable=False))
        for ch, phrase in SEVENTH:
            rows.append(row(f"{base}{ch}", f"{title}, {phrase}", parent=base))
    for c in range(10):
        rows.append(row(f"0{c}", _title(rng), system="CPT"))
    return rows


def _queries(index, rng: random.Random, n: int):
    for _ in range(n):
        tokens = tokenize(" ".join(rng.sample(WORDS, rng.randint(1, 6))))
        neg = tokenize(" ".join(rng.sample(WORDS, rng.randint(0, 2))))
        if rng.random() < 0.3:
            neg = [*neg, "without"]
        ext = tokenize(rng.choice(("", "", "initial encounter", "sequela", "subsequent routine healing")))
        group = PX if rng.random() < 0.15 else DX
        yield S.make_query(index, [*tokens, *(t for t in neg if rng.random() < 0.5)], neg=neg, ext=ext, group=group)


@pytest.mark.parametrize("seed", range(6))
def test_same_hits_as_the_token_loop(seed):
    index = build_index(_rows(seed))
    assert index.families  # the made-up S codes form 7th-character families
    rng = random.Random(seed)
    for query in _queries(index, rng, 150):
        for limit in (1, 12, 60):
            assert S.search(index, query, limit=limit) == _reference_search(index, query, limit=limit)


def test_same_hits_when_candidates_are_cut(monkeypatch):
    """More documents than MAX_CANDIDATES: the same ones are kept, in the same order."""
    monkeypatch.setattr(S, "MAX_CANDIDATES", 4)
    monkeypatch.setattr(S, "COMMON_POSTINGS", 6)
    index = build_index(_rows(99))
    rng = random.Random(99)
    for query in _queries(index, rng, 200):
        assert S.search(index, query, limit=60) == _reference_search(index, query, limit=60)


def test_candidates_in_walking_order():
    index = build_index(_rows(3))
    rng = random.Random(3)
    cost = S._views(index).cost
    for query in _queries(index, rng, 100):
        postings = index.postings[query.group]
        weights = {t: w for t, w in query.weights.items() if postings[t] and t not in query.ext}
        got = S._candidates(postings, weights, cost).tolist()
        assert got == _reference_candidates(postings, weights, index.docs.cost)


def test_no_query_words_no_hits():
    index = build_index(_rows(0))
    assert S.search(index, S.make_query(index, ["zzzunknown"])) == []
    only_ext = S.make_query(index, [], ext=tokenize("sequela"))
    assert S.search(index, only_ext) == _reference_search(index, only_ext)


def _score_args(index, query, candidates):
    docs = index.docs
    return [docs.tokens, docs.roles, docs.start, docs.cost, docs.alias, docs.target,
            S._views(index).idf[query.group], candidates, dict(query.weights), query.neg, -1, 1.0,
            ANCESTOR, WITHOUT, S._ROLE_COST, S.ANCESTOR_MATCH, S.CONTRADICTED_PENALTY, S.NEGATED_PENALTY]


def test_scoring_refuses_what_lies_outside_the_index():
    """A damaged index or a bad candidate raises ValueError; nothing is read outside the arrays."""
    index = build_index(_rows(1))
    query = S.make_query(index, tokenize("chronic gastric ulcer"))
    n_docs = len(index.docs)
    assert _scoring.score(*_score_args(index, query, np.array([0, n_docs - 1], dtype=np.int64)))[0] >= 1
    for bad in (-1, n_docs, 10**9):
        with pytest.raises(ValueError, match="candidate outside"):
            _scoring.score(*_score_args(index, query, np.array([0, bad], dtype=np.int64)))
    args = _score_args(index, query, np.array([0], dtype=np.int64))
    args[8] = {len(args[6]) + 5: 1.0}  # a query word past the vocabulary
    with pytest.raises(ValueError, match="vocabulary"):
        _scoring.score(*args)
    args = _score_args(index, query, np.array([0], dtype=np.int64))
    args[1] = bytes(len(index.docs.roles) - 1)  # roles shorter than the tokens
    with pytest.raises(ValueError, match="disagree"):
        _scoring.score(*args)
    args = _score_args(index, query, np.array([0], dtype=np.int64))
    args[7] = np.array([0], dtype=np.int16).tobytes() + b"\0"  # not whole 8-byte numbers
    with pytest.raises(ValueError, match="whole number"):
        _scoring.score(*args)


def test_candidates_refuse_a_posting_outside_the_documents():
    index = build_index(_rows(2))
    cost = S._views(index).cost
    n_docs = len(index.docs)
    assert _scoring.candidates([array("i", [0, 1]), array("i", [1])], [1.0, 2.0], cost, 0.5, 10) != b""
    for bad in (-1, n_docs):
        with pytest.raises(ValueError, match="posting outside"):
            _scoring.candidates([array("i", [0, bad])], [1.0], cost, 0.5, 10)
    with pytest.raises(ValueError, match="one weight"):
        _scoring.candidates([array("i", [0])], [], cost, 0.5, 10)
