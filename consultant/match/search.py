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
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

from consultant.match.index import ANCESTOR, DX, ICD, PX, ROLE_COST, WITHOUT, CodeIndex
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


@dataclass(frozen=True)
class Hit:
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


def search(index: CodeIndex, query: Query, *, limit: int = 20) -> list[Hit]:
    if not query.weights:
        return []
    # words that only 7th characters use (initial, subsequent, sequela...) are
    # left to the family step and do not count against other titles
    postings = index.postings[query.group]
    base_weights = {t: w for t, w in query.weights.items() if postings[t] and t not in query.ext}
    ext_weights = {t: w for t, w in query.weights.items() if t not in base_weights}
    q_total = sum(base_weights.values()) or 1.0
    idf = index.idf[query.group]
    docs = index.docs
    doc_tokens, doc_roles, doc_start, doc_cost = docs.tokens, docs.roles, docs.start, docs.cost
    neg = query.neg
    without = index.vocab.get("without")
    doc_alias, doc_target = docs.alias, docs.target
    best: dict[int, tuple[float, int, list[int], float, float, float]] = {}
    also: dict[int, set[int]] = {}
    for d in _candidates(postings, base_weights, doc_cost):
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
                    # "without proteinuria" for a text that states proteinuria
                    penalty *= CONTRADICTED_PENALTY
                    continue
                # a word only the parent's title says explains less than the code's own words
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
    # A code's names are synonyms: query words explained by any of them
    # ("onychomycosis" by one inclusion term, "dermatophyte" by another)
    # count for the code, at the title coverage of its best name.
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
    for target, (score, d, matched, explained, _, dcov) in ranked:
        matched = frozenset(matched)  # made only for the hits kept, not for every document scored
        if target >= 0:
            row = target
        else:
            row, bonus = _pick_member(index, -target - 1, query, matched, ext_weights, q_total)
            score += bonus
        hits.append(Hit(row=row, score=round(min(score, 1.0), 4), matched=matched, alias=bool(docs.alias[d]),
                        explained=explained, dcov=round(dcov, 4)))
        if len(hits) >= limit:
            break
    hits.sort(key=lambda h: -h.score)
    return hits


def _candidates(postings: list[array], weights: dict[int, float], cost: array) -> list[int]:
    """Documents worth scoring in full: those sharing enough query weight."""
    # Words on thousands of titles ("disease", "unspecified") find no document
    # the rarer words of the query miss; they are scored, not walked.
    rare = {t: w for t, w in weights.items() if len(postings[t]) <= COMMON_POSTINGS}
    walked = iter((rare or weights).items())
    first = next(walked, None)
    if first is None:
        return []
    acc = dict.fromkeys(postings[first[0]], 0.0 + first[1])  # the first word's documents, in one step
    get = acc.get
    for t, w in walked:
        for d in postings[t]:
            acc[d] = get(d, 0.0) + w
    top = max(acc.values())
    floor = top * CANDIDATE_FLOOR
    out = [d for d, v in acc.items() if v >= floor]
    if len(out) > MAX_CANDIDATES:
        # keep the documents with the best estimated score, so that a short
        # title ("Unspecified glaucoma") is not crowded out by a hundred long
        # ones sharing one more word ("..., bilateral, stage unspecified")
        out.sort(key=lambda d: -acc[d] * (0.3 + 0.7 * min(1.0, acc[d] / (cost[d] or 1.0))))
        del out[MAX_CANDIDATES:]
    return out


def _pick_member(
    index: CodeIndex, fam: int, query: Query, matched: frozenset[int], ext_weights: dict[int, float], q_total: float
) -> tuple[int, float]:
    """Choose the 7th character: the member whose phrase says most of what the text says."""
    family = index.families[fam]
    leftover = {t: w for t, w in query.weights.items() if t not in matched}
    best_row, best_gain = family.members[0], 0.0
    for row, ext in zip(family.members, family.ext_tokens):
        gain = sum(w for t, w in leftover.items() if t in ext)
        gain -= sum(0.5 for t in ext if t in query.neg)
        if gain > best_gain + 1e-9:
            best_row, best_gain = row, gain
    bonus = 0.1 * best_gain / (q_total + sum(ext_weights.values()) or 1.0)
    return best_row, bonus
