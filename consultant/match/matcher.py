"""The matcher: text in, ranked and reportable codes out.

Order of work for one question:
1. Codes written in the text (explicit.py) are looked up first and lead the
   answer, with their status: valid, deleted (with replacements), header
   (with the default billable child) or not_found (with near codes).
2. The rest of the text is split into findings (findings.py); negated and
   uncertain ones are kept aside, history ones are searched as history codes.
3. Each positive finding, and each sentence as a whole, is searched
   (search.py); coding conventions are applied (rules.py).
4. The answer lists the codes a coder would report first, then other
   candidates, never a suppressed (negated, ruled-out, past) condition.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from consultant.match.base import Finding, MatchResult, Suggestion
from consultant.match.explicit import Mention, find_mentions
from consultant.match.findings import Clause, split_clauses
from consultant.match.index import DX, ICD, PX, CodeIndex, default_child
from consultant.match.lexicon import Lexicon
from consultant.match.rules import combination_codes, excluded_together, same_category_allowed
from consultant.match.search import Hit, make_query, search
from consultant.match.text import stem, tokenize

MAX_CODES = 15
REPORT_FLOOR = 0.42  # a finding's best code below this is offered, not reported
ENCOUNTER_TOKENS = {"initial", "subsequent", "sequela", "encounter", "routine", "delayed", "healing", "nonunion", "malunion", "open", "closed"}
MODIFIER_TOKENS = {"left", "right", "bilateral", "injury", "visit", "today", "seen", "time", "yesterday", "week", "day"}
_PROCEDURE = re.compile(
    r"\b(cpt|hcpcs|pcs|procedure|surgery|injection|removal|excision|resection|biopsy|colonoscopy|endoscopy|"
    r"replacement|repair|insertion|drainage|x-?ray|mri|ct scan|ultrasound|visit code|e/m|supply|drug code)\b|\w+ectomy\b|\w+otomy\b|\w+plasty\b|\w+scopy\b",
    re.I,
)
_PROCEDURE_CODE = re.compile(r"\b(cpt|hcpcs|pcs|procedure codes?|surgery codes?|supply codes?)\b", re.I)
_PREGNANCY = re.compile(r"\b(pregnan\w*|gestation\w*|trimester|gravida|g\d\s*p\d|prenatal|antepartum|expecting)\b", re.I)
_NEWBORN = re.compile(r"\b(newborn|neonat\w*|infant|baby|twin|liveborn|born)\b", re.I)
_WEEKS = re.compile(r"\b(\d{1,2})\s*(?:\+\s*\d\s*)?(?:weeks?|wks?)\b", re.I)


@dataclass
class _Candidate:
    row: int
    score: float
    rank_key: float
    report: bool
    evidence: list[str] = field(default_factory=list)
    more_specific: str = ""


class CodeMatcher:
    """The production matcher over an in-memory `CodeIndex`."""

    def __init__(self, index: CodeIndex, lexicon: Lexicon) -> None:
        self.index = index
        self.lexicon = lexicon

    # ------------------------------------------------------------ public

    def match(self, text: str) -> MatchResult:
        text = text or ""
        mentions = find_mentions(text)
        explicit = self._explicit(mentions, text)
        free_text = _strip_mentions(text, mentions)
        findings, candidates = self._free_text(free_text, has_explicit=bool(explicit))
        seen = {(s.system, s.code) for s in explicit}
        codes = list(explicit)
        for cand in candidates:
            sug = self._suggestion(cand)
            if (sug.system, sug.code) in seen:
                continue
            seen.add((sug.system, sug.code))
            codes.append(sug)
            if len(codes) >= MAX_CODES:
                break
        return MatchResult(codes=tuple(codes), findings=tuple(findings))

    # ------------------------------------------------------------ explicit codes

    def _explicit(self, mentions: list[Mention], text: str) -> list[Suggestion]:
        out: list[Suggestion] = []
        by_start: dict[int, list[Mention]] = {}
        for m in mentions:
            by_start.setdefault(m.start, []).append(m)
        for start in sorted(by_start):
            group = by_start[start]
            row, mention = self._resolve(group)
            if row is None:
                mention = _preferred(group)
                if mention.system == ICD and len(mention.key) <= 3 and not re.search(r"\bcode|\bicd", text, re.I):
                    continue  # a bare word-like token that is not a code: stay quiet
                out.append(self._not_found(mention))
                continue
            out.extend(self._explicit_row(row, mention))
        return out

    def _resolve(self, group: list[Mention]) -> tuple[int | None, Mention]:
        ordered = sorted(group, key=lambda m: (not m.hinted, m.system != ICD))
        for m in ordered:
            row = self.index.row(m.system, m.key)
            if row is None and m.system == ICD:
                row = self._pad_placeholder(m.key)
            if row is not None:
                return row, m
        return None, ordered[0]

    def _pad_placeholder(self, key: str) -> int | None:
        # S161A written for S16.1XXA
        if len(key) < 7 and key[-1:].isalpha() and len(key) >= 4:
            padded = key[:-1] + "X" * (7 - len(key)) + key[-1]
            return self.index.row(ICD, padded)
        return None

    def _explicit_row(self, row: int, mention: Mention) -> list[Suggestion]:
        idx = self.index
        evidence = (f"written in the question as {mention.raw}",)
        if idx.status[row] == "deleted":
            repl = tuple(self._display(idx.system[row], k) for k in idx.replaced_by[row])
            out = [self._make(row, status="deleted", score=1.0, evidence=evidence, replaced_by=repl, report=False)]
            for key in idx.replaced_by[row][:6]:
                r = idx.row(idx.system[row], key)
                if r is not None and idx.status[r] == "valid":
                    out.append(self._make(r, score=0.9, evidence=(f"replaces {idx.display[row]}",), report=False))
            return out
        if not idx.billable[row]:
            child = default_child(idx, row)
            out = [
                self._make(
                    row, status="header", score=1.0, evidence=evidence, report=False,
                    more_specific="a header, not billable: choose a code below it",
                )
            ]
            if child is not None:
                out.append(
                    self._make(
                        child, score=0.9, evidence=(f"default code under {idx.display[row]}",),
                        more_specific=f"the default under {idx.display[row]}; the record may support a more specific code",
                    )
                )
            return out
        return [self._make(row, score=1.0, evidence=evidence)]

    def _not_found(self, mention: Mention) -> Suggestion:
        near = self._near(mention)
        display = _display_guess(mention)
        return Suggestion(
            code=display, system=mention.system, status="not_found", score=0.0, confidence=0.0,
            billable=False, near=tuple(near), evidence=(f"{mention.raw} is not in the loaded {mention.system} code set",),
            report=False,
        )

    def _near(self, mention: Mention) -> list[str]:
        idx = self.index
        key = mention.key
        for cut in range(len(key) - 1, 2, -1):
            rows = idx.rows_for(key[:cut], mention.system)
            if rows:
                leaves = [r for r in idx.billable_descendants(rows[0])] or rows
                return [idx.display[r] for r in leaves[:5]]
        return []

    # ------------------------------------------------------------ free text

    def _free_text(self, text: str, *, has_explicit: bool) -> tuple[list[Finding], list[_Candidate]]:
        clauses = split_clauses(text, self.lexicon)
        if not clauses:
            return [], []
        idx = self.index
        group = PX if _PROCEDURE_CODE.search(text) else DX
        encounter = {t for c in clauses if not c.negated for t in tokenize(" ".join(c.words)) if t in ENCOUNTER_TOKENS}
        extra = set(encounter)
        pregnancy = bool(_PREGNANCY.search(text)) and not _NEWBORN.search(text)
        weeks = _weeks(text) if pregnancy else None
        if weeks is not None:
            extra |= {"3", "trimester"} if weeks >= 28 else ({"2", "trimester"} if weeks >= 14 else {"1", "trimester"})
        if _NEWBORN.search(text):
            extra.add("newborn")

        neg_tokens: set[str] = set()
        for c in clauses:
            if c.negated or c.uncertain:
                neg_tokens.update(tokenize(" ".join(c.words)))
        positive_tokens: set[str] = set()
        for c in clauses:
            if not (c.negated or c.uncertain or c.history or c.family):
                positive_tokens.update(tokenize(" ".join(c.words)))
        neg_tokens -= positive_tokens
        idf = idx.idf[group]
        total_weight = sum(idf[idx.vocab[t]] for t in positive_tokens if t in idx.vocab) or 1.0

        findings: list[Finding] = []
        suppressed: set[int] = set()
        cands: dict[int, _Candidate] = {}
        top_rows: list[int] = []

        def offer(hit: Hit, key: float, report: bool, evidence: list[str]) -> None:
            cur = cands.get(hit.row)
            if cur is None or key > cur.rank_key:
                cands[hit.row] = _Candidate(hit.row, hit.score, key, report or (cur.report if cur else False), evidence)
            elif report:
                cur.report = True

        sentences: dict[int, list[Clause]] = {}
        for c in clauses:
            if c.negated or c.uncertain:
                for part in _parts(c.words):
                    for h in self._search(part, group=group, extra=extra)[:3]:
                        if h.score >= 0.45:
                            suppressed.add(h.row)
                findings.append(Finding(text=c.text, negated=c.negated, uncertain=c.uncertain, codes=()))
                continue
            if c.history or c.family:
                current = self._search(c.words, group=group, extra=extra)
                for h in current[:2]:
                    if h.score >= 0.5:
                        suppressed.add(h.row)
                prefix = ("family", "history", "of") if c.family else ("personal", "history", "of")
                hits = [h for h in self._search(prefix + c.words, group=DX, extra=extra) if _is_history(idx, h.row)]
                codes = []
                for h in hits[:3]:
                    offer(h, 0.6 + h.score * 0.3, h is hits[0] and h.score >= 0.5, [f"history: {c.text}"])
                    codes.append(idx.display[h.row])
                findings.append(Finding(text=c.text, history=True, codes=tuple(codes[:1])))
                continue
            content = set(tokenize(" ".join(c.words))) - ENCOUNTER_TOKENS - MODIFIER_TOKENS
            if not content:
                continue  # "first visit for this injury": already applied to every finding
            sentences.setdefault(c.sentence, []).append(c)
            hits = self._search(c.words, group=group, extra=extra, neg=neg_tokens)
            codes = []
            for n, h in enumerate(hits[:8]):
                top = n == 0 and h.score >= REPORT_FLOOR
                offer(h, (1.0 if top else 0.0) + h.score * 0.5 + h.explained / total_weight * 0.5, top, [f"'{c.text}'"] + list(c.evidence))
                if n == 0:
                    top_rows.append(h.row)
                    codes.append(idx.display[h.row])
            findings.append(Finding(text=c.text, codes=tuple(codes)))

        # each sentence as a whole: joins "twin" with "delivered by cesarean"
        for group_clauses in sentences.values():
            if len(group_clauses) < 2:
                continue
            words = tuple(w for c in group_clauses for w in c.words)
            hits = self._search(words, group=group, extra=extra, neg=neg_tokens)
            for n, h in enumerate(hits[:5]):
                top = n == 0 and h.score >= 0.55
                offer(h, (1.0 if top else 0.0) + h.score * 0.5 + h.explained / total_weight * 0.5, top, ["the sentence as a whole"])

        if weeks is not None:
            row = idx.row(ICD, f"Z3A{weeks:02d}") if 8 <= weeks <= 42 else None
            if row is not None:
                cands[row] = _Candidate(row, 0.9, 1.5, True, [f"{weeks} weeks of gestation"])

        if group == DX and _PROCEDURE.search(text):
            words = tuple(w for c in clauses if not (c.negated or c.uncertain) for w in c.words)
            for h in self._search(words, group=PX, extra=set())[:3]:
                if h.score >= 0.5:
                    cands.setdefault(h.row, _Candidate(h.row, h.score, h.score * 0.2, False, ["procedure words in the text"]))
        self._apply_rules(cands, positive_tokens)
        for row in suppressed:
            if row in cands and not cands[row].evidence[:1] == ["combination"]:
                del cands[row]
        ranked = sorted(cands.values(), key=lambda c: (-int(c.report), -c.rank_key))
        self._dedupe_report(ranked)
        ranked.sort(key=lambda c: (-int(c.report), -c.rank_key))
        return findings, ranked

    def _search(self, words, *, group: str, extra: set[str], neg: set[str] = frozenset()) -> list[Hit]:
        tokens = tokenize(" ".join(words))
        local_neg = set(neg)
        if "without" in words:
            after = words[words.index("without") + 1 :]
            local_neg.update(tokenize(" ".join(after[:3])))
        tokens = tokens + [t for t in extra if t not in tokens]
        neg_ids = (set(neg) - set(tokens)) | local_neg
        return search(self.index, make_query(self.index, tokens, neg=sorted(neg_ids), group=group), limit=12)

    def _apply_rules(self, cands: dict[int, _Candidate], positive_tokens: set[str]) -> None:
        idx = self.index
        reported = [idx.key[c.row] for c in cands.values() if c.report and idx.system[c.row] == ICD]
        for key, replaces, why in combination_codes(idx, reported, positive_tokens):
            row = idx.row(ICD, key)
            for c in cands.values():
                k = idx.key[c.row]
                if c.report and k.startswith(replaces) and k != key and not k.startswith("N18") and not k.startswith("I50"):
                    if replaces == "I1" or k[:3] == key[:3]:
                        c.report = False
            cands[row] = _Candidate(row, 0.95, 2.0, True, ["combination", why])

    def _dedupe_report(self, ranked: list[_Candidate]) -> None:
        idx = self.index
        kept: list[int] = []
        for c in ranked:
            if not c.report:
                continue
            key = idx.key[c.row]
            for r in kept:
                other = idx.key[r]
                if excluded_together(idx, r, c.row) or (
                    other[:3] == key[:3] and not same_category_allowed(key) and idx.system[r] == idx.system[c.row]
                ):
                    c.report = False
                    break
            if c.report:
                kept.append(c.row)

    # ------------------------------------------------------------ output

    def _suggestion(self, cand: _Candidate) -> Suggestion:
        idx = self.index
        more = cand.more_specific or _missing_detail(idx.official[cand.row])
        return self._make(
            cand.row, score=round(min(1.0, cand.score), 4), evidence=tuple(cand.evidence[:4]),
            report=cand.report, more_specific=more,
        )

    def _make(self, row: int, *, score: float, evidence=(), status: str | None = None, replaced_by=(), report=True,
              more_specific: str = "") -> Suggestion:
        idx = self.index
        st = status or ("valid" if idx.status[row] == "valid" and idx.billable[row] else idx.status[row])
        return Suggestion(
            code=idx.display[row], system=idx.system[row], status=st, score=score,
            confidence=round(score if st == "valid" else 0.0, 4), official=idx.official[row], plain=idx.plain[row],
            billable=idx.billable[row] and st == "valid", release=idx.release[row], replaced_by=tuple(replaced_by),
            evidence=tuple(evidence), more_specific=more_specific, new=idx.change[row] == "new", report=report,
        )

    def _display(self, system: str, key: str) -> str:
        row = self.index.row(system, key)
        return self.index.display[row] if row is not None else key


def _missing_detail(title: str) -> str:
    low = title.lower()
    gaps = []
    if "unspecified side" in low or re.search(r"unspecified (ear|eye|knee|hip|shoulder|arm|leg|hand|foot|lung|kidney|breast|wrist|ankle|elbow|limb)", low):
        gaps.append("laterality (left, right or bilateral)")
    if "unspecified part" in low or "unspecified site" in low:
        gaps.append("the exact site")
    if "unspecified type" in low or low.startswith("unspecified"):
        gaps.append("the type")
    if "stage unspecified" in low or "unspecified stage" in low:
        gaps.append("the stage")
    if "unspecified" in low and not gaps:
        gaps.append("more detail from the record")
    return "; ".join(gaps)


def _strip_mentions(text: str, mentions: list[Mention]) -> str:
    for m in mentions:
        text = text.replace(m.raw, " ")
    return re.sub(r"\b(icd[- ]?10[- ]?(cm|pcs)?|icd[- ]?9|cpt|hcpcs|code)\b", " ", text, flags=re.I)


def _preferred(group: list[Mention]) -> Mention:
    for m in group:
        if m.hinted:
            return m
    for m in group:
        if m.system == ICD:
            return m
    return group[0]


def _display_guess(m: Mention) -> str:
    if m.system == ICD and len(m.key) > 3:
        return f"{m.key[:3]}.{m.key[3:]}"
    return m.key


def _parts(words: tuple[str, ...]) -> list[tuple[str, ...]]:
    """A negated list cut at its joins: "pe and no effusion" -> (pe), (effusion)."""
    parts: list[tuple[str, ...]] = []
    cur: list[str] = []
    for w in words:
        if w in ("and", "or", "no", "nor", "not"):
            if cur:
                parts.append(tuple(cur))
            cur = []
        else:
            cur.append(w)
    if cur:
        parts.append(tuple(cur))
    if len(parts) > 1:
        parts.append(tuple(words))
    return parts


def _weeks(text: str) -> int | None:
    m = _WEEKS.search(text)
    return int(m.group(1)) if m else None


def _is_history(index: CodeIndex, row: int) -> bool:
    key = index.key[row]
    return "history" in index.official[row].lower() or key.startswith(("Z85", "Z86", "Z87", "Z80", "Z81", "Z82", "Z83", "Z84", "I252"))


def _mostly_diagnosis(text: str) -> bool:
    return bool(re.search(r"\b(icd|diagnos\w*|dx)\b", text, re.I))
