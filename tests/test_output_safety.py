"""Output safety (X05, P07, L16): every outgoing message re-parses with exactly the intended headers.

Each Hypothesis example draws six hostile values (subject, display name,
two answer texts (a code's official and plain description), a finding and a
reference) and a recipient, builds the reply with `render_reply` +
`build_message` and parses it back with both the strict (`policy.default`)
and the lenient (`compat32`) parser. 2,000 examples carry 12,000 fuzzed
values (20,000 examples with CONSULTANT_FULL_CAMPAIGNS=1).
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from email import message_from_bytes, policy

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consultant.mail.addresses import parse_address
from consultant.render import CodeView, build_message, clean_header, render_reply

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
SENDER = "consultant@caseconsultant.example"
EXAMPLES = 20_000 if os.environ.get("CONSULTANT_FULL_CAMPAIGNS", "").lower() in {"1", "true", "yes"} else 2_000
VALUES_PER_EXAMPLE = 6
_values_tried = [0]
INTENDED = {
    "from", "to", "subject", "date", "message-id", "in-reply-to", "references", "auto-submitted",
    "x-caseconsultant-loop", "x-auto-response-suppress", "mime-version", "content-type",
}
PAYLOADS = [
    "\r\nBcc: evil@evil.example", "\nBcc: evil@evil.example", "\rBcc: evil@evil.example",
    "\r\n\r\n<html>body</html>", "\u2028Bcc: evil@evil.example", "\x85Bcc: x@evil.example", "=0ABcc: x",
    "=?utf-8?q?x=0D=0ABcc:_evil@evil.example?=", "--===============0000000000000000000==", "\x00", "\u202e",
    "Content-Type: text/html", ".\r\n.\r\nMAIL FROM:<x@evil.example>", "<script>alert(1)</script>",
    "{{7*7}}", "{% raw %}", "a" * 2000, "\t", " ", "",
]
values = st.one_of(st.text(max_size=120), st.sampled_from(PAYLOADS), st.lists(st.sampled_from(PAYLOADS + ["x"]), max_size=5)
                   .map("".join), st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
addresses = st.sampled_from([  # forms the strict parser accepts (it refuses quoted and literal ones)
    "coder@clinic.example", "o'brien@clinic.example", "a+tag@sub.clinic.example", "UPPER@CLINIC.EXAMPLE",
    "x_{y}|z@clinic.example", "Pat Coder <pat@clinic.example>",
])


def expected_subject(subject: str) -> str:
    from consultant.render import reply_subject

    return reply_subject(subject)


references = st.one_of(values, values.map(lambda v: f"<{v}@clinic.example>"), st.sampled_from(PAYLOADS).map(
    lambda p: f"<{p.replace(' ', '_')}@clinic.example>"))


@settings(max_examples=EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(subject=values, name=values, official=values, plain=values, finding=values, reference=references,
       to=addresses)
def test_every_reply_reparses_with_exactly_the_intended_headers(
    subject: str, name: str, official: str, plain: str, finding: str, reference: str, to: str
) -> None:
    recipient, _ = parse_address(to)  # the recipient is always a parsed, strict addr-spec
    code = CodeView(code="E11.9", system="ICD-10-CM", status="valid", official=official, plain=plain)
    reply = render_reply(
        "reply", to=recipient, subject=subject, domain="caseconsultant.example",
        in_reply_to="<q1@clinic.example>", references=(reference, "<q0@clinic.example>"),
        context={"name": name, "codes": [code], "findings": [finding], "quota_remaining": 1, "allowance": 2,
                 "tier": "guest", "free_answers": 5, "consultant_address": SENDER},
    )
    raw = build_message(reply, sender=SENDER, now=NOW)
    _values_tried[0] += VALUES_PER_EXAMPLE

    strict = message_from_bytes(raw, policy=policy.default)
    for parsed in (strict, message_from_bytes(raw)):
        names = [k.lower() for k in parsed]
        assert set(names) == INTENDED and len(names) == len(INTENDED), names
        assert parsed.get_content_type() == "multipart/alternative"
        parts = parsed.get_payload()
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        for part in parts:
            assert {k.lower() for k in part} <= {"content-type", "content-transfer-encoding", "mime-version"}

    assert [a.addr_spec for a in strict["To"].addresses] == [recipient]
    # folding may add whitespace around a long word; nothing else may differ
    assert " ".join(str(strict["Subject"]).split()) == " ".join(expected_subject(subject).split())
    assert "\n" not in str(strict["Subject"]) and "\r" not in str(strict["Subject"])
    assert strict["In-Reply-To"] == "<q1@clinic.example>"
    assert strict["Auto-Submitted"] == "auto-replied"
    assert str(strict["Message-ID"]).endswith("@caseconsultant.example>")
    text = strict.get_body(preferencelist=("plain",)).get_content()
    html = strict.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html
    if official.strip() and "\r" not in official and "\x00" not in official:
        assert clean_header(official)[:40].split(" ")[0] in " ".join(text.split())


def test_values_count_reached() -> None:
    """Runs after the fuzz test (file order): the figure is the number of values actually tried."""
    if _values_tried[0] == 0:
        pytest.skip("the fuzz test did not run in this session")
    print(f"\noutput safety: {_values_tried[0]} fuzzed values in {_values_tried[0] // VALUES_PER_EXAMPLE} replies, "
          "each re-parsed with exactly the intended headers")
    assert _values_tried[0] >= 10_000


def test_the_payloads_alone() -> None:
    """The fixed injection list, each in every field at once (the deterministic floor of the fuzz)."""
    for payload in PAYLOADS:
        for reference in (payload, f"<{payload.replace(' ', '_')}@clinic.example>"):
            test_every_reply_reparses_with_exactly_the_intended_headers.hypothesis.inner_test(  # type: ignore[attr-defined]
                subject=payload, name=payload, official=payload, plain=payload, finding=payload,
                reference=reference, to="coder@clinic.example",
            )


def test_a_double_encoded_subject_or_reference_cannot_add_a_header_to_the_reply(engine) -> None:  # type: ignore[no-untyped-def]
    """The sender encodes an encoded word: we decode one level, the email package would decode the next."""
    import base64

    from consultant.inbox import MemoryInbox
    from consultant.outbox import MemoryTransport
    from consultant.pipeline import Services, run_once
    from tests.fakes import KeywordMatcher

    inner = "=?utf-8?q?x=0D=0ABcc:_evil@evil.example?="
    raw = (
        "From: Pat <pat@clinic.example>\r\n"
        f"Subject: =?utf-8?b?{base64.b64encode(inner.encode()).decode()}?= 62310\r\n"
        "Message-ID: <q1@clinic.example>\r\n"
        f"References: <{inner}@clinic.example> <q0@clinic.example>\r\n"
        "\r\nWhat is CPT code 62310?\r\n"
    ).encode()
    services = Services(engine=engine, inbox=MemoryInbox(), transport=MemoryTransport(), matcher=KeywordMatcher(),
                        address=SENDER)
    services.inbox.deliver(raw)
    run_once(services, now=lambda: NOW)
    [sent] = services.transport.sent
    reply = message_from_bytes(sent.raw, policy=policy.default)
    assert "bcc" not in {k.lower() for k in reply} and b"\nBcc:" not in sent.raw
    assert sent.recipients == ["pat@clinic.example"]
    assert reply["References"] == "<q0@clinic.example> <q1@clinic.example>"
