"""The fallback for one slip of the keyboard in a long medical word (consultant/match/spelling.py)."""

from __future__ import annotations

import pytest

from consultant.match.spelling import Speller

VOCABULARY = ["epididymitis", "neuralgia", "hyperemesis", "febrile", "stated", "bending", "sending", "patency",
              "chalazion", "dermatose", "walking", "meningioma", "meninges"]


@pytest.mark.parametrize(
    ("word", "read_as"),
    [
        ("epididimitis", "epididymitis"),  # a letter changed
        ("nueralgia", "neuralgia"),  # two swapped
        ("hyperemisis", "hyperemesis"),
        ("menigioma", "meningioma"),  # one dropped
        ("chalazian", "chalazion"),
    ],
)
def test_one_slip_in_a_long_word_is_read_as_the_title_word(word: str, read_as: str) -> None:
    assert Speller(VOCABULARY).correct(word) == read_as


@pytest.mark.parametrize(
    "word",
    [
        "afebrile",  # the first letter is the word's: no fever is no "febrile"
        "latency",  # short, and its first letter differs from patency's
        "started",  # an everyday inflected word, never "stated"
        "pending",  # ... nor "bending" or "sending"
        "talking",
        "dermatome",  # a real word one letter from a title word
        "epididymitis",  # known words stay
        "xylophones",  # nothing near
    ],
)
def test_everyday_and_real_words_are_left_alone(word: str) -> None:
    assert Speller(VOCABULARY).correct(word) == word


def test_two_title_words_as_near_leave_the_word_alone() -> None:
    assert Speller(["neuralgias", "neuralgiax"]).correct("neuralgiaz") == "neuralgiaz"


def test_the_matcher_reads_a_misspelled_condition(loaded_codes_file) -> None:  # type: ignore[no-untyped-def]
    from consultant.db import make_engine
    from consultant.match import build_matcher

    engine = make_engine(f"sqlite:///{loaded_codes_file}")
    matcher = build_matcher(engine, cache_path=False)
    try:
        assert matcher.match("epididimitis, left side").codes[0].code == "N45.1"
        assert matcher.match("afebrile, dry cough for a week").codes[0].code.startswith("R05")
    finally:
        engine.dispose()
