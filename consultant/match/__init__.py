"""MATCH: question text -> ranked, reportable codes.

`build_matcher(engine)` loads the code index once (from a cache next to the
database when it is current) and returns a `Matcher` (see base.py). The
parts, in the order a question meets them:

    explicit.py   codes written in the text
    lexicon.py    the words people use -> the words titles use (lexicon.tsv)
    findings.py   clauses, negation, uncertainty, history
    index.py      the in-memory index of the `code` table
    search.py     ranking titles against a finding
    rules.py      combination codes, Excludes1, one code per category
    matcher.py    all of the above, in order
    commands.py   `consultant suggest`
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from consultant.match.base import Finding, Matcher, MatchResult, Suggestion

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from consultant.match.matcher import CodeMatcher

__all__ = ["CodeMatcher", "Finding", "MatchResult", "Matcher", "Suggestion", "build_matcher"]


def build_matcher(engine: Engine, *, cache_path: Path | None | bool = True) -> CodeMatcher:
    """The matcher over `engine`'s code table; `cache_path=False` skips the index cache."""
    from consultant.match.index import load_index
    from consultant.match.lexicon import load_lexicon
    from consultant.match.matcher import CodeMatcher

    return CodeMatcher(load_index(engine, cache_path=cache_path), load_lexicon())


def __getattr__(name: str) -> object:
    # The matcher (numpy, the search) is imported when first used: a worker whose matching
    # runs in the helper process (helper.py) never imports it.
    if name == "CodeMatcher":
        from consultant.match.matcher import CodeMatcher

        return CodeMatcher
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
