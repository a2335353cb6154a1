"""Helpers of the lexicon tests (the `loaded_matcher` fixture is conftest's)."""

from __future__ import annotations


def top_code(matcher, text: str) -> str | None:  # type: ignore[no-untyped-def]
    """The first code the matcher answers for `text`."""
    found = matcher.match(text).codes
    return found[0].code if found else None


def rewritten(text: str) -> str:
    """`text` after the lexicon's rewriting, as one string."""
    from consultant.match.lexicon import load_lexicon

    return " ".join(load_lexicon().rewrite(text)[0])
