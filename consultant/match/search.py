"""Ranking code titles against the words of one finding.

A finding's tokens (after lexicon rewriting) are weighted by how rare they are
among code titles. A title scores by two coverages multiplied together: how
much of the finding it explains, and how little of the title is left
unexplained. Unexplained title words cost by role: "unspecified" and friends
cost almost nothing (that is how the default code wins when the text gives no
detail), a "without ..." clause costs little, "other" costs half, and every
other word costs its full weight (so "with hyperglycemia" must be asked for).

Negated words change the picture: a title that needs a negated word ("with
bleeding" after "no bleeding") is pushed down, and a title that says
"without" it is credited.

Each search first picks its candidates from the postings of the query's
rarer words (`plan`, with numpy), then scores every candidate title token by
token in title order, in C (`_scoring.c`, built by setup.py), and ranks them
here. The C loop does in double precision what the Python loop in
tests/test_match_search.py does, operation for operation, so the scores are
bit for bit the reference loop's; that test compares every hit.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from consultant.match import _scoring
from consultant.match.index import ANCESTOR, DX, ROLE_COST, WITHOUT, CodeIndex
from consultant.match.text import is_compound

CANDIDATE_FLOOR = 0.5  # of the best shared weight
MAX_CANDIDATES = 700
COMMON_POSTINGS = 4000  # postings longer than this do not generate candidates
NEGATED_PENALTY = 0.1  # a title that needs a negated word is all but excluded
CONTRADICTED_PENALTY = 0.35  # a title that says "without" a word the text states
COMPOUND_WEIGHT = 0.25  # "stage2" only breaks ties between stages
NUMBER_WEIGHT = 0.5  # a bare number ("one or more") says little without its axis word
ANCESTOR_MATCH = 0.6  # share of a query word's weight explained by an inherited parent word
NEGATED_WORD_WEIGHT = 0.3  # "without agoraphobia": the absent word weighs less than the finding


@dataclass(frozen=True)
class Query:
    weights: dict[int, float]  # token id -> weight
    neg: frozenset[int] = frozenset()  # token ids the text negates
    group: str = DX  # DX: ICD-10-CM; PX: procedures and supplies (PCS, CPT, HCPCS)
    ext: frozenset[int] = frozenset()  # token ids used only to pick a 7th character


class Hit(NamedTuple):  # a tuple: made by the ten thousand, and shared by the memo (matcher.SEARCH_MEMO)
    row: int  # the reportable code (family resolved to one member)
    score: float
    matched: frozenset[int]  # query token ids the code explains
    alias: bool = False
    explained: float = 0.0  # absolute query weight explained
    dcov: float = 0.0  # how much of the best-matching name the text explains


def make_query(
    index: CodeIndex, tokens: list[str], *, neg: list[str] = (), group: str = DX, ext: list[str] = (),
    light: frozenset[str] | tuple = (),
) -> Query:
    """`ext` tokens (encounter words said elsewhere in the text) only choose 7th characters."""
    idf = index.idf[group]
    weights: dict[int, float] = {}
    for t in [*tokens, *ext]:
        tid = index.vocab.get(t)
        if tid is not None:
            # "stage2" only breaks ties between stages: a rare token, kept light
            weights[tid] = idf[tid] * (
                COMPOUND_WEIGHT if is_compound(t) else NUMBER_WEIGHT if t.isdigit() or t in light else 1.0
            )
    neg_ids = frozenset(index.vocab[t] for t in neg if t in index.vocab)
    for tid in neg_ids:
        # "without agoraphobia": the absent word says which code, not what the finding is
        if tid in weights:
            weights[tid] *= NEGATED_WORD_WEIGHT
    without = index.vocab.get("without")
    if without in weights:
        weights[without] *= NEGATED_WORD_WEIGHT
    ext_ids = frozenset(index.vocab[t] for t in ext if t in index.vocab and t not in tokens)
    return Query(weights=weights, neg=neg_ids, group=group, ext=ext_ids)


class _Arrays:
    """What searches of one index read besides the index itself, made on first use."""

    def __init__(self, index: CodeIndex) -> None:
        docs = index.docs
        self.index = index
        self.cost = np.frombuffer(docs.cost, dtype=np.float64) if len(docs.cost) else np.zeros(0)
        self.idf = {group: np.array(weights, dtype=np.float64) for group, weights in index.idf.items()}
        # each family's 7th-character words, and all of them: a word outside them cannot pick a member
        self.family_words = [frozenset(t for words in family.ext_tokens for t in words) for family in index.families]
        self.seventh_words = frozenset().union(*self.family_words)


_ROLE_COST = np.array(ROLE_COST, dtype=np.float64)
_arrays: _Arrays | None = None


def prepare(index: CodeIndex) -> None:
    """Make the index's arrays and word sets at start-up rather than in the first search (10-20 ms)."""
    _views(index)


def _views(index: CodeIndex) -> _Arrays:
    global _arrays
    arrays = _arrays
    if arrays is None or arrays.index is not index:
        arrays = _arrays = _Arrays(index)
    return arrays


@dataclass(frozen=True, slots=True)
class Plan:
    """What a query's weighted words alone decide, before its negations: the documents worth scoring."""

    candidates: np.ndarray  # document numbers, in the order the query's words reach them
    base_weights: dict[int, float]
    ext_weights: dict[int, float]
    q_total: float


def negation_counts(index: CodeIndex, group: str, documents: np.ndarray, token: int) -> bool:
    """Whether negating `token` can change the hits of a search over `documents` (sorted
    document numbers, int32): only a word on one of their titles can, or a 7th-character word
    (`_pick_member` reads those off the families). Any other negated word leaves every score
    as it is."""
    if token in _views(index).seventh_words:
        return True
    docs = index.postings[group][token]
    if not len(docs) or not len(documents):
        return False
    found = np.frombuffer(docs, dtype=np.int32)
    at = np.searchsorted(documents, found)
    np.minimum(at, len(documents) - 1, out=at)
    return bool((documents[at] == found).any())


def plan(index: CodeIndex, query: Query) -> Plan:
    # words that only 7th characters use (initial, subsequent, sequela...) are
    # left to the family step and do not count against other titles
    postings = index.postings[query.group]
    base_weights = {t: w for t, w in query.weights.items() if postings[t] and t not in query.ext}
    ext_weights = {t: w for t, w in query.weights.items() if t not in base_weights}
    q_total = sum(base_weights.values()) or 1.0
    cand = _candidates(postings, base_weights, _views(index).cost)
    return Plan(cand, base_weights, ext_weights, q_total)


def search(index: CodeIndex, query: Query, *, limit: int = 20, planned: Plan | None = None) -> list[Hit]:
    """The `limit` best codes for `query`; `planned`: its `plan`, made already."""
    if not query.weights:
        return []
    p = planned or plan(index, query)
    base_weights, ext_weights, q_total, cand = p.base_weights, p.ext_weights, p.q_total, p.candidates
    if not len(cand):
        return []
    docs = index.docs
    without = index.vocab.get("without")
    # Every candidate title scored token by token, in C (_scoring.c): the explained query
    # weight, the title coverage, the penalties and credits, each target's best name.
    n_slots, slot_target, slot_best, slot_score, widen, explained, dcov, credit, clean, slot_of, hit_start, hits = (
        _scoring.score(
            docs.tokens, docs.roles, docs.start, docs.cost, docs.alias, docs.target, _views(index).idf[query.group],
            cand, base_weights, query.neg, -1 if without is None else without, q_total, ANCESTOR, WITHOUT,
            _ROLE_COST, ANCESTOR_MATCH, CONTRADICTED_PENALTY, NEGATED_PENALTY,
        )
    )
    best = memoryview(slot_best).cast("i")
    explained = memoryview(explained).cast("d")
    hit_start = memoryview(hit_start).cast("i")
    hits_flat = memoryview(hits).cast("i")

    def hit_tokens(j: int) -> list[int]:
        """The query words candidate j explains, in its title's order."""
        return hits_flat[hit_start[j] : hit_start[j + 1]].tolist()

    final = np.frombuffer(slot_score, dtype=np.float64, count=n_slots)
    # A code's names are synonyms: query words explained by any of its clean names
    # ("onychomycosis" by one inclusion term, "dermatophyte" by another) count for the
    # code, at the title coverage of its best name. The sets are built as the reference
    # loop builds them, so that their sums add in the same order.
    unions: dict[int, tuple[frozenset[int], float]] = {}
    if widen:
        final = final.copy()
        credits = memoryview(credit).cast("d")
        is_clean = np.frombuffer(clean, dtype=np.uint8).view(bool)
        names = np.frombuffer(slot_of, dtype=np.int32)[is_clean]  # the target slot of each clean name
        clean_js = np.flatnonzero(is_clean)
        for s in widen:
            j = best[s]
            tokens: set[int] = set()
            for other in clean_js[names == s].tolist():  # in candidate order
                tokens.update(hit_tokens(other))
            union_tokens = tokens | frozenset(hit_tokens(j))
            union = sum(base_weights[t] for t in union_tokens)
            if union > explained[j]:
                gain = union / explained[j] if explained[j] else 1.0
                final[s] = (float(final[s]) - credits[j]) * gain + credits[j]
                unions[s] = (frozenset(union_tokens), union)
    # targets rank by score, then by the first candidate that named them (their slot order)
    order = np.argsort(-final, kind="stable")[: max(limit, 1)]
    coverage = memoryview(dcov).cast("d")
    targets = memoryview(slot_target).cast("i")
    documents = memoryview(cand).cast("B").cast("q")
    doc_alias = docs.alias
    out: list[Hit] = []
    shared: dict[frozenset[int], frozenset[int]] = {}  # hits of one search mostly explain the same words
    for s, score in zip(order.tolist(), final[order].tolist()):
        j = best[s]
        union = unions.get(s)
        matched, weight = union if union is not None else (frozenset(hit_tokens(j)), explained[j])
        matched = shared.setdefault(matched, matched)
        row = targets[s]
        if row < 0:  # a 7th-character family, resolved to one member
            row, bonus = _pick_member(index, -row - 1, query, matched, ext_weights, q_total)
            score += bonus
        out.append(Hit(row, round(min(score, 1.0), 4), matched, bool(doc_alias[documents[j]]), weight,
                       round(coverage[j], 4)))
    out.sort(key=lambda h: -h.score)
    return out


def _candidates(postings: list[array], weights: dict[int, float], cost: np.ndarray) -> np.ndarray:
    """Documents worth scoring in full: those sharing enough query weight, in
    the order the query's words first reach them (`_scoring.candidates`)."""
    # Words on thousands of titles ("disease", "unspecified") find no document
    # the rarer words of the query miss; they are scored, not walked.
    rare = {t: w for t, w in weights.items() if len(postings[t]) <= COMMON_POSTINGS}
    walked = rare or weights
    found = _scoring.candidates([postings[t] for t in walked], list(walked.values()), cost, CANDIDATE_FLOOR,
                                MAX_CANDIDATES)
    return np.frombuffer(found, dtype=np.int64)


def _pick_member(
    index: CodeIndex, fam: int, query: Query, matched: frozenset[int], ext_weights: dict[int, float], q_total: float
) -> tuple[int, float]:
    """Choose the 7th character: the member whose phrase says most of what the text says."""
    family = index.families[fam]
    words = _views(index).family_words[fam]
    # only the family's own 7th-character words can make a gain (in the query's order, so
    # each sum adds the same numbers in the same order as over all the query's words)
    leftover = [(t, w) for t, w in query.weights.items() if t in words and t not in matched]
    best_row, best_gain = family.members[0], 0.0
    if not leftover:
        return best_row, 0.0  # no member gains anything: the first one
    negated = words.intersection(query.neg)
    for row, ext in zip(family.members, family.ext_tokens):
        gain = sum(w for t, w in leftover if t in ext)
        gain -= 0.5 * len(negated.intersection(ext))
        if gain > best_gain + 1e-9:
            best_row, best_gain = row, gain
    bonus = 0.1 * best_gain / (q_total + sum(ext_weights.values()) or 1.0)
    return best_row, bonus
