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

The candidates are scored together with numpy rather than in a loop over each
title's tokens (the index's flat arrays are viewed, not copied). Every
per-title sum and product is still taken token by token in title order, so
the scores are bit for bit those of the loop (tests/test_match_search.py
keeps the loop as the reference). A few candidates are still scored in that
loop (`_search_loop`): below about 90, numpy's fixed costs outweigh it.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from consultant.match.index import ANCESTOR, DX, ICD, PX, ROLE_COST, WITHOUT, CodeIndex
from consultant.match.text import is_compound

CANDIDATE_FLOOR = 0.5  # of the best shared weight
MAX_CANDIDATES = 700
FEW_CANDIDATES = 90  # up to this many, a loop over the tokens is faster than numpy's fixed costs
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
    """numpy views of one index's flat document arrays (no copy), made on first use."""

    def __init__(self, index: CodeIndex) -> None:
        docs = index.docs
        self.index = index
        self.tokens = np.frombuffer(docs.tokens, dtype=np.int32) if len(docs.tokens) else np.zeros(0, np.int32)
        self.roles = np.frombuffer(docs.roles, dtype=np.uint8) if len(docs.roles) else np.zeros(0, np.uint8)
        self.start = np.frombuffer(docs.start, dtype=np.uint32).astype(np.int64)
        self.cost = np.frombuffer(docs.cost, dtype=np.float64) if len(docs.cost) else np.zeros(0)
        self.alias = np.frombuffer(docs.alias, dtype=np.uint8) if len(docs.alias) else np.zeros(0, np.uint8)
        self.target = np.frombuffer(docs.target, dtype=np.int32) if len(docs.target) else np.zeros(0, np.int32)
        self.idf = {group: np.array(weights, dtype=np.float64) for group, weights in index.idf.items()}
        # each family's 7th-character words, and all of them: a word outside them cannot pick a member
        self.family_words = [frozenset(t for words in family.ext_tokens for t in words) for family in index.families]
        self.seventh_words = frozenset().union(*self.family_words)


_ROLE_COST = np.array(ROLE_COST, dtype=np.float64)
_NEG = 1 << 20  # the mark of a negated word in a query's token table
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
    postings = index.postings[query.group]
    v = _views(index)
    if len(cand) <= FEW_CANDIDATES:
        return _search_loop(index, query, cand.tolist(), base_weights, ext_weights, q_total, limit)
    neg = query.neg
    without = index.vocab.get("without")

    # The candidates' tokens end to end; only the positions holding a query
    # word or a negated word count. Their values are then laid out as a
    # (rank, document) matrix, column j holding document cand[j]'s in token
    # order, so that every per-document sum and product runs down the columns
    # one token after another (adding 0.0 or multiplying by 1.0 past a
    # document's end) and rounds exactly as a loop over the tokens would.
    n = len(cand)
    lo = v.start[cand]
    lens = v.start[cand + 1] - lo
    ends = np.cumsum(lens)
    pos = np.arange(int(ends[-1])) + np.repeat(lo - (ends - lens), lens)
    all_tokens = v.tokens[pos]
    n_q = len(base_weights)
    qw = np.fromiter(base_weights.values(), dtype=np.float64, count=n_q)
    code = np.zeros(len(postings), dtype=np.int32)  # query word i: i + 1; negated: + _NEG
    code[np.fromiter(base_weights, dtype=np.int64, count=n_q)] = np.arange(1, n_q + 1, dtype=np.int32)
    if neg:
        code[np.fromiter(neg, dtype=np.int64, count=len(neg))] += _NEG
    codes = code[all_tokens]
    at = np.flatnonzero(codes)
    c = codes[at]
    t = all_tokens[at]
    role = v.roles[pos[at]]
    doc = np.searchsorted(ends, at, side="right")
    qi = (c & (_NEG - 1)) - 1  # the query word, -1 for none
    inq = qi >= 0
    isneg = c >= _NEG
    isw = role == WITHOUT
    # "without proteinuria" for a text that states proteinuria
    contra = inq & isw & ~isneg
    if without is not None:
        contra &= t != without
    hit = inq & ~contra
    # a word only the parent's title says explains less than the code's own words
    w = qw[qi]
    said_without = ~inq & isneg & isw
    count = np.bincount(doc, minlength=n)
    rank = np.arange(len(at)) - (np.cumsum(count) - count)[doc]
    depth = int(count.max())
    sums = np.zeros((2, depth, n))
    sums[0, rank, doc] = np.where(hit, np.where(role == ANCESTOR, w * ANCESTOR_MATCH, w), 0.0)
    sums[1, rank, doc] = np.where(hit | said_without, v.idf[query.group][t] * _ROLE_COST[role], 0.0)
    matched_q, matched_cost = np.add.reduce(sums, axis=1)
    penalised = contra | (isneg & ~isw & (hit | ~inq))
    if penalised.any():
        factors = np.ones((depth, n))
        factors[rank, doc] = np.where(contra, CONTRADICTED_PENALTY, np.where(penalised, NEGATED_PENALTY, 1.0))
        penalty = np.multiply.reduce(factors, axis=0)
    else:
        penalty = np.ones(n)
    credit = np.zeros(n)
    if said_without.any():
        credits = np.zeros((depth, n))
        credits[rank, doc] = np.where(said_without, 0.06, 0.0)
        credit = np.add.reduce(credits, axis=0)
    hit_doc = doc[hit]
    n_hit = np.bincount(hit_doc, minlength=n)

    qcov = matched_q / q_total
    cost = v.cost[cand]
    positive = cost > 0
    dcov = np.divide(matched_cost, cost, out=np.ones_like(matched_cost), where=positive)
    score = qcov * (0.3 + 0.7 * dcov) * penalty + credit
    alias = v.alias[cand].astype(bool)
    score[alias] *= 0.97
    clean = (penalty == 1.0) & (n_hit > 0)

    hit_list = t[hit].tolist()
    hit_start = (np.cumsum(n_hit) - n_hit).tolist()
    n_hits = n_hit.tolist()

    def hit_tokens(j: int) -> list[int]:
        """The query words document cand[j] explains, in its order."""
        return hit_list[hit_start[j] : hit_start[j] + n_hits[j]]

    # Each target (code or family) keeps its best name: the highest score,
    # the first candidate on a tie; targets rank by score, then by the first
    # candidate that named them.
    target = v.target[cand]
    order = np.lexsort((-score, target))  # stable: the first name on a tie
    sorted_target = target[order]
    first_of_group = np.empty(n, dtype=bool)
    first_of_group[0] = True
    np.not_equal(sorted_target[1:], sorted_target[:-1], out=first_of_group[1:])
    starts = np.flatnonzero(first_of_group)
    best_j = order[starts]
    first_j = np.minimum.reduceat(order, starts)
    final = score[best_j]

    # A code's names are synonyms: query words explained by any of them
    # ("onychomycosis" by one inclusion term, "dermatophyte" by another)
    # count for the code, at the title coverage of its best name. `seen`:
    # how many query words a target's unpenalised names explain together.
    unions: dict[int, tuple[frozenset[int], float]] = {}
    widened = np.zeros(0, dtype=np.int64)
    if len(starts) < n:  # some target has several names
        group = np.empty(n, dtype=np.int64)
        group[order] = np.cumsum(first_of_group) - 1
        in_clean = clean[hit_doc]
        pairs = np.sort(group[hit_doc[in_clean]] * n_q + qi[hit][in_clean])
        if len(pairs):
            pairs = pairs[np.concatenate(([True], pairs[1:] != pairs[:-1]))]
        seen = np.bincount(pairs // n_q, minlength=len(starts))
        widened = np.flatnonzero((seen > n_hit[best_j]) & (final > credit[best_j]))
    if len(widened):
        clean_sorted = clean[order]
        per_group = np.add.reduceat(clean_sorted.astype(np.int64), starts)
        clean_groups = np.split(order[clean_sorted], np.cumsum(per_group)[:-1])
        for g in widened.tolist():
            j = int(best_j[g])
            js = np.sort(clean_groups[g]).tolist()  # the names in candidate order
            tokens = set(hit_tokens(js[0]))
            for other in js[1:]:
                tokens.update(hit_tokens(other))
            explained = float(matched_q[j])
            union_tokens = tokens | frozenset(hit_tokens(j))
            union = sum(base_weights[tok] for tok in union_tokens)
            if union > explained:
                gain = union / explained if explained else 1.0
                score_t, credit_t = float(final[g]), float(credit[j])
                final[g] = (score_t - credit_t) * gain + credit_t
                unions[g] = (frozenset(union_tokens), union)
    ranked = np.lexsort((first_j, -final))[: max(limit, 1)]
    chosen = best_j[ranked]
    hits: list[Hit] = []
    shared: dict[frozenset[int], frozenset[int]] = {}  # hits of one search mostly explain the same words
    for g, j, score_t, target_t, explained, is_alias, dcov_t in zip(
        ranked.tolist(), chosen.tolist(), final[ranked].tolist(), target[chosen].tolist(),
        matched_q[chosen].tolist(), alias[chosen].tolist(), dcov[chosen].tolist(),
    ):
        union = unions.get(g)
        if union is None:
            matched = frozenset(hit_tokens(j))
        else:
            matched, explained = union
        hits.append(_hit(index, query, target_t, score_t, shared.setdefault(matched, matched), alias=is_alias,
                         explained=explained, dcov=dcov_t, ext_weights=ext_weights, q_total=q_total))
    hits.sort(key=lambda h: -h.score)
    return hits


def _hit(index: CodeIndex, query: Query, target: int, score: float, matched: frozenset[int], *, alias: bool,
         explained: float, dcov: float, ext_weights: dict[int, float], q_total: float) -> Hit:
    """A ranked document as a hit; a 7th-character family (target < 0) resolved to one member."""
    if target >= 0:
        row = target
    else:
        row, bonus = _pick_member(index, -target - 1, query, matched, ext_weights, q_total)
        score += bonus
    return Hit(row=row, score=round(min(score, 1.0), 4), matched=matched, alias=alias, explained=explained,
               dcov=round(dcov, 4))


def _search_loop(
    index: CodeIndex, query: Query, candidates: list[int], base_weights: dict[int, float],
    ext_weights: dict[int, float], q_total: float, limit: int,
) -> list[Hit]:
    """What search() computes, as a loop over each candidate's tokens (for a few candidates)."""
    idf = index.idf[query.group]
    docs = index.docs
    doc_tokens, doc_roles, doc_start, doc_cost = docs.tokens, docs.roles, docs.start, docs.cost
    neg = query.neg
    without = index.vocab.get("without")
    doc_alias, doc_target = docs.alias, docs.target
    best: dict[int, tuple[float, int, list[int], float, float, float]] = {}
    also: dict[int, set[int]] = {}
    for d in candidates:
        lo, hi = doc_start[d], doc_start[d + 1]
        matched_q = 0.0
        matched_cost = 0.0
        penalty = 1.0
        credit = 0.0
        hit_tokens = []
        for t, role in zip(doc_tokens[lo:hi], doc_roles[lo:hi]):
            w = base_weights.get(t)
            if w is not None:
                if role == WITHOUT and t not in neg and t != without:
                    penalty *= CONTRADICTED_PENALTY
                    continue
                matched_q += w * ANCESTOR_MATCH if role == ANCESTOR else w
                matched_cost += idf[t] * ROLE_COST[role]
                hit_tokens.append(t)
                if t in neg and role != WITHOUT:
                    penalty *= NEGATED_PENALTY
            elif t in neg:
                if role == WITHOUT:
                    credit += 0.06
                    matched_cost += idf[t] * ROLE_COST[role]
                else:
                    penalty *= NEGATED_PENALTY
        qcov = matched_q / q_total
        cost = doc_cost[d]
        dcov = matched_cost / cost if cost > 0 else 1.0
        score = qcov * (0.3 + 0.7 * dcov) * penalty + credit
        if doc_alias[d]:
            score *= 0.97
        target = doc_target[d]
        prev = best.get(target)
        if prev is None or score > prev[0]:
            best[target] = (score, d, hit_tokens, matched_q, credit, dcov)
        if penalty == 1.0 and hit_tokens:
            seen = also.get(target)
            if seen is None:
                also[target] = set(hit_tokens)
            else:
                seen.update(hit_tokens)
    for target, tokens in also.items():
        score, d, matched, explained, credit, dcov = best[target]
        if len(tokens) > len(matched) and score > credit:
            union_tokens = tokens | frozenset(matched)
            union = sum(base_weights[t] for t in union_tokens)
            if union > explained:
                gain = union / explained if explained else 1.0
                best[target] = ((score - credit) * gain + credit, d, union_tokens, union, credit, dcov)
    ranked = sorted(best.items(), key=lambda kv: -kv[1][0])
    hits: list[Hit] = []
    shared: dict[frozenset[int], frozenset[int]] = {}
    for target, (score, d, matched, explained, _, dcov) in ranked:
        matched = frozenset(matched)
        hits.append(_hit(index, query, target, score, shared.setdefault(matched, matched), alias=bool(doc_alias[d]),
                         explained=explained, dcov=dcov, ext_weights=ext_weights, q_total=q_total))
        if len(hits) >= limit:
            break
    hits.sort(key=lambda h: -h.score)
    return hits


def _candidates(postings: list[array], weights: dict[int, float], cost: np.ndarray) -> np.ndarray:
    """Documents worth scoring in full: those sharing enough query weight, in
    the order the query's words first reach them."""
    # Words on thousands of titles ("disease", "unspecified") find no document
    # the rarer words of the query miss; they are scored, not walked.
    rare = {t: w for t, w in weights.items() if len(postings[t]) <= COMMON_POSTINGS}
    walked = list((rare or weights).items())
    if not walked:
        return np.zeros(0, dtype=np.int64)
    # The first word counts once per document, the others once per
    # occurrence; each document's sum runs in walking order (a stable sort
    # keeps it, np.bincount adds in order), as the dict of sums did.
    first = np.frombuffer(postings[walked[0][0]], dtype=np.int32)
    if len(first) > 1 and (first[1:] == first[:-1]).any():
        first = np.unique(first)
    lists = [first] + [np.frombuffer(postings[t], dtype=np.int32) for t, _ in walked[1:]]
    found = np.concatenate(lists)
    weight = np.repeat(np.array([w for _, w in walked], dtype=np.float64), [len(a) for a in lists])
    order = np.argsort(found, kind="stable")  # sorted runs: a merge
    found = found[order]
    new = np.empty(len(found), dtype=bool)
    new[0] = True
    np.not_equal(found[1:], found[:-1], out=new[1:])
    acc = np.bincount(np.cumsum(new) - 1, weights=weight[order])
    keep = acc >= acc.max() * CANDIDATE_FLOOR
    reached = order[new][keep]  # where the walk first reached each kept document
    out = found[new][keep].astype(np.int64)
    acc = acc[keep]
    by_walk = np.argsort(reached)
    out, acc = out[by_walk], acc[by_walk]
    if len(out) > MAX_CANDIDATES:
        # keep the documents with the best estimated score, so that a short
        # title ("Unspecified glaucoma") is not crowded out by a hundred long
        # ones sharing one more word ("..., bilateral, stage unspecified")
        c = cost[out]
        c = np.where(c == 0.0, 1.0, c)  # `cost or 1.0`
        key = -acc * (0.3 + 0.7 * np.minimum(1.0, acc / c))
        out = out[np.argsort(key, kind="stable")[:MAX_CANDIDATES]]
    return out


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
