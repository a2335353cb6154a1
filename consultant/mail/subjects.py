"""Subjects: reply and forward prefixes, subjects that say nothing, and what a subject says."""

from __future__ import annotations

import re

from consultant.mail.limits import MAX_SUBJECT_CHARS

_SUBJECT_PREFIX = re.compile(
    r"^(?:\s*(?:(?:re|fwd?|aw|wg|sv|vs|tr|rv|antw|odp|r)\s*(?:\[\d+\]|\(\d+\))?\s*:|"
    r"\[(?:external|ext|spam|secure|encrypt|encrypted|suspicious)\]|\*+external\*+:?|external\s*:))+",
    re.IGNORECASE,
)
_FORWARD_PREFIX = re.compile(r"^\s*(fwd?|wg|tr|rv)\s*(\[\d+\]|\(\d+\))?\s*:", re.IGNORECASE)
_REPLY_PREFIX = re.compile(r"^\s*(re|aw|sv|vs|antw|odp|r)\s*(\[\d+\]|\(\d+\))?\s*:", re.IGNORECASE)
_GENERIC_SUBJECTS = frozenset(
    {
        "",
        "question",
        "questions",
        "a question",
        "quick question",
        "coding question",
        "code question",
        "coding",
        "codes",
        "code",
        "help",
        "help needed",
        "need help",
        "hi",
        "hello",
        "hey",
        "query",
        "inquiry",
        "enquiry",
        "no subject",
        "(no subject)",
        "untitled",
        "urgent",
        "fyi",
        "question for you",
        "coding help",
        "coding query",
        "medical coding question",
        "medical coding",
        "quick q",
        "q",
        "re",
        "fwd",
        "fw",
    }
)


def strip_subject_prefixes(subject: str) -> str:
    """'RE: Fwd: [EXTERNAL] E11.9?' -> 'E11.9?'."""
    return _SUBJECT_PREFIX.sub("", subject[:MAX_SUBJECT_CHARS], count=1).strip()


def is_generic_subject(subject: str) -> bool:
    return re.sub(r"[\s!?.:;,\-]+", " ", subject).strip().lower() in _GENERIC_SUBJECTS


def subject_kind(subject: str) -> str:
    """'forward' or 'reply' from the outermost prefix (Fwd:, FW:, WG: / Re:, AW:), else ''."""
    rest = subject[:MAX_SUBJECT_CHARS]
    while True:
        stripped = re.sub(r"^\s*\[[^\]]{0,30}\]\s*", "", rest, count=1)
        if stripped == rest:
            break
        rest = stripped
    if _FORWARD_PREFIX.match(rest):
        return "forward"
    if _REPLY_PREFIX.match(rest):
        return "reply"
    return ""
