"""Rendering: every template renders, HTML is escaped, headers cannot be injected."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from email import message_from_bytes, policy

from hypothesis import given, settings
from hypothesis import strategies as st

from consultant.render import CodeView, build_message, new_message_id, render_reply, reply_subject

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)

BASE = {
    "name": "Pat",
    "codes": [],
    "findings": [],
    "quota_remaining": 3,
    "allowance": 6,
    "tier": "guest",
    "free_answers": 5,
    "consultant_address": "consultant@localhost",
}


def test_every_kind_renders_both_parts() -> None:
    codes = [CodeView(code="E11.9", system="ICD-10-CM", status="valid", official="Type 2 diabetes", plain="x")]
    for kind in ("reply", "no_match", "over_quota"):
        reply = render_reply(kind, to="a@b.example", subject="q", context={**BASE, "codes": codes}, domain="localhost")
        assert reply.text.strip() and "<html>" in reply.html
        assert "patient" in reply.text.lower()


def test_html_is_escaped() -> None:
    evil = CodeView(code="X", system="ICD-10-CM", status="valid", official="<script>alert(1)</script>")
    reply = render_reply("reply", to="a@b.example", subject="q", context={**BASE, "codes": [evil]}, domain="d")
    assert "<script>" not in reply.html and "&lt;script&gt;" in reply.html


def test_subject_prefixes_collapse() -> None:
    assert reply_subject("RE: Fwd: re: CPT 62310") == "Re: CPT 62310"
    assert reply_subject("") == "Re: your coding question"


@settings(max_examples=300, deadline=None)
@given(subject=st.text(), name=st.text(max_size=50))
def test_no_header_injection(subject: str, name: str) -> None:
    reply = render_reply(
        "no_match", to="a@b.example", subject=subject, context={**BASE, "name": name}, domain="localhost",
        in_reply_to=f"<{name}@x>",
    )
    msg = message_from_bytes(build_message(reply, sender="consultant@localhost", now=NOW), policy=policy.default)
    names = sorted(k.lower() for k in msg.keys())
    allowed = {"from", "to", "subject", "date", "message-id", "in-reply-to", "references", "auto-submitted",
               "x-auto-response-suppress", "x-caseconsultant-loop", "content-type", "mime-version"}
    assert set(names) <= allowed
    assert names.count("subject") == 1 and names.count("to") == 1


def test_message_ids_stay_unique_when_the_random_module_repeats_itself(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Two replies in one 10 ms tick, with the `random` module seeded alike before each (as
    Hypothesis does for every example): the stdlib's ID alone would repeat."""
    monkeypatch.setattr(time, "time", lambda: 1_795_000_000.0)
    ids = set()
    for _ in range(2):
        random.seed(7)
        ids.add(new_message_id("caseconsultant.example"))
    assert len(ids) == 2 and all(i.endswith("@caseconsultant.example>") for i in ids)
