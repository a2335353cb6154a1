"""Splitting a note into findings and deciding what each one asserts.

A finding is a clause: sentences are cut at full stops, semicolons and
colons, and again at commas and at words that turn the sense ("but",
"however"). Inside a clause a negation trigger ("no", "denies", "negative
for", "ruled out") negates everything after it (or, for triggers written
after the condition, such as "was ruled out", everything before it).

Outpatient coding does not code uncertain diagnoses ("probable", "suspected",
"rule out"); those clauses are marked uncertain so that their codes are
suppressed, as negated ones are. Inpatient wording ("admitted", "discharge")
turns that rule off.

"History of" and its cousins mark a clause as history: the condition is not
current, and the history codes (Z85-Z87) are searched instead. "Family
history" is kept apart (Z80-Z84).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from consultant.match.lexicon import Lexicon


@dataclass(frozen=True)
class Clause:
    text: str  # as written
    words: tuple[str, ...]  # after lexicon rewriting
    negated: bool = False
    uncertain: bool = False
    history: bool = False
    family: bool = False
    evidence: tuple[str, ...] = ()
    sentence: int = 0


_SENTENCE = re.compile(r"[.!?]+(?=\s+[A-Z0-9]|\s*$)|[;\n]|:(?=\s)")
_CLAUSE = re.compile(r",|\b(?:but|however|although|though|whereas|except)\b", re.I)

PRE_NEGATION = (
    ("no", "evidence", "of"), ("no", "signs", "of"), ("no", "sign", "of"), ("negative", "for"), ("neg", "for"),
    ("free", "of"), ("ruled", "out"), ("rules", "out"), ("absence", "of"), ("never", "had"), ("denies",),
    ("denied",), ("deny",), ("no",), ("not",), ("never",), ("without", "evidence", "of"), ("nor",),
)
POST_NEGATION = (
    ("ruled", "out"), ("was", "ruled", "out"), ("is", "negative"), ("was", "negative"), ("were", "negative"),
    ("negative",), ("absent",), ("not", "found"), ("not", "seen"), ("resolved",), ("normal",), ("unremarkable",),
    ("is", "clear"), ("was", "clear"), ("clear",),
)
UNCERTAIN = (
    ("rule", "out"), ("r", "o"), ("probable",), ("probably",), ("possible",), ("possibly",), ("suspected",),
    ("suspect",), ("suspicious", "for"), ("concern", "for"), ("concerning", "for"), ("likely",), ("questionable",),
    ("cannot", "exclude"), ("can't", "exclude"), ("query",), ("presumed",), ("versus",), ("differential",),
    ("working", "diagnosis"), ("consistent", "with"), ("compatible", "with"),
)
HISTORY = (
    ("history", "of"), ("hx", "of"), ("h", "o"), ("past", "history"), ("previous",), ("previously",), ("prior",),
    ("years", "ago"), ("year", "ago"), ("months", "ago"), ("treated", "for"), ("in", "the", "past"),
    ("no", "recurrence"), ("remote",), ("childhood",), ("personal", "history"),
)
FAMILY = (
    ("family", "history"), ("mother", "had"), ("father", "had"), ("mom", "had"), ("dad", "had"), ("sister", "had"),
    ("brother", "had"), ("mother", "has"), ("father", "has"), ("mother's",), ("father's",),
)
INPATIENT = re.compile(r"\b(admitted|admission|inpatient|discharge[ds]?|hospital course)\b", re.I)
_ONLY_CONFIRMING = {"diagnosis", "assessment", "impression", "dx", "final"}


def split_clauses(text: str, lexicon: Lexicon) -> list[Clause]:
    """The clauses of `text` with what each asserts; empty clauses dropped."""
    inpatient = bool(INPATIENT.search(text))
    out: list[Clause] = []
    for number, sentence in enumerate(_SENTENCE.split(text)):
        sentence_words = [w.lower() for w in re.findall(r"[A-Za-z0-9']+", sentence)]
        family = _has(sentence_words, FAMILY)
        history_sentence = _has(sentence_words, HISTORY) and not _has(sentence_words, (("today",), ("now",), ("currently",), ("new",)))
        sentence_negated = False
        for part in _CLAUSE.split(sentence):
            if not part.strip():
                continue
            words, evidence = lexicon.rewrite(part)
            if not words:
                continue
            for piece, negated in _negation_pieces(words):
                if negated:
                    sentence_negated = True
                elif sentence_negated and _continues_negation(piece):
                    negated = True
                uncertain = _has(piece, UNCERTAIN) and not inpatient
                history = (history_sentence or _has(piece, HISTORY)) and not negated
                content = tuple(w for w in piece if w not in _ONLY_CONFIRMING)
                if not content:
                    continue
                out.append(
                    Clause(
                        text=part.strip(),
                        words=content,
                        negated=negated,
                        uncertain=uncertain,
                        history=history,
                        family=family,
                        evidence=tuple(evidence),
                        sentence=number,
                    )
                )
    return out


def _continues_negation(piece: list[str]) -> bool:
    # "no fever, chills or rash": a bare list after a negation stays negated
    return len(piece) <= 3 and piece[0] in ("or", "and", "nor")


def _negation_pieces(words: list[str]) -> list[tuple[list[str], bool]]:
    """Cut a clause at its negation trigger: [(positive part, False), (negated part, True)]."""
    for i in range(len(words)):
        n = _starts(words, i, PRE_NEGATION)
        if n and not _is_qualifier(words, i):
            before, after = words[:i], words[i + n :]
            if not after:
                break  # "pneumonia was ruled out": the trigger closes the clause
            pieces = []
            if before:
                pieces.append((before, False))
            if after:
                pieces.append((after, True))
            return pieces
    for i in range(len(words)):
        n = _starts(words, i, POST_NEGATION)
        if n and i > 0:
            return [(words[:i], True)]
    return [(words, False)]


def _is_qualifier(words: list[str], i: int) -> bool:
    # "not intractable", "not specified", "not elsewhere classified" are title wording
    nxt = words[i + 1] if i + 1 < len(words) else ""
    return words[i] == "not" and nxt in ("intractable", "specified", "elsewhere", "stated", "applicable", "otherwise")


def _starts(words: list[str], i: int, patterns: tuple[tuple[str, ...], ...]) -> int:
    best = 0
    for p in patterns:
        if tuple(words[i : i + len(p)]) == p and len(p) > best:
            best = len(p)
    return best


def _has(words: list[str] | tuple[str, ...], patterns: tuple[tuple[str, ...], ...]) -> bool:
    return any(_starts(list(words), i, patterns) for i in range(len(words)))
