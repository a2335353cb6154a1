"""Never reply to machines: each reason code, with its fixture and its variants (L01-L11, L14)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from consultant.machine import (
    LOOP_HEADER,
    LOOP_REFERENCE_LIMIT,
    canonical_local_part,
    machine_reason,
    machine_reasons,
)
from consultant.parse import parse_message

MAIL = Path(__file__).parent / "fixtures" / "mail"
OWN = "ask@caseconsultant.example"
HUMAN = sorted(MAIL.glob("h*.eml"))
BASE = "h07_base64.eml"  # a plain question with no robot signals at all


def load(name: str) -> bytes:
    return (MAIL / name).read_bytes()


def edit(raw: bytes, *add: str, drop: tuple[str, ...] = ()) -> bytes:
    """`raw` with headers named in `drop` removed and `add` lines put on top."""
    head, _, body = raw.replace(b"\r\n", b"\n").partition(b"\n\n")
    lines = head.decode("utf-8", "surrogateescape").split("\n")
    kept: list[str] = []
    skipping = False
    for line in lines:
        if line[:1] in (" ", "\t"):
            if not skipping:
                kept.append(line)
            continue
        skipping = line.split(":", 1)[0].strip().lower() in {d.lower() for d in drop}
        if not skipping:
            kept.append(line)
    new_head = "\n".join([*add, *kept]).encode("utf-8", "surrogateescape")
    return new_head + b"\n\n" + body


def reason_of(raw: bytes, own: str = OWN) -> str | None:
    return machine_reason(parse_message(raw), own_address=own)


@pytest.mark.parametrize("path", HUMAN, ids=lambda p: p.name)
def test_people_are_answered(path):
    assert machine_reasons(parse_message(path.read_bytes()), own_address=OWN) == ()


@pytest.mark.parametrize(
    ("name", "first", "all_of"),
    [
        (
            "m01_dsn_bounce.eml",
            "auto_submitted",
            {"auto_submitted", "null_return_path", "delivery_report", "mailer_daemon"},
        ),
        ("m02_out_of_office.eml", "auto_submitted", {"auto_submitted", "auto_response_suppress", "auto_reply_subject"}),
        ("m03_mailing_list.eml", "precedence_bulk", {"precedence_bulk", "mailing_list"}),
        ("m04_newsletter_bulk.eml", "precedence_bulk", {"precedence_bulk"}),
        ("m05_mailer_daemon_plain.eml", "mailer_daemon", {"mailer_daemon"}),
        ("m06_vacation_subject_only.eml", "auto_reply_subject", {"auto_reply_subject"}),
        ("m07_exchange_suppress.eml", "auto_response_suppress", {"auto_response_suppress"}),
        ("m08_x_autoreply.eml", "autoreply_header", {"autoreply_header"}),
        ("m09_x_loop.eml", "x_loop", {"x_loop"}),
        ("m10_own_reply_fed_back.eml", "own_address", {"own_address", "loop_marker", "own_message_id"}),
        ("m11_mdn_read_receipt.eml", "delivery_report", {"delivery_report"}),
        ("m12_srs_mailer_daemon.eml", "mailer_daemon", {"mailer_daemon"}),
    ],
)
def test_machine_fixtures(name, first, all_of):
    q = parse_message(load(name))
    assert machine_reason(q, own_address=OWN) == first
    assert all_of <= set(machine_reasons(q, own_address=OWN))


# Each reason on its own: the fixture that shows it, stripped of every other signal.
ISOLATED = [
    (
        "m01_dsn_bounce.eml",
        ("auto-submitted", "return-path", "from", "subject"),
        ("From: Postfix <reports@mx.caseconsultant.example>", "Subject: report"),
        "delivery_report",
    ),
    (
        "m01_dsn_bounce.eml",
        ("auto-submitted", "content-type", "from", "subject"),
        ("From: Ann <ann@clinic.example.org>", "Subject: hi"),
        "null_return_path",
    ),
    ("m02_out_of_office.eml", ("x-auto-response-suppress", "subject"), ("Subject: hi",), "auto_submitted"),
    ("m02_out_of_office.eml", ("auto-submitted", "subject"), ("Subject: hi",), "auto_response_suppress"),
    ("m02_out_of_office.eml", ("auto-submitted", "x-auto-response-suppress"), (), "auto_reply_subject"),
    ("m03_mailing_list.eml", ("precedence",), (), "mailing_list"),
    (
        "m10_own_reply_fed_back.eml",
        ("from", "auto-submitted", "message-id"),
        ("From: Ann <ann@clinic.example.org>",),
        "loop_marker",
    ),
    (
        "m10_own_reply_fed_back.eml",
        ("from", "auto-submitted", LOOP_HEADER),
        ("From: Ann <ann@clinic.example.org>",),
        "own_message_id",
    ),
    ("m05_mailer_daemon_plain.eml", ("subject",), ("Subject: hi",), "mailer_daemon"),
]


@pytest.mark.parametrize(("name", "drop", "add", "reason"), ISOLATED)
def test_each_reason_alone(name, drop, add, reason):
    raw = edit(load(name), *add, drop=drop)
    assert machine_reasons(parse_message(raw), own_address=OWN) == (reason,)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("Auto-Submitted: auto-replied", "auto_submitted"),
        ("Auto-Submitted: auto-generated", "auto_submitted"),
        ("Auto-Submitted: auto-notified", "auto_submitted"),
        ("Auto-Submitted: AUTO-REPLIED", "auto_submitted"),
        ("auto-submitted:   Auto-Generated   ", "auto_submitted"),
        ('Auto-Submitted: auto-replied; owner-email="x@y.example"', "auto_submitted"),
        ("Auto-Submitted: yes", "auto_submitted"),
        ("Auto-Submitted:", "auto_submitted"),
        ("Auto-Submitted: no", None),
        ("Auto-Submitted: NO ", None),
        ("Auto-Submitted: no (a person wrote this)", None),
        ("Return-Path: <>", "null_return_path"),
        ("Return-Path: < >", "null_return_path"),
        ("Return-Path: <kim.tran@harborfamily.example.com>", None),
        ("Content-Type: multipart/report; report-type=delivery-status; boundary=x", "delivery_report"),
        ("Content-Type: Multipart/Report; report-type=feedback-report; boundary=x", "delivery_report"),
        ("X-Failed-Recipients: gone@example.net", "delivery_report"),
        ("X-Auto-Response-Suppress: All", "auto_response_suppress"),
        ("X-Auto-Response-Suppress: OOF", "auto_response_suppress"),
        ("X-Auto-Response-Suppress: AutoReply", "auto_response_suppress"),
        ("X-Auto-Response-Suppress: DR, RN, NRN", "auto_response_suppress"),
        ("x-auto-response-suppress: oof,autoreply", "auto_response_suppress"),
        ("X-Auto-Response-Suppress: None", None),
        ("X-Autoreply: yes", "autoreply_header"),
        ("X-Autorespond: Thank you for your message", "autoreply_header"),
        ("X-AutoReply-From: kim.tran@harborfamily.example.com", "autoreply_header"),
        ("X-Autogenerated: Reply", "autoreply_header"),
        ("X-Autoreply: no", None),
        ("Precedence: bulk", "precedence_bulk"),
        ("Precedence: BULK  ", "precedence_bulk"),
        ("precedence: list", "precedence_bulk"),
        ("Precedence: junk", "precedence_bulk"),
        ("Precedence: Junk ", "precedence_bulk"),
        ("Precedence: auto_reply", "precedence_bulk"),
        ("Precedence: normal", None),
        ("Precedence: first-class", None),
        ("List-Id: <coders.lists.example.org>", "mailing_list"),
        ("List-Unsubscribe: <mailto:leave@lists.example.org>", "mailing_list"),
        ("List-Post: <mailto:coders@lists.example.org>", "mailing_list"),
        ("List-Help: <mailto:help@lists.example.org>", "mailing_list"),
        ("X-Mailing-List: coders@lists.example.org", "mailing_list"),
        ("X-Loop: ask@caseconsultant.example", "x_loop"),
        ("X-Loop: ASK@CaseConsultant.Example", "x_loop"),
        ("X-Loop: someone-else@example.org", None),
        ("X-Loop: task@caseconsultant.example", None),
        ("X-Loop: Coding Desk <ask@caseconsultant.example>", "x_loop"),
        (f"{LOOP_HEADER}: prod-1", "loop_marker"),
        ("X-CaseConsultant-Loop: forged-by-someone", "loop_marker"),
    ],
)
def test_header_variants(header, reason):
    """L01-L09: case, whitespace and parameter variants of each robot header."""
    assert reason_of(edit(load(BASE), header)) == reason


@pytest.mark.parametrize(
    "sender",
    [
        "MAILER-DAEMON@mx.example.net",
        "mailer-daemon@mx.example.net",
        "Mailer_Daemon@mx.example.net",
        "postmaster@clinic.example.org",
        "Postmaster@clinic.example.org",
        "noreply@portal.example.com",
        "no-reply@portal.example.com",
        "no_reply@portal.example.com",
        "donotreply@portal.example.com",
        "do-not-reply@portal.example.com",
        "billing-noreply@portal.example.com",
        "noreply-alerts@portal.example.com",
        "coders-request@lists.example.org",
        "owner-coders@lists.example.org",
        "coders-owner@lists.example.org",
        "coders-errors@lists.example.org",
        "coders-bounces@lists.example.org",
        "bounce@mail.example.com",
        "bounces+ask=caseconsultant.example@mail.example.com",
        "bounce-mc.us21_1234-ask=caseconsultant.example@mail.example.com",
        "SRS0=x7Qp=VW=bounce.example.net=mailer-daemon@forwarder.example.org",
        "srs0=ab12=7Q=example.net=Postmaster@forwarder.example.org",
        "SRS1=HHHH=first.example==x7Qp=VW=bounce.example.net=MAILER-DAEMON@second.example.org",
        "prvs=1234abcdef=mailer-daemon@mx.example.net",
        "msprvs1=18123abcd=postmaster@mx.example.net",
        "btv1==123abcdef==postmaster@mx.example.net",
    ],
)
def test_robot_senders(sender):
    """L04: robot local parts, also when wrapped by SRS or BATV."""
    raw = edit(load(BASE), f"From: {sender}", drop=("from", "return-path"))
    assert reason_of(raw) == "mailer_daemon"


@pytest.mark.parametrize(
    "sender",
    [
        "noreen@clinic.example.org",
        "bouncer.jones@clinic.example.org",
        "owner@clinic.example.org",
        "post.master.class@clinic.example.org",
        "srs@clinic.example.org",
        "daemon.smith@clinic.example.org",
    ],
)
def test_people_with_robotic_looking_names(sender):
    raw = edit(load(BASE), f"From: {sender}", drop=("from",))
    assert reason_of(raw) is None


def test_canonical_local_part():
    assert canonical_local_part("SRS0=h=tt=example.com=alice@fwd.example") == "alice"
    assert canonical_local_part("prvs=0123456789=bob@example.com") == "bob"
    assert canonical_local_part("carol@example.com") == "carol"


@pytest.mark.parametrize(
    "subject",
    [
        "Automatic reply: modifier 25 or 59?",
        "Auto Reply: your question",
        "AutoReply: your question",
        "Auto-Reply: your question",
        "Out of Office: E11.9",
        "Out of office AutoReply: E11.9",
        "[Out of Office] E11.9",
        "OOO until Monday",
        "Abwesenheitsnotiz: Re: Z00.00",
        "Automatische Antwort: Re: Z00.00",
        "R\u00e9ponse automatique : Re: 27486",
        "Respuesta autom\u00e1tica: S52.501A",
        "Risposta automatica: domanda",
        "Automatisch antwoord: vraag",
        "Autosvar: fr\u00e5ga",
        "Undeliverable: Re: 62310",
        "Undelivered Mail Returned to Sender",
        "Delivery Status Notification (Failure)",
        "Mail delivery failed: returning message to sender",
        "Returned mail: see transcript for details",
        "failure notice",
        "Read: RE: G0439 vs 99397",
        "Vacation reply: E11.9",
    ],
)
def test_auto_reply_subjects(subject):
    """L11: vacation and bounce subjects with no robot headers at all."""
    raw = edit(load(BASE), f"Subject: {subject}", drop=("subject",))
    assert reason_of(raw) == "auto_reply_subject"


@pytest.mark.parametrize(
    "subject",
    [
        "absence seizure code?",
        "Re: out of office visit coding",
        "Office visit 99213 out of network?",
        "Automated insulin delivery device HCPCS?",
        "Reading a CT: which code?",
        "Delivery: vaginal delivery after previous cesarean O34.21?",
    ],
)
def test_human_subjects_that_look_a_little_robotic(subject):
    raw = edit(load(BASE), f"Subject: {subject}", drop=("subject",))
    assert reason_of(raw) is None


@pytest.mark.parametrize(
    "sender",
    ["ask@caseconsultant.example", "Ask@CaseConsultant.Example", "Coding Desk <ASK@caseconsultant.example>"],
)
def test_own_address(sender):
    """L10/L14: mail from our own address, in any case."""
    raw = edit(load(BASE), f"From: {sender}", drop=("from",))
    assert reason_of(raw) == "own_address"
    assert reason_of(raw, own="  ASK@caseconsultant.EXAMPLE ") == "own_address"


def test_own_message_id_and_reference_chain():
    """L09: our Message-ID coming back, or a thread that keeps bouncing between us and a robot."""
    raw = edit(load(BASE), "Message-ID: <20250401.x@caseconsultant.example>", drop=("message-id",))
    assert reason_of(raw) == "own_message_id"
    ours = " ".join(f"<r{i}@caseconsultant.example>" for i in range(LOOP_REFERENCE_LIMIT))
    assert reason_of(edit(load(BASE), f"References: {ours}")) == "reply_chain_loop"
    fewer = " ".join(f"<r{i}@caseconsultant.example>" for i in range(LOOP_REFERENCE_LIMIT - 1))
    assert reason_of(edit(load(BASE), f"References: {fewer} <x@clinic.example.org>")) is None


def test_no_own_address_configured_skips_own_checks():
    raw = load("m10_own_reply_fed_back.eml")
    assert machine_reason(parse_message(raw), own_address="") == "loop_marker"


def test_reason_codes_are_short_identifiers():
    codes = set()
    for path in sorted(MAIL.glob("m*.eml")):
        codes.update(machine_reasons(parse_message(path.read_bytes()), own_address=OWN))
    assert all(re.fullmatch(r"[a-z_]{3,30}", code) for code in codes)
