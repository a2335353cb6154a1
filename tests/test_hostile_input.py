"""Hostile and malformed input through the whole pipeline (checklist P01-P25), and fuzzing.

* the corpus: the standard library's own email test data (messages, and the
  binary files beside them as garbage), the real-client fixtures, and
  generated cases (malformed, oversized, deeply nested, bad charsets, base64
  and quoted-printable bombs, header floods), each also with CRLF and bare-CR
  line endings, run one by one through `run_once`: 0 exceptions, 0 hangs
  over 10 s, and every message ends answered, ignored as machine mail,
  or quarantined, with its reason recorded and the mailbox acknowledged;
* Hypothesis: 100,000 generated inputs through parse + machine + sender
  authentication (the fast path every message takes first), and a few
  thousand through the whole pipeline. No timing asserts: a watchdog only
  turns a hang (10 s) into a failure.
"""

from __future__ import annotations

import base64
import itertools
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session, select

from consultant import parse
from consultant.errors import SenderError
from consultant.inbox import MemoryInbox
from consultant.machine import machine_reason
from consultant.models import Case, CaseStatus, Outbox
from consultant.outbox import MemoryTransport
from consultant.parse import parse_message
from consultant.pipeline import ReplyCaps, Services, run_once
from consultant.quota import QuotaPolicy
from consultant.senderauth import authentication_verdict
from tests.fakes import KeywordMatcher

NOW = datetime(2026, 11, 22, 12, 0, tzinfo=UTC)
ADDRESS = "consultant@caseconsultant.example"
HANG_SECONDS = 10
FULL = os.environ.get("CONSULTANT_FULL_CAMPAIGNS", "").lower() in {"1", "true", "yes"}
FUZZ_EXAMPLES = 1_000_000 if FULL else 100_000
PIPELINE_EXAMPLES = 10_000 if FULL else 1_000  # three messages each: as drawn and two mutations
FIXTURES = Path(__file__).parent / "fixtures" / "mail"


class Hang(BaseException):
    """Raised by the watchdog; a BaseException so no `except Exception` in the code can swallow it."""


@contextmanager
def watchdog(seconds: float = HANG_SECONDS) -> Iterator[None]:
    def fire(_signum: int, _frame: object) -> None:
        raise Hang(f"no result after {seconds} s")

    previous = signal.signal(signal.SIGALRM, fire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# -- the corpus -------------------------------------------------------------------------------
def stdlib_data() -> list[Path]:
    """Lib/test/test_email/data: 48 messages, and images and sounds that make fine garbage."""
    folder = Path(sys.base_prefix) / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}"
    folder = folder / "test" / "test_email" / "data"
    return sorted(p for p in folder.glob("*") if p.is_file())


def _mail(headers: list[str], body: bytes | str = "What is CPT code 62310?\n") -> bytes:
    head = "\n".join(headers).encode("utf-8", "surrogateescape")
    return head + b"\n\n" + (body.encode("utf-8", "surrogateescape") if isinstance(body, str) else body)


FROM = "From: Pat <pat@clinic.example>"


def _nested(depth: int) -> bytes:
    lines = [FROM, "Subject: nested", "MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=b0", ""]
    for level in range(1, depth):
        lines += [f"--b{level - 1}", f"Content-Type: multipart/mixed; boundary=b{level}", ""]
    lines += [f"--b{depth - 1}", "Content-Type: text/plain", "", "62310 at the bottom", f"--b{depth - 1}--"]
    return "\n".join(lines).encode()


def _many_parts(count: int) -> bytes:
    parts = "".join(f"--p\nContent-Type: text/plain\n\npart {n}\n" for n in range(count))
    return _mail([FROM, "Subject: parts", "MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=p"],
                 parts + "--p--\n")


def _rfc822_chain(depth: int) -> bytes:
    inner = _mail([FROM, "Subject: innermost"], "62310")
    for level in range(depth):
        inner = _mail([FROM, f"Subject: wrap {level}", "MIME-Version: 1.0", "Content-Type: message/rfc822"], inner)
    return inner


def generated_cases() -> dict[str, bytes]:
    """Hostile messages written for the P-rows, by name."""
    b64_zeros = base64.encodebytes(b"\0" * 3_000_000)
    qp_soft = b"=\n" * 500_000
    cases = {
        "p01_empty": b"",
        "p01_whitespace": b" \r\n\t \n",
        "p01_garbage": b"\x00\x01 not an email",
        "p01_binary": bytes(range(256)) * 40,
        "p02_no_blank_line": b"From: pat@clinic.example\nSubject: x\nWhat is 62310?\n",
        "p03_no_from": _mail(["Subject: no sender"]),
        "p03_empty_from": _mail(["From:", "Subject: empty"]),
        "p03_two_froms": _mail([FROM, "From: other@clinic.example"]),
        "p03_group_from": _mail(["From: group: a@x.example, b@y.example;"]),
        "p04_no_message_id": _mail([FROM, "Subject: no id"]),
        "p05_duplicate_id_a": _mail([FROM, "Message-ID: <same@x.example>"], "62310 a"),
        "p05_duplicate_id_b": _mail(["From: other@clinic.example", "Message-ID: <same@x.example>"], "62310 b"),
        "p06_latin1_raw": b"From: Jos\xe9 <jose@clinic.example>\nSubject: f\xfcr 62310\n\n\xe9t\xe9\n",
        "p06_utf8_raw": "From: Zoë <zoe@clinic.example>\nSubject: ÿ 62310\n\nçà\n".encode(),
        "p07_encoded_crlf_subject": _mail([FROM, "Subject: =?utf-8?q?x=0D=0ABcc:_evil@evil.example?="]),
        "p07_encoded_crlf_name": _mail(["From: =?utf-8?b?" + base64.b64encode(b"Eve\r\nBcc: x@evil.example").decode()
                                        + "?= <eve@clinic.example>"]),
        "p08_unknown_charset": _mail([FROM, "Content-Type: text/plain; charset=x-unknown"], b"\xe9 62310"),
        "p08_cp850": _mail([FROM, "Content-Type: text/plain; charset=cp-850"], b"\x82 62310"),
        "p08_bogus_charset_word": _mail([FROM, "Subject: =?no-such-charset?q?abc?="]),
        "p08_wrong_declared": _mail([FROM, "Content-Type: text/plain; charset=us-ascii"], "naïve 62310"),
        "p09_utf32_bomb": _mail([FROM, "Content-Type: text/plain; charset=utf-32LE",
                                 "Content-Transfer-Encoding: base64"],
                                b"\n".join([base64.b64encode(b"F" * 57)] * 100)),
        "p10_utf7": _mail([FROM, "Subject: =?utf-7?q?+AOk-?=", "Content-Type: text/plain; charset=utf-7"],
                          b"+AOk- 62310"),
        "p10_gb18030": _mail([FROM, "Content-Type: text/plain; charset=gb18030"], "编码 62310".encode("gb18030")),
        "p10_iso2022jp": _mail([FROM, "Content-Type: text/plain; charset=iso-2022-jp"],
                               "コード 62310".encode("iso-2022-jp")),
        "p11_rfc2231": _mail([FROM, "MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=z"],
                             "--z\nContent-Type: text/plain\n\n62310\n--z\nContent-Type: application/pdf\n"
                             "Content-Disposition: attachment; filename*0*=utf-8''%D0%BF%D1%80;\n"
                             " filename*1*=%D0%B8.pdf\n\nx\n--z--\n"),
        "p12_comma_name": _mail(["From: =?utf-8?q?Doe,_John?= <j@clinic.example>"]),
        "p13_spoof_paren": _mail(["From: alice@example.org)<bob@example.org>"]),
        "p13_double_at": _mail(["From: a@b@c"]),
        "p13_quoted_address": _mail(['From: "x@y" <z@clinic.example>']),
        "p14_10000_to": _mail([FROM, "To: " + ", ".join(f"u{i}@x.example" for i in range(10_000))]),
        "p14_1mb_header": _mail([FROM, "X-Junk: " + "a" * 1_000_000]),
        "p14_header_flood": _mail([FROM] + [f"X-H{i}: v" for i in range(20_000)]),
        "p15_encoded_words": _mail([FROM, "Subject: " + " ".join(["=?utf-8?q?a?="] * 20_000)]),
        "p15_params": _mail([FROM, "Content-Type: text/plain; " + "; ".join(f"p{i}=v" for i in range(20_000))]),
        "p15_unclosed_quote": _mail([FROM, 'Content-Type: text/plain; a="' + ";" * 40_000]),
        "p16_depth_100": _nested(100),
        "p16_depth_1000": _nested(1000),
        "p16_10000_parts": _many_parts(10_000),
        "p16_never_closed": _mail([FROM, "MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=z"],
                                  "--z\nContent-Type: text/plain\n\n62310 never closed\n"),
        "p16_epilogue_part": _mail([FROM, "MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=z"],
                                   "--z\n\nfirst\n--z--\n--z\nContent-Type: text/plain\n\n62310 after\n"),
        "p17_over_30mb": _mail([FROM], b"x" * (31 * 1024 * 1024)),
        "p18_rfc822_50_deep": _rfc822_chain(50),
        "p18_zip_bomb_attachment": _mail(
            [FROM, "MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=z"],
            b"--z\nContent-Type: text/plain\n\n62310\n--z\nContent-Type: application/zip\n"
            b"Content-Transfer-Encoding: base64\nContent-Disposition: attachment; filename=bomb.zip\n\n"
            + b64_zeros + b"\n--z--\n"),
        "p18_base64_bomb_text": _mail([FROM, "Content-Transfer-Encoding: base64"], b64_zeros),
        "p18_qp_soft_breaks": _mail([FROM, "Content-Transfer-Encoding: quoted-printable"], qp_soft + b"62310"),
        "p18_qp_long_line": _mail([FROM, "Content-Transfer-Encoding: quoted-printable"], b"=41" * 1_000_000),
        "p19_uuencode": _mail([FROM, "Content-Transfer-Encoding: x-uuencode"], "begin 644 a.txt\n#86)C\n`\nend\n"),
        "p19_base65": _mail([FROM, "Content-Transfer-Encoding: base65"], "62310"),
        "p19_bad_base64": _mail([FROM, "Content-Transfer-Encoding: base64"], "!!!not base64 at all==="),
        "p20_html_only": _mail([FROM, "Content-Type: text/html"], "<script>alert(1)</script><p>62310</p>"
                               "<img src=http://tracker.example/x.gif>"),
        "p20_5000_links": _mail([FROM, "Content-Type: text/html"],
                                "".join(f'<a href="http://x.example/{n}">l{n}</a>' for n in range(5000))),
        "p22_nul_rtl": _mail([FROM, "Subject: \u202eevil\u200b 62310"], "a\x00b 62310\u202e"),
        "p23_tnef": _mail([FROM, "MIME-Version: 1.0", "Content-Type: multipart/mixed; boundary=z"],
                          b"--z\nContent-Type: text/plain\n\n62310\n--z\nContent-Type: application/ms-tnef\n"
                          b"Content-Disposition: attachment; filename=winmail.dat\n\n\x78\x9f\x3e\x22\n--z--\n"),
        "p23_disagreeing_alternative": _mail(
            [FROM, "MIME-Version: 1.0", "Content-Type: multipart/alternative; boundary=z"],
            "--z\nContent-Type: text/plain\n\n62310 text\n--z\nContent-Type: text/html\n\n<p>E11.9 html</p>\n--z--\n"),
        "p24_headers_header": _mail([FROM, "headers: x", "Subject: odd"]),
        "p24_2kb_subject": _mail([FROM, "Subject: " + "long " * 500]),
        "p24_folded_subject": _mail([FROM, "Subject: a\n \t b\n\t\t c 62310"]),
        "x06_forged_control": _mail([FROM, "X-CaseConsultant-Loop: someone.else", "X-CaseConsultant-Account: plan"]),
        "x01_dmarc_fail": _mail([FROM, "Authentication-Results: mx.caseconsultant.example; dmarc=fail"]),
        "l01_auto_submitted": _mail([FROM, "Auto-Submitted: Auto-Replied"]),
        "l05_dsn": _mail(["From: MAILER-DAEMON@mx.example",
                          "Content-Type: multipart/report; report-type=delivery-status; boundary=z"],
                         "--z\n\nfailed\n--z--\n"),
    }
    for n in range(40):  # random bytes with a valid-looking head
        seed = (n * 2654435761) % 2**32
        junk = bytes((seed >> (i % 24)) & 0xFF ^ (i * 31) & 0xFF for i in range(2000 + 97 * n))
        cases[f"p25_junk_{n}"] = _mail([FROM, f"Subject: junk {n}"], junk)
    return cases


def corpus() -> list[tuple[str, bytes]]:
    items = [(f"stdlib/{p.name}", p.read_bytes()) for p in stdlib_data()]
    items += [(f"fixture/{p.name}", p.read_bytes()) for p in sorted(FIXTURES.glob("*.eml"))]
    items += list(generated_cases().items())
    variants = []
    for name, raw in items:
        if len(raw) < 2_000_000 and b"\n" in raw:
            variants.append((f"{name}+crlf", raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")))
            variants.append((f"{name}+cr", raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r")))
    return items + variants


def make_services(engine) -> Services:  # type: ignore[no-untyped-def]
    """No caps and no quota in the way: every message a person could have sent reaches the answer stage."""
    return Services(engine=engine, inbox=MemoryInbox(), transport=MemoryTransport(), matcher=KeywordMatcher(),
                    address=ADDRESS, authserv_id="mx.caseconsultant.example",
                    policy=QuotaPolicy(guest_answers=10**6), caps=ReplyCaps(per_hour=10**6, per_day=10**6))


# the outcomes a message may end in; anything else (failed, received) is a fault
ENDINGS = {CaseStatus.answered, CaseStatus.over_quota, CaseStatus.ignored, CaseStatus.quarantined,
           CaseStatus.rejected}


def test_corpus_through_the_whole_pipeline(engine) -> None:  # type: ignore[no-untyped-def]
    items = corpus()
    services = make_services(engine)
    slowest = (0.0, "")
    for name, raw in items:
        services.inbox.deliver(raw)
        started = time.monotonic()
        with watchdog():
            run_once(services, now=lambda: NOW)
        elapsed = time.monotonic() - started
        slowest = max(slowest, (elapsed, name))
        assert not services.inbox.messages, f"{name}: not acknowledged"
    with Session(engine) as session:
        cases = session.exec(select(Case).order_by(Case.id)).all()
        replied = {row.case_id for row in session.exec(select(Outbox)).all()}
    assert len(cases) == len(items)
    outcomes: Counter[str] = Counter()
    for (name, _raw), case in zip(items, cases):
        assert case.status in ENDINGS, f"{name}: ended {case.status.value} ({case.reason}, {case.error})"
        if case.status == CaseStatus.answered:
            assert case.id in replied, f"{name}: answered without a reply"
        else:
            assert case.reason, f"{name}: {case.status.value} without a recorded reason"
        label = case.status.value if case.status == CaseStatus.answered else f"{case.status.value}:{case.reason}"
        outcomes[label] += 1
    print(f"\nhostile corpus: {len(items)} messages through run_once, 0 exceptions, 0 hangs; slowest "
          f"{slowest[0]:.2f} s ({slowest[1]}); outcomes {dict(sorted(outcomes.items()))}")
    assert len(items) >= 300


def test_the_corpus_has_what_the_figure_names() -> None:
    names = [name for name, _ in corpus()]
    assert sum(n.startswith("stdlib/msg_") for n in names) >= 48
    assert {"p16_depth_100", "p17_over_30mb", "p14_header_flood", "p18_base64_bomb_text"} <= set(names)


# -- fuzzing --------------------------------------------------------------------------------
# Hypothesis draws a message (a From, up to a dozen headers, a body, a line ending) and a
# seed; each example is then fed in as drawn and as MUTATIONS byte-level mutations of it
# (flips, inserted tokens, cut and doubled ranges), all reproducible from the drawn values.
# The engine's own cost per example is far above the parser's, so this is how 100,000
# inputs fit in CI time; a failure names the exact bytes that failed.
MUTATIONS = 39
HEADER_NAMES = [
    "To", "Cc", "Subject", "Message-ID", "References", "In-Reply-To", "Reply-To", "Return-Path",
    "Content-Type", "Content-Transfer-Encoding", "Content-Disposition", "MIME-Version", "Auto-Submitted",
    "Precedence", "List-Id", "X-Auto-Response-Suppress", "Authentication-Results", "X-CaseConsultant-Loop",
    "Date", "X-Loop", "From",
]
TOKENS = [
    "=?utf-8?q?x=0D=0ABcc:_a@b?=", "=?utf-8?b?w6k=?=", "=?bogus?q?x?=", "=?utf-7?q?+AOk-?=", "<a@b.example>",
    "pat@clinic.example", "multipart/mixed; boundary=z", "multipart/report; report-type=delivery-status",
    "text/html", "base64", "quoted-printable", "auto-replied", "no", "bulk", "mx.caseconsultant.example; dmarc=fail",
    "mx.caseconsultant.example; spf=pass", 'a="unclosed', "\u202e", "\x00", "\r", "\n ", ";", ",", "<>", "62310",
    "E11.9", "--z", "--z--", "charset=utf-32", "filename*0*=utf-8''%D0%BF", "\n\n", ": ", "(", ")", '"',
]
FROMS = [
    "Pat <pat@clinic.example>", "pat@clinic.example", "=?utf-8?q?Doe,_John?= <j@clinic.example>",
    "MAILER-DAEMON@mx.example", "alice@example.org)<bob@example.org>", '"x@y" <z@w.example>', "", "a@b@c",
    "SRS0=ab=cd=example.com=mailer-daemon@fwd.example", "consultant@caseconsultant.example",
]
_words = st.sampled_from(TOKENS)
_value = st.lists(st.one_of(_words, st.text(max_size=20)), max_size=5).map(" ".join)
_header = st.tuples(st.one_of(st.sampled_from(HEADER_NAMES), st.text(min_size=1, max_size=10)), _value).map(
    lambda nv: f"{nv[0]}: {nv[1]}")
_body = st.one_of(st.text(max_size=200), st.lists(st.one_of(_words, st.just("\n")), max_size=20).map("".join))
structured = st.tuples(
    st.sampled_from(FROMS), st.lists(_header, max_size=12), _body, st.sampled_from(["\n", "\r\n", "\r"])
).map(lambda t: (t[3].join([f"From: {t[0]}", *t[1]]) + t[3] + t[3] + t[2]).encode("utf-8", "surrogatepass"))
messages = st.one_of(structured, structured, structured, st.binary(max_size=600))
_TOKEN_BYTES = [t.encode("utf-8", "surrogatepass") for t in TOKENS] + [b"\r\n", b"\n", b"\xff", b"\x00"]


def mutate(raw: bytes, rng: random.Random) -> bytes:
    data = bytearray(raw)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        at = rng.randrange(len(data) + 1)
        if op == 0 and data:
            data[min(at, len(data) - 1)] = rng.randrange(256)
        elif op == 1:
            data[at:at] = rng.choice(_TOKEN_BYTES)
        elif op == 2:
            del data[at:at + rng.randint(1, 40)]
        elif op == 3:
            data[at:at] = data[at:at + rng.randint(1, 200)] * rng.randint(2, 20)
        else:
            del data[at:]
    return bytes(data)


def check_fast_path(raw: bytes) -> str:
    """What every message meets first: parse, then machine and sender-authentication checks."""
    try:
        q = parse_message(raw)
    except SenderError as exc:
        assert str(exc) != parse._INTERNAL_FAILURE, (raw[:300], repr(exc.__cause__))
        return exc.reason
    for value in (q.sender, q.sender_name, q.subject, q.message_id, q.reply_to):
        assert "\r" not in value and "\n" not in value, raw[:300]
    assert q.sender.count("@") == 1, raw[:300]
    reason = machine_reason(q, own_address=ADDRESS)
    verdict = authentication_verdict(q.headers, authserv_id="mx.caseconsultant.example")
    assert verdict in {"pass", "fail", "none"}
    return f"machine:{reason}" if reason else f"person:{verdict}"


_fuzz_count = Counter[str]()


@settings(max_examples=FUZZ_EXAMPLES // (MUTATIONS + 1), deadline=None, database=None,
          suppress_health_check=list(HealthCheck))
@given(raw=messages, seed=st.integers(0, 2**32 - 1))
def test_fuzz_parse_machine_and_sender_authentication(raw: bytes, seed: int) -> None:
    rng = random.Random(seed)
    with watchdog():
        for data in [raw] + [mutate(raw, rng) for _ in range(MUTATIONS)]:
            _fuzz_count[check_fast_path(data).partition(":")[0]] += 1


def test_fuzz_count_reached() -> None:
    """Runs after the fuzz test (file order): the figure is the number of inputs actually tried."""
    total = sum(_fuzz_count.values())
    if total == 0:
        pytest.skip("the fuzz test did not run in this session")
    print(f"\nfuzz: {total} generated inputs through parse + machine + sender authentication, 0 crashes, "
          f"0 hangs; outcomes {dict(_fuzz_count.most_common())}")
    assert total >= FUZZ_EXAMPLES


@pytest.fixture(scope="module")
def shared_services(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Services]:
    """One worker (one id, so it keeps the poll lease) and one database for every example."""
    from consultant.db import make_engine, migrate

    eng = make_engine(f"sqlite:///{tmp_path_factory.mktemp('fuzz') / 'fuzz.sqlite3'}")
    migrate(eng)
    yield make_services(eng)
    eng.dispose()


_pipeline_count = Counter[str]()
_mailboxes = itertools.count(1)


@settings(max_examples=PIPELINE_EXAMPLES, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(raw=messages, seed=st.integers(0, 2**32 - 1))
def test_fuzz_whole_pipeline(shared_services: Services, raw: bytes, seed: int) -> None:
    services = shared_services
    services.inbox = MemoryInbox(uidvalidity=next(_mailboxes))  # a new key for every example
    rng = random.Random(seed)
    for data in (raw, mutate(raw, rng), mutate(raw, rng)):
        services.inbox.deliver(data)
    with watchdog():
        run_once(services, now=lambda: NOW)
    assert not services.inbox.messages
    with Session(services.engine) as session:
        cases = session.exec(select(Case).where(Case.uidvalidity == services.inbox.uidvalidity)).all()  # type: ignore[attr-defined]
    assert len(cases) == 3
    for case in cases:
        assert case.status in ENDINGS, (case.status, case.reason, case.error)
        _pipeline_count[case.status.value] += 1


def test_fuzz_pipeline_count_reached() -> None:
    total = sum(_pipeline_count.values())
    if total == 0:
        pytest.skip("the pipeline fuzz test did not run in this session")
    print(f"\npipeline fuzz: {total} generated messages through run_once, 0 exceptions, 0 hangs; "
          f"{dict(_pipeline_count)}")
    assert total >= 3 * PIPELINE_EXAMPLES
