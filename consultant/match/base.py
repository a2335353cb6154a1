"""The matcher interface the pipeline calls.

A matcher turns question text into ranked code suggestions. The pipeline
only knows `Matcher.match(text) -> MatchResult`; the explicit-code matcher
and the free-text matcher both sit behind it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Suggestion:
    code: str  # standard display form: E11.9, S52.502A, 62310, J3301
    system: str  # ICD-10-CM, ICD-10-PCS, CPT, HCPCS, MOD
    status: str  # valid, deleted, not_found, header
    score: float
    confidence: float
    official: str = ""
    plain: str = ""
    billable: bool = True
    release: str = ""
    replaced_by: tuple[str, ...] = ()
    deleted_on: str = ""  # ISO date the code stopped being valid
    near: tuple[str, ...] = ()  # near matches for a not_found code
    evidence: tuple[str, ...] = ()  # which words matched what
    more_specific: str = ""  # what detail would make it more specific
    new: bool = False  # new in the current release
    report: bool = True  # part of the set a coder would report


@dataclass(frozen=True)
class Finding:
    text: str
    negated: bool = False
    uncertain: bool = False
    history: bool = False
    codes: tuple[str, ...] = ()


@dataclass(frozen=True)
class MatchResult:
    codes: tuple[Suggestion, ...] = ()
    findings: tuple[Finding, ...] = ()

    @property
    def confidence(self) -> float:
        return max((s.confidence for s in self.codes), default=0.0)


class Matcher(Protocol):
    def match(self, text: str) -> MatchResult: ...
