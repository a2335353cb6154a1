"""Unit-test twins that are not part of the package: a keyword matcher and message builders."""

from __future__ import annotations

from email.message import EmailMessage
from email.utils import make_msgid

from consultant.match.base import MatchResult, Suggestion


class KeywordMatcher:
    """Returns the suggestions whose keyword appears in the text; can be told to crash."""

    def __init__(self, table: dict[str, Suggestion] | None = None) -> None:
        self.table = table if table is not None else DEFAULT_TABLE
        self.crash_on: str | None = None

    def match(self, text: str) -> MatchResult:
        if self.crash_on and self.crash_on in text:
            raise RuntimeError("matcher exploded")
        lowered = text.lower()
        return MatchResult(codes=tuple(s for key, s in self.table.items() if key in lowered))


DEFAULT_TABLE = {
    "62310": Suggestion(
        code="62310", system="CPT", status="deleted", score=1.0, confidence=1.0,
        official="Team-written sample: cervical or thoracic epidural injection (deleted)",
        replaced_by=("62320", "62321"), deleted_on="2017-01-01", release="CPT sample",
    ),
    "e11.9": Suggestion(
        code="E11.9", system="ICD-10-CM", status="valid", score=1.0, confidence=1.0,
        official="Type 2 diabetes mellitus without complications",
        plain="Type 2 diabetes with no complications", release="ICD-10-CM FY2026",
    ),
}


def question(
    text: str = "What is CPT code 62310?",
    *,
    sender: str = "coder@clinic.example",
    subject: str = "Coding question",
    headers: dict[str, str] | None = None,
    message_id: str | None = None,
) -> bytes:
    msg = EmailMessage()
    msg["From"] = f"Pat Coder <{sender}>"
    msg["To"] = "consultant@localhost"
    msg["Subject"] = subject
    msg["Message-ID"] = message_id or make_msgid(domain="clinic.example")
    for name, value in (headers or {}).items():
        msg[name] = value
    msg.set_content(text)
    return msg.as_bytes()
