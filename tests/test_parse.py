"""PARSE: raw bytes -> Question, on real-client fixtures and on hostile input (P01-P25)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from consultant import parse
from consultant.errors import NoSender, SenderError, UnparseableMessage
from consultant.mail import limits, subjects
from consultant.mail.addresses import AddressError, parse_address
from consultant.parse import Question, parse_message

MAIL = Path(__file__).parent / "fixtures" / "mail"
FIXTURES = sorted(MAIL.glob("*.eml"))
HUMAN = [p for p in FIXTURES if p.name.startswith("h")]
# Five fuzz tests; in CI they add up to the checklist's 100,000 generated inputs per run.
FUZZ_EXAMPLES = int(os.environ.get("PARSE_FUZZ_EXAMPLES", "25000" if os.environ.get("CI") else "300"))


def load(name: str) -> bytes:
    return (MAIL / name).read_bytes()


def message(*headers: str, body: str = "What is CPT code 62310?\n") -> bytes:
    head = "\n".join(headers)
    return f"{head}\n\n{body}".encode("utf-8", "surrogateescape")


def simple(subject: str = "CPT question", sender: str = "Ann <ann@clinic.example.org>", **kw) -> bytes:
    return message(f"From: {sender}", "To: ask@caseconsultant.example", f"Subject: {subject}", **kw)


def report(config: pytest.Config, line: str) -> None:
    """Print a figure even when pytest captures output."""
    capture = config.pluginmanager.get_plugin("capturemanager")
    if capture is None:
        print(line)
        return
    with capture.global_and_fixture_disabled():
        print(f"\n{line}")


FUZZ_INPUTS = {"count": 0}


@pytest.fixture(scope="module", autouse=True)
def fuzz_figure(request):
    yield
    if FUZZ_INPUTS["count"]:
        report(request.config, f"parse fuzz: {FUZZ_INPUTS['count']} generated inputs, 0 crashes, 0 hangs")


def not_internal(exc: SenderError) -> None:
    assert str(exc) != parse._INTERNAL_FAILURE, repr(exc.__cause__)


# --- the fixtures ----------------------------------------------------------------

# file: (sender, phrases the question keeps, phrases that must be gone, attachments)
EXPECTED: dict[str, tuple[str, list[str], list[str], tuple[str, ...]]] = {
    "h01_outlook_html_only.eml": (
        "mlopez@riversidepain.example.com",
        ["What is CPT code 62310?", "replaced by 62321", "I don\u2019t know", "epidural injection codes"],
        ["CAUTION", "originated from outside", "Hello Maria", "Sent:", "MsoNormal", "mso-", "font-family", "{"],
        (),
    ),
    "h02_gmail_reply_quoted.eml": (
        "kevin.osei.billing@gmail.example",
        ["what is the dx code for HTN with CKD 3a?", "N18.31", "I13.10"],
        ["wrote:", "Hypertensive chronic kidney disease is presumed", "I.C.9.a.2", ">"],
        (),
    ),
    "h03_apple_mail_alternative.eml": (
        "pnatarajan@oakhollow.example.org",
        ["Is E11.9 still valid for FY2025, or do we need to code E11.65 when the A1c is documented"],
        ["<div", "&nbsp;"],
        (),
    ),
    "h04_gmail_forward.eml": (
        "dkim@valleyortho.example.com",
        ["Can you help with this one from our PA?", "corticosteroid injection into the knee joint", "20611?"],
        ["Forwarded message", "srivera@", "Date: Mon", "To: Dana"],
        (),
    ),
    "h05_iso_8859_1.eml": (
        "jose.pena@centromedico.example.es",
        ["M\u00e9ni\u00e8re's disease of the right ear", "H81.01", "Jos\u00e9 Pe\u00f1a"],
        ["\ufffd"],
        (),
    ),
    "h06_windows_1252_smart_quotes.eml": (
        "radams@lakeshorehealth.example.net",
        ["We\u2019re seeing \u201cZ79.4 \u2013 long term (current) use of insulin\u201d", "Z79.84", "Thanks \u2026"],
        ["=93", "\ufffd"],
        (),
    ),
    "h07_base64.eml": (
        "kim.tran@harborfamily.example.com",
        ["Which modifier do we append", "(99214)", "Modifier 25 on the E/M, or 59"],
        [],
        (),
    ),
    "h08_quoted_printable.eml": (
        "amelie.roy@woundcare.example.ca",
        ["excisional d\u00e9bridement of subcutaneous tissue, 22 sq cm, right heel", "11042", "97597", "L97.412"],
        ["=C3", "=\n"],
        (),
    ),
    "h09_rfc2047_utf8.eml": (
        "Maria.Garcia@clinicasur.example.net",
        ["C\u00f3digo para fractura de mu\u00f1eca \u2013 S52.501A?", "Closed fracture of the right distal radius"],
        ["=?UTF-8?"],
        (),
    ),
    "h10_rfc2047_latin1.eml": (
        "h.dubois@cliniquedulac.example.fr",
        ["R\u00e9vision de proth\u00e8se du genou : 27486 ou 27487?", "femoral and entire tibial component"],
        ["=?ISO", "=E9"],
        (),
    ),
    "h11_rfc2231_attachment.eml": (
        "o.smirnova@medcentr.example.ru",
        ["Laparoscopic cholecystectomy with intraoperative cholangiography: is 47563 the right code"],
        ["JVBER", "%PDF"],
        ("\u041f\u0440\u043e\u0442\u043e\u043a\u043e\u043b_\u043e\u043f\u0435\u0440\u0430\u0446\u0438\u0438.pdf",),
    ),
    "h12_pdf_attachment.eml": (
        "greg.novak@spineassoc.example.com",
        ["Would you code this as 63047 with 63048 x2", "22633"],
        ["JVBER", "%PDF", "<div"],
        ("op_note_redacted.pdf",),
    ),
    "h13_subject_only.eml": ("tjohnson@prairiemed.example.org", ["E11.9 still valid?"], ["iPhone"], ()),
    "h14_signature_disclaimer.eml": (
        "tbecker@stmarys.example.org",
        ["is the sequencing\nA41.51, N39.0, then B96.20?", "Thanks,\nTom"],
        ["RHIT", "555-0142", "CONFIDENTIALITY", "intended recipient", "prohibited"],
        (),
    ),
    "h15_iphone_reply.eml": (
        "nina.brooks@summitpain.example.com",
        ["would it be 64493-50 plus 64494-50, or 64493 and 64494 with RT/LT?"],
        ["Sent from my iPhone", "wrote:", "reported per level", "Add-on codes"],
        (),
    ),
    "h16_outlook_original_message.eml": (
        "lharris@cedarfamily.example.com",
        ["can G0439 and 99397 be billed on the same day", "modifier 25?"],
        ["Original Message", "mailto:", "subsequent annual wellness visit", "does not cover"],
        (),
    ),
    "h17_apple_mixed_inline.eml": (
        "rachel.cho@bayhand.example.com",
        ["Here is the section of our superbill:", "25111 or 25112\n(recurrent)?"],
        ["/9j/", "JFIF"],
        ("IMG_0423.jpeg",),
    ),
    "h18_clinic_note.eml": (
        "slind@northfieldim.example.org",
        [
            "CC: follow-up DM2, HTN",
            "HPI: 62 yo F with type 2 diabetes with diabetic CKD stage 3a, on insulin.",
            "1. DM2 with diabetic CKD 3a - continue insulin glargine",
            "3. Hyperlipidemia - continue atorvastatin",
            "Which ICD-10-CM codes and in what order?",
        ],
        [],
        (),
    ),
    "h19_outlook_forward.eml": (
        "alee@northside.example.org",
        ["forwarding from one of our providers", "Does 40 minutes of total time", "support 99215"],
        ["apark@", "Sent: Friday", "Old thread text", "time based coding", "=20"],
        (),
    ),
    "h20_apple_forward_quoted.eml": (
        "mgreen@pinecrest.example.org",
        ["See below \u2014 can you confirm the units?", "Is Prolia 60 mg billed as J0897 x 60 units, or 1 unit?"],
        ["Begin forwarded message", "nursing@", "> ", "Date: March"],
        (),
    ),
    "h21_generic_subject.eml": (
        "frontdesk@lakeviewpodiatry.example.com",
        ["What's the HCPCS code for a pneumatic walking boot", "L4361?"],
        ["Question"],
        (),
    ),
    "h22_unknown_charset_raw_headers.eml": (
        "joerg.mueller@praxis-mueller.example.de",
        ["Kodierung f\u00fcr Z00.00", "Z00.00 or Z00.01? F\u00fcr die Abrechnung", "J\u00f6rg"],
        [],
        (),
    ),
    "h23_forward_as_attachment.eml": (
        "cvega@westgeneral.example.org",
        ["Please see the attached question from Dr. Reyes.", "Is 99223 appropriate, or 99222", "99223 vs 99222"],
        ["ereyes@", "Forwarded message"],
        ("Coding question.eml",),
    ),
    "h24_disclaimer_banner.eml": (
        "ohaddad@eastgate.example.com",
        ["45385-PT with Z12.11 first, then K63.5?", "Best regards,\nOmar Haddad"],
        ["CAUTION", "originated", "CONFIDENTIALITY", "intended recipient", "destroy all copies"],
        (),
    ),
}


def test_every_human_fixture_has_expectations():
    assert len(FIXTURES) >= 20
    assert {p.name for p in HUMAN} == set(EXPECTED)
    readme = (MAIL / "README.md").read_text()
    assert all(p.name in readme for p in FIXTURES)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_fixture_question(name):
    raw = load(name)
    sender, keep, gone, attachments = EXPECTED[name]
    q = parse_message(raw)
    assert q.sender == sender
    for phrase in keep:
        assert phrase in q.text, phrase
    for phrase in gone:
        assert phrase not in q.text, phrase
    assert q.attachments == attachments
    assert q.content_hash == hashlib.sha256(raw).hexdigest()
    assert q.message_id.startswith("<") and q.message_id.endswith(">")
    assert all(name == name.lower() and "\n" not in value for name, value in q.headers)
    assert q.body in q.text


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.name)
def test_line_endings_do_not_matter(path):
    """P21: LF, CRLF and bare-CR variants of one message parse the same."""
    lf = path.read_bytes().replace(b"\r\n", b"\n")
    expected = replace(parse_message(lf), content_hash="")
    for variant in (lf.replace(b"\n", b"\r\n"), lf.replace(b"\n", b"\r")):
        assert replace(parse_message(variant), content_hash="") == expected


def test_fixture_details():
    q = parse_message(load("h09_rfc2047_utf8.eml"))
    assert q.sender_name == "Garc\u00eda, Mar\u00eda"
    assert q.subject == "C\u00f3digo para fractura de mu\u00f1eca \u2013 S52.501A?"
    q = parse_message(load("h02_gmail_reply_quoted.eml"))
    assert q.references == ("<20250304091201.4F2C@caseconsultant.example>",)
    assert q.text.startswith("dx code for HTN with CKD 3a?\nThanks!")
    q = parse_message(load("h13_subject_only.eml"))
    assert (q.body, q.text) == ("", "E11.9 still valid?")
    q = parse_message(load("h21_generic_subject.eml"))
    assert q.text.startswith("What's the HCPCS code")
    q = parse_message(load("h22_unknown_charset_raw_headers.eml"))
    assert (q.sender_name, q.subject) == ("J\u00f6rg M\u00fcller", "Kodierung f\u00fcr Z00.00")
    q = parse_message(load("h04_gmail_forward.eml"))
    assert q.text.count("coding question - knee injection") == 1
    assert q.header("Subject") == "Fwd: coding question - knee injection"


# --- garbage and senders (P01-P04, P13) -------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [b"", b"   \r\n\t \n", b"\x00\x01 not an email", b"just some words\nand more words\n", b"\n\nbody only"],
)
def test_garbage_is_unparseable(raw):
    with pytest.raises(UnparseableMessage):
        parse_message(raw)


@pytest.mark.parametrize(
    "from_line",
    [
        None,
        "From:",
        "From:   ",
        "From: Ann Smith",
        "From: <>",
        "From: undisclosed-recipients:;",
        "From: alice@example.org)<bob@example.org>",
        "From: a@b@c",
        "From: a@b@c.example",
        "From: alice@example.org, bob@example.org",
        "From: <alice@example.org> <bob@example.org>",
        "From: alice@example.org <bob@example.org>",
        "From: Ann <ann@clinic.example.org> bob@example.org",
        "From: Ann <ann@clinic.example.org",
        'From: "Ann <ann@clinic.example.org>',
        "From: Ann (comment <ann@clinic.example.org>",
        "From: ann@localhost",
        "From: ann@[192.0.2.1]",
        "From: ann@192.0.2.1",
        "From: .ann@clinic.example.org",
        "From: ann..b@clinic.example.org",
        "From: ann@-clinic.example.org",
        "From: ann@clinic..example.org",
        'From: "ann"@clinic.example.org',
        "From: <@route.example:ann@clinic.example.org>",
        "From: ann smith@clinic.example.org",
    ],
)
def test_no_usable_sender(from_line):
    headers = ["To: ask@caseconsultant.example", "Subject: E11.9?"]
    if from_line is not None:
        headers.insert(0, from_line)
    with pytest.raises(NoSender):
        parse_message(message(*headers))


def test_two_from_headers_are_refused():
    raw = message("From: ann@clinic.example.org", "From: bob@example.org", "Subject: x")
    with pytest.raises(NoSender):
        parse_message(raw)


@pytest.mark.parametrize(
    ("value", "address", "name"),
    [
        ("ann@clinic.example.org", "ann@clinic.example.org", ""),
        ("Ann.Smith@Clinic.Example.ORG", "Ann.Smith@clinic.example.org", ""),
        ("ann@clinic.example.org (Ann Smith)", "ann@clinic.example.org", "Ann Smith"),
        ("Ann Smith <ann@clinic.example.org>", "ann@clinic.example.org", "Ann Smith"),
        ('"Smith, Ann" <ann@clinic.example.org>', "ann@clinic.example.org", "Smith, Ann"),
        ("Smith, Ann <ann@clinic.example.org>", "ann@clinic.example.org", "Smith, Ann"),
        ('"x@y.example" <z@w.example>', "z@w.example", "x@y.example"),
        ("=?utf-8?q?Doe,_John?= <j@x.example>", "j@x.example", "Doe, John"),
        ("=?utf-8?b?5bGx55Sw?= <yamada@clinic.example.jp>", "yamada@clinic.example.jp", "\u5c71\u7530"),
        ("<ann@clinic.example.org.>", "ann@clinic.example.org", ""),
        ("J\u00f6rg <j@m\u00fcller.example>", "j@xn--mller-kva.example", "J\u00f6rg"),
        ("danger-$USER`id`@clinic.example.org", "danger-$USER`id`@clinic.example.org", ""),
        ('"Dr. \\"Al\\" Park" <apark@northside.example.org>', "apark@northside.example.org", 'Dr. "Al" Park'),
    ],
)
def test_parse_address_accepts(value, address, name):
    assert parse_address(value) == (address, name)


def test_spoof_display_name_never_becomes_the_address():
    """X13/P13: only the addr-spec counts, whatever the display name claims."""
    q = parse_message(simple(sender='"ask@caseconsultant.example" <mallory@evil.example>'))
    assert q.sender == "mallory@evil.example"


def test_missing_message_id_and_references():
    q = parse_message(simple())
    assert q.message_id == ""
    assert q.references == ()
    assert len(q.content_hash) == 64


def test_references_in_order_without_duplicates():
    raw = message(
        "From: ann@clinic.example.org",
        "Message-ID: <m1@clinic.example.org>",
        "References: <a@x.example> <b@x.example>\n <c@x.example>",
        "In-Reply-To: <c@x.example> <d@x.example>",
        "Subject: re",
    )
    q = parse_message(raw)
    assert q.references == ("<a@x.example>", "<b@x.example>", "<c@x.example>", "<d@x.example>")
    assert q.message_id == "<m1@clinic.example.org>"


def test_reply_to():
    q = parse_message(message("From: ann@clinic.example.org", "Reply-To: Billing <Billing@Clinic.Example.org>"))
    assert q.reply_to == "Billing@clinic.example.org"
    q = parse_message(message("From: ann@clinic.example.org", "Reply-To: a@x.example, b@y.example"))
    assert q.reply_to == ""


def test_parse_address_error_type():
    with pytest.raises(AddressError):
        parse_address("a@b@c")


# --- encodings (P06-P11) -----------------------------------------------------------


def test_header_injection_is_flattened():
    """P07/X05: an encoded CR/LF never survives into subject, name or headers."""
    raw = message(
        "From: =?utf-8?q?Ann=0D=0ABcc:_x@evil.example?= <ann@clinic.example.org>",
        "Subject: =?utf-8?q?E11.9=0D=0ABcc:_x@evil.example=0A=0A?= =?utf-8?b?4oCoU2Vjb25k?=",
    )
    q = parse_message(raw)
    for value in (q.subject, q.sender_name, *(v for _, v in q.headers)):
        assert not set(value) & {"\r", "\n", "\u2028", "\x00"}
    assert q.subject == "E11.9 Bcc: x@evil.example Second"
    assert q.sender == "ann@clinic.example.org"


@pytest.mark.parametrize(
    "charset",
    [
        "x-unknown",
        "cp-850",
        "unknown-8bit",
        "utf-8*en",
        "zlib",
        "idna",
        "rot13",
        "punycode",
        "base64",
        '""',
        "utf-16",
        "a" * 200,
    ],
)
def test_hostile_charsets_never_raise(charset):
    """P08: unknown, misspelled, or non-text codecs fall back instead of raising."""
    body = "caf\u00e9 E11.9\n".encode("latin-1")
    raw = (
        f"From: ann@clinic.example.org\nSubject: =?{charset}?q?caf=E9?=\n"
        f'Content-Type: text/plain; charset="{charset}"\nContent-Transfer-Encoding: 8bit\n\n'
    ).encode() + body
    q = parse_message(raw)
    assert "E11.9" in q.body or charset == "utf-16"


def test_cp_850_is_found_and_wrong_declared_charset_is_replaced():
    raw = b"From: a@clinic.example.org\nContent-Type: text/plain; charset=cp-850\n\nE11.9 \x82\n"
    assert parse_message(raw).body == "E11.9 \u00e9"
    raw = b"From: a@clinic.example.org\nContent-Type: text/plain; charset=utf-8\n\nE11.9 caf\xe9\n"
    assert parse_message(raw).body == "E11.9 caf\ufffd"


def test_raw_8bit_headers():
    """P06: UTF-8 or Latin-1 bytes without RFC 2047 are decoded, never crash."""
    raw = "From: Jos\u00e9 <jose@clinic.example.org>\nSubject: dx f\u00fcr".encode() + b" \xff\xfe\n\nE11.9?\n"
    q = parse_message(raw)
    assert q.sender_name == "Jos\u00e9"
    assert q.subject.startswith("dx f")
    assert q.sender == "jose@clinic.example.org"


def test_utf32_bomb_is_cheap():
    """P09: a 100-line base64 utf-32 body of F's decodes in well under a second."""
    line = "RkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZG"
    raw = (
        'From: a@clinic.example.org\nContent-Type: text/plain; charset="utf-32LE"\n'
        "Content-Transfer-Encoding: base64\n\n" + (line + "\n") * 100
    ).encode()
    started = time.perf_counter()
    q = parse_message(raw)
    assert time.perf_counter() - started < 1.0
    assert len(q.body) <= limits.MAX_BODY_CHARS


@pytest.mark.parametrize(
    ("charset", "text"),
    [
        ("utf-7", "E11.9 caf\u00e9"),
        ("gb18030", "\u7cd6\u5c3f\u75c5 E11.9"),
        ("iso-2022-jp", "\u7cd6\u5c3f\u75c5 E11.9"),
        ("big5", "\u7cd6\u5c3f\u75c5 E11.9"),
        ("koi8-r", "\u0434\u0438\u0430\u0431\u0435\u0442 E11.9"),
    ],
)
def test_other_encodings(charset, text):
    """P10: UTF-7, GB18030, ISO-2022-JP and friends come out as the right text."""
    raw = (
        f"From: a@clinic.example.org\nSubject: =?{charset}?b?".encode()
        + base64.b64encode(text.encode(charset))
        + f"?=\nContent-Type: text/plain; charset={charset}\nContent-Transfer-Encoding: 8bit\n\n".encode()
        + text.encode(charset)
        + b"\n"
    )
    q = parse_message(raw)
    assert q.subject == text
    assert q.body == text


def test_rfc2231_with_unknown_charset_and_encoded_word_filename():
    raw = b"""From: a@clinic.example.org
Content-Type: multipart/mixed; boundary=zz

--zz
Content-Type: text/plain

E11.9?
--zz
Content-Type: application/pdf
Content-Disposition: attachment; filename*=x-bogus''%E9t%E9.pdf

x
--zz
Content-Type: application/pdf; name="=?utf-8?b?0J7RgtGH0ZHRgi5wZGY=?="

x
--zz
Content-Type: application/octet-stream
Content-Disposition: attachment; filename="../../etc/passwd"

x
--zz
Content-Type: application/octet-stream
Content-Disposition: attachment

x
--zz--
"""
    q = parse_message(raw)
    assert q.body == "E11.9?"
    assert len(q.attachments) == 4
    assert q.attachments[1] == "\u041e\u0442\u0447\u0451\u0442.pdf"
    assert q.attachments[2] == "passwd"
    assert q.attachments[3] == ""


# --- structure and size limits (P14-P20) -------------------------------------------


def timed(raw: bytes, limit: float = 2.0) -> Question | SenderError:
    started = time.perf_counter()
    try:
        result: Question | SenderError = parse_message(raw)
    except SenderError as exc:
        not_internal(exc)
        result = exc
    assert time.perf_counter() - started < limit
    return result


def test_ten_thousand_recipients_and_huge_header_line():
    """P14: refused before the full parse, quickly."""
    to = "To: " + ", ".join(f"user{i}@clinic.example.org" for i in range(10_000))
    assert isinstance(timed(message("From: a@clinic.example.org", to)), UnparseableMessage)
    huge = "X-Junk: " + "a" * 1_000_000
    assert isinstance(timed(message("From: a@clinic.example.org", huge)), UnparseableMessage)
    many = [f"X-H{i}: v" for i in range(2_000)]
    assert isinstance(timed(message("From: a@clinic.example.org", *many)), UnparseableMessage)


def test_pathological_headers_are_bounded():
    """P15: long runs of encoded words and parameters stay linear."""
    words = " ".join(["=?utf-8?q?a=C3=A9?="] * 5_000)
    q = timed(message("From: a@clinic.example.org", f"Subject: {words}"))
    assert isinstance(q, Question) and q.subject.startswith("a\u00e9a\u00e9")
    params = "Content-Type: text/plain" + "".join(f'; p{i}="x;y"' for i in range(4_000))
    assert isinstance(timed(message("From: a@clinic.example.org", params)), Question)
    comments = "From: " + "(" * 20_000 + "a@clinic.example.org"
    assert isinstance(timed(message(comments)), NoSender)
    quotes = "From: " + '"\\' * 20_000 + " <a@clinic.example.org>"
    assert isinstance(timed(message(quotes)), (NoSender, Question))


def nested(depth: int) -> bytes:
    head = "From: a@clinic.example.org\n"
    for i in range(depth):
        head += f'Content-Type: multipart/mixed; boundary="b{i}"\n\n--b{i}\n'
    return (head + "Content-Type: text/plain\n\nE11.9 deep\n").encode()


def test_mime_depth_and_part_count():
    """P16: deep nesting and many parts end in a bounded result, never a RecursionError."""
    assert isinstance(timed(nested(10)), Question)
    assert "E11.9 deep" in parse_message(nested(10)).body
    assert parse_message(nested(limits.MAX_MIME_DEPTH + 5)).body == ""
    timed(nested(1_000))
    parts = "".join(f"--zz\nContent-Type: text/plain\n\npart {i}\n" for i in range(10_000))
    q = timed(b"From: a@clinic.example.org\nContent-Type: multipart/mixed; boundary=zz\n\n" + parts.encode())
    assert isinstance(q, Question) and "part 0" in q.body and "part 9999" not in q.body
    unclosed = b"From: a@clinic.example.org\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\n\nE11.9 open\n"
    assert "E11.9 open" in parse_message(unclosed).body
    no_boundary = b"From: a@clinic.example.org\nContent-Type: multipart/mixed\n\nE11.9?\n"
    assert isinstance(parse_message(no_boundary), Question)


def test_nested_forwarded_messages():
    """P18: 50 nested message/rfc822 parts are walked no deeper than the cap."""
    raw = b"From: a@clinic.example.org\n" + b"Content-Type: message/rfc822\n\n" * 50 + b"From: x@y.example\n\nE11.9\n"
    assert isinstance(timed(raw), Question)


def test_uuencode_and_bogus_transfer_encoding():
    """P19: inline uuencoded blocks are dropped and named; unknown CTE is read as is."""
    raw = rb"""From: a@clinic.example.org
Subject: note

Is 99213 right?

begin 644 note.pdf
M)5!$1BTQ+C0*)>+CS],*,2`P(&]B:@H\/"]4>7!E+T-A=&%L;V<O4&%G97,@
`
end
"""
    q = parse_message(raw)
    assert q.body == "Is 99213 right?"
    assert q.attachments == ("note.pdf",)
    raw = b"From: a@clinic.example.org\nContent-Transfer-Encoding: base65\n\nIs 99213 right?\n"
    assert parse_message(raw).body == "Is 99213 right?"
    raw = b"From: a@clinic.example.org\nContent-Transfer-Encoding: base64\n\n!!!not base64***\n"
    assert isinstance(parse_message(raw), Question)


def test_hostile_html():
    """P20: scripts, trackers and thousands of links become inert text."""
    links = "".join(f'<a href="http://tracker.example/{i}">x</a> ' for i in range(5_000))
    html = (
        "<html><head><script>alert('x')</script><style>p{color:red}</style></head><body>"
        "<p>What is CPT 62310?</p><img src='http://tracker.example/p.gif'>"
        f"<p>{links}</p><iframe src='http://evil.example'></iframe></body></html>"
    )
    raw = ("From: a@clinic.example.org\nContent-Type: text/html; charset=utf-8\n\n" + html).encode()
    q = timed(raw)
    assert isinstance(q, Question)
    assert "What is CPT 62310?" in q.body
    for bad in ("http", "alert(", "color:red", "<", "tracker"):
        assert bad not in q.body


def test_html_fallback_when_html2text_fails(monkeypatch):
    def broken(self, html):
        raise IndexError("boom")

    monkeypatch.setattr(parse.html2text.HTML2Text, "handle", broken)
    raw = b"From: a@clinic.example.org\nContent-Type: text/html\n\n<p>E11.9?</p><script>x()</script>"
    assert parse_message(raw).body == "E11.9?"


def test_oversized_body_is_capped():
    body = ("What is CPT 62310? " * 60 + "\n") * 10_000
    q = timed(simple(body=body), limit=5.0)
    assert isinstance(q, Question)
    assert len(q.body) <= limits.MAX_BODY_CHARS
    html = "<p>" + "E11.9 " * 2_000_000 + "</p>"
    q = timed(("From: a@clinic.example.org\nContent-Type: text/html\n\n" + html).encode(), limit=5.0)
    assert isinstance(q, Question) and len(q.body) <= limits.MAX_BODY_CHARS


def test_message_size_cap():
    raw = simple(body="x" * (limits.MAX_MESSAGE_BYTES + 1))
    with pytest.raises(UnparseableMessage):
        parse_message(raw)


# --- odd text (P22, P24) ------------------------------------------------------------


def test_nul_bidi_and_zero_width_are_removed():
    raw = message(
        "From: \u202eevil\u200b Name\u0000 <a@clinic.example.org>",
        "Subject: E11\u200b.9\u202e still\x00 valid?",
        body="E11\u200b.9\x00 valid\u202e?\n",
    )
    q = parse_message(raw)
    assert q.subject == "E11.9 still valid?"
    assert q.sender_name == "evil Name"
    assert q.body == "E11.9 valid?"


def test_header_named_headers_long_and_folded_subject():
    raw = message(
        "headers: yes",
        "defects: none",
        "From: a@clinic.example.org",
        "Subject:   E11.9\n\t  still\n   valid?  " + "x" * 2_000,
    )
    q = parse_message(raw)
    assert q.header("headers") == "yes"
    assert q.subject.startswith("E11.9 still valid? x")
    assert len(q.subject) == limits.MAX_SUBJECT_CHARS


def test_no_blank_line_between_headers_and_body():
    """P02: the first non-header line starts the body."""
    q = parse_message(b"From: a@clinic.example.org\nSubject: x\nWhat is CPT 62310?\n")
    assert q.body == "What is CPT 62310?"


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Re: RE: Fwd: E11.9 still valid?", "E11.9 still valid?"),
        ("[EXTERNAL] RE: 62310", "62310"),
        ("AW: WG: Z00.00", "Z00.00"),
        ("Re[2]: 99213", "99213"),
        ("Re:", ""),
        ("Fwd: ", ""),
        ("question", ""),
        ("Quick question!", ""),
        ("Re: Coding question?", ""),
        ("(no subject)", ""),
        ("Question about 99213", "Question about 99213"),
    ],
)
def test_subject_in_text(subject, expected):
    q = parse_message(simple(subject=subject, body="Body line.\n"))
    assert q.text == ("\n".join(p for p in (expected, "Body line.") if p))


# --- quote, signature and forward rules on plain text --------------------------------


@pytest.mark.parametrize(
    ("body", "kept", "gone"),
    [
        ("E11.9?\n\n> old\n> older\n", "E11.9?", "old"),
        ("> quoted question\nMy answer: E11.9?\n", "My answer: E11.9?", "quoted"),
        ("E11.9?\n\nOn Mon, 3 Mar 2025 at 10:00, Bob <b@x.example> wrote:\n> hi\n", "E11.9?", "Bob"),
        ("E11.9?\n\nLe lun. 3 mars 2025 \u00e0 10:00, Bob <b@x.example> a \u00e9crit :\n> hi\n", "E11.9?", "Bob"),
        ("E11.9?\n\nAm 03.03.2025 um 10:00 schrieb Bob <b@x.example>:\n> hi\n", "E11.9?", "Bob"),
        ("E11.9?\n\nOn Monday Bob wrote:\n\nunquoted history\n", "E11.9?", "history"),
        (
            "E11.9?\n________________________________\nFrom: Bob\nSent: Monday\nTo: Ann\n\nhistory\n",
            "E11.9?",
            "history",
        ),
        ("E11.9?\n\nFrom: Bob <b@x.example>\nDate: Monday\nSubject: x\nTo: Ann\n\nhistory\n", "E11.9?", "history"),
        ("E11.9?\n\n----- Original Message -----\nFrom: Bob\n\nhistory\n", "E11.9?", "history"),
        ("E11.9?\n--\nAnn\nLong signature\n", "E11.9?", "signature"),
        ("E11.9?\n\nGet Outlook for iOS\n", "E11.9?", "Outlook"),
        ("E11.9?\n\nSent from my Galaxy\n", "E11.9?", "Galaxy"),
        (
            "E11.9?\n\nDISCLAIMER\n\nThis email is confidential and intended only for the named recipient.\n",
            "E11.9?",
            "confidential",
        ),
        ("Warning: patient also has CKD. E11.22?\n", "Warning: patient also has CKD. E11.22?", "\0"),
        ("The note is confidential; dx is E11.9?\n", "The note is confidential; dx is E11.9?", "\0"),
        ("Line one\nFrom: the ED\nWhat code?\n", "Line one\nFrom: the ED\nWhat code?", "\0"),
    ],
)
def test_plain_text_rules(body, kept, gone):
    q = parse_message(simple(subject="", body=body))
    assert q.body == kept
    assert gone not in q.text


def test_bottom_posted_reply_keeps_the_new_text():
    body = "On Mon, Bob <b@x.example> wrote:\n> What is 62310?\n\nIt is deleted; what about 62321?\n"
    assert parse_message(simple(subject="", body=body)).body == "It is deleted; what about 62321?"


def test_reply_to_a_forward_cuts_the_quoted_forward():
    body = "Thanks!\n\nOn Mon, Bob <b@x.example> wrote:\n> ---------- Forwarded message ---------\n> From: C\n> old\n"
    assert parse_message(simple(subject="Re: Fwd: x", body=body)).body == "Thanks!"


# --- the standard library's own corpus and fuzzing (P25) ------------------------------


def stdlib_corpus() -> list[Path]:
    data = Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    return sorted((data / "test" / "test_email" / "data").glob("msg_*.txt"))


def test_stdlib_email_corpus():
    corpus = stdlib_corpus()
    if not corpus:
        pytest.skip("the interpreter ships without its test suite")
    outcomes = {"parsed": 0, "refused": 0}
    for path in corpus:
        try:
            parse_message(path.read_bytes())
            outcomes["parsed"] += 1
        except SenderError as exc:
            not_internal(exc)
            outcomes["refused"] += 1
    print(f"stdlib corpus: {len(corpus)} messages, {outcomes}")
    assert outcomes["parsed"] >= len(corpus) // 2


def hostile_cases() -> list[bytes]:
    """The P-rows as raw messages, for the corpus figure."""
    base = b"From: a@clinic.example.org\nSubject: E11.9?\n"
    return [
        b"",
        b" \r\n ",
        b"\x00\x01 not an email",
        b"From: a@clinic.example.org\nSubject: x\nno blank line\n",
        b"Subject: no from\n\nbody\n",
        b"From:\n\nbody\n",
        b"From: alice@example.org)<bob@example.org>\n\nx\n",
        b"From: a@b@c\n\nx\n",
        b'From: "x@y" <z@w.example>\n\nx\n',
        b"From: =?utf-8?q?Doe,_John?= <j@x.example>\n\nx\n",
        b"From: Jos\xe9 <j@x.example>\nSubject: f\xfcr\n\nx\n",
        b"From: a@clinic.example.org\nSubject: =?utf-8?q?x=0D=0ABcc:_e@evil.example?=\n\nx\n",
        base + b"Content-Type: text/plain; charset=x-unknown\n\n\xe9\n",
        base + b"Content-Type: text/plain; charset=utf-7\n\n+AOk-\n",
        base + b"Content-Transfer-Encoding: base65\n\nx\n",
        base + b"Content-Transfer-Encoding: x-uuencode\n\nbegin 644 a\n`\nend\n",
        base + b"Content-Type: text/html\n\n<script>x</script><p>E11.9</p>",
        base + b"Content-Type: multipart/mixed; boundary=z\n\n--z\n\nnever closed\n",
        base.replace(b"\n", b"\r") + b"\rx\r",
        base + b"headers: x\n\nx\n",
        base + b"Subject: \xe2\x80\xae\x00\n\nx\n",
        nested(200),
        message("From: a@clinic.example.org", "To: " + ", ".join(f"u{i}@x.example" for i in range(10_000))),
        message("From: a@clinic.example.org", "X-Junk: " + "a" * 1_000_000),
    ]


def test_corpus_figure(request):
    """Figure: every message of a 300+ corpus ends as parsed or refused with a reason; 0 crashes."""
    corpus = [p.read_bytes() for p in FIXTURES] + [p.read_bytes() for p in stdlib_corpus()] + hostile_cases()
    corpus += [raw.replace(b"\n", b"\r\n") for raw in corpus] + [raw.replace(b"\n", b"\r") for raw in corpus]
    outcomes: dict[str, int] = {}
    for raw in corpus:
        try:
            parse_message(raw)
            outcome = "parsed"
        except SenderError as exc:
            not_internal(exc)
            outcome = exc.reason
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    report(
        request.config, f"parse corpus: {len(corpus)} messages, 0 crashes, outcomes {dict(sorted(outcomes.items()))}"
    )
    assert len(corpus) >= 300


def check_invariants(raw: bytes) -> None:
    FUZZ_INPUTS["count"] += 1
    try:
        q = parse_message(raw)
    except SenderError as exc:
        not_internal(exc)
        return
    assert re.fullmatch(r"[^@\s]+@[a-z0-9.-]+", q.sender)
    assert not set(q.subject + q.sender_name) & {"\r", "\n", "\x00"}
    assert all(not set(v) & {"\r", "\n"} for _, v in q.headers)
    assert len(q.body) <= limits.MAX_BODY_CHARS
    assert "\x00" not in q.text


FUZZ = settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FUZZ
@given(st.binary(max_size=4_000))
def test_fuzz_arbitrary_bytes(raw):
    check_invariants(raw)


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_bytes_after_a_from_header(tail):
    check_invariants(b"From: ann@clinic.example.org\n" + tail)


@FUZZ
@given(
    st.sampled_from(FIXTURES),
    st.lists(
        st.tuples(
            st.sampled_from(["flip", "insert", "delete", "truncate", "dup"]),
            st.integers(0, 10**6),
            st.binary(min_size=1, max_size=40),
        ),
        min_size=1,
        max_size=8,
    ),
)
def test_fuzz_mutated_fixtures(path, edits):
    raw = bytearray(path.read_bytes())
    for kind, position, data in edits:
        at = position % max(len(raw), 1)
        if kind == "flip" and raw:
            raw[at] ^= data[0] or 0x20
        elif kind == "insert":
            raw[at:at] = data
        elif kind == "delete":
            del raw[at : at + len(data)]
        elif kind == "truncate":
            del raw[at:]
        else:
            raw[at:at] = raw[at : at + 200]
    check_invariants(bytes(raw))


header_text = st.lists(
    st.sampled_from(
        list('abcXYZ @<>(),:;"\\=?_.\r\n\t\x00\u00e9\u202e') + ["=?utf-8?q?", "=?x?b?", "?=", "a@b.example"]
    ),
    max_size=40,
).map("".join)


@FUZZ
@given(header_text, header_text, header_text)
def test_fuzz_header_values(sender, subject, name):
    raw = (f'From: {sender}\nSubject: {subject}\nContent-Type: text/plain; name="{name}"\n\nE11.9\n').encode(
        "utf-8", "surrogateescape"
    )
    check_invariants(raw)


@FUZZ
@given(header_text)
def test_fuzz_parse_address(value):
    try:
        address, name = parse_address(value)
    except AddressError:
        return
    assert address.count("@") == 1 and "\n" not in name


@pytest.mark.parametrize(
    ("body", "subject"),
    [
        ("".join("Begin forwarded message:\n" + "> " * i + "\n" for i in range(1, 3_000)), "x"),
        ("Begin forwarded message:\n" + "".join(">" * i + " Begin forwarded message:\n" for i in range(1, 3_000)), "x"),
        ("---------- Forwarded message ---------\nSubject: " + "re:" * 30_000 + "\n\nx\n", "x"),
        ("On x\n" * 30_000, "x"),
        ("From: a\nSent: b\n" * 20_000, "Fwd: x"),
        ("x" * 5_000_000, "x"),
        (("_" * 5_000 + "\n") * 400, "x"),
        ("-" * 100_000 + " forwarded message " + "-" * 100_000, "x"),
    ],
    ids=[
        "nested-forwards",
        "nested-forward-markers",
        "re-re-re",
        "on-lines",
        "outlook-blocks",
        "one-long-line",
        "rules",
        "dashes",
    ],
)
def test_pathological_bodies_are_bounded(body, subject):
    q = timed(simple(subject=subject, body=body), limit=3.0)
    assert isinstance(q, Question) and len(q.body) <= limits.MAX_BODY_CHARS


def test_many_html_parts_share_one_budget():
    part = "--zz\nContent-Type: text/html\n\n<p>" + "E11.9 " * 30_000 + "</p>\n"
    raw = "From: a@clinic.example.org\nContent-Type: multipart/mixed; boundary=zz\n\n" + part * 60 + "--zz--\n"
    q = timed(raw.encode(), limit=5.0)
    assert isinstance(q, Question) and "E11.9" in q.body


def test_quadratic_parameter_headers_are_bounded():
    nasty = 'a="' + "; " * 40_000
    raw = f"From: a@clinic.example.org\nContent-Type: multipart/mixed; boundary=zz\n\n--zz\nContent-Type: text/plain; {nasty}\n\nE11.9\n--zz--\n"
    assert isinstance(timed(raw.encode(), limit=2.0), Question)
    raw = f"From: a@clinic.example.org\nContent-Type: text/plain; {nasty}\n\nE11.9\n"
    assert isinstance(timed(raw.encode(), limit=2.0), Question)


def test_header_like_block_with_nothing_above_is_kept_unless_a_reply():
    letter = (
        "From: Dr. Y, cardiology\nDate: 3/4/2025\nTo: Dr. Z\nSubject: referral\n\nCHF with EF 35%, which I50 code?\n"
    )
    assert parse_message(simple(subject="referral letter", body=letter)).body.endswith("which I50 code?")
    assert parse_message(simple(subject="RE: referral letter", body=letter)).body == ""
    attribution = "On Mon, Bob <b@x.example> wrote:\nWhich I50 code for CHF with EF 35%?\n"
    assert parse_message(simple(subject="", body=attribution)).body == "Which I50 code for CHF with EF 35%?"
    assert parse_message(simple(subject="Re: CHF", body=attribution)).body == ""


@pytest.mark.parametrize(
    ("subject", "kind"),
    [
        ("Fwd: x", "forward"),
        ("[EXTERNAL] FW: x", "forward"),
        ("WG: x", "forward"),
        ("RE: FW: x", "reply"),
        ("AW: x", "reply"),
        ("x", ""),
        ("Fwd x", ""),
        ("[ext] [secure] Re[3]: x", "reply"),
    ],
)
def test_subject_kind(subject, kind):
    assert subjects.subject_kind(subject) == kind
