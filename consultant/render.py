"""RENDER: template data -> Reply (pure) -> MIME bytes.

Templates live in `templates/email/` as a text and an HTML part per kind
(reply, no_match, over_quota, ...). HTML is autoescaped and undefined
variables are errors (`StrictUndefined`), so a missing value never turns into
an empty string in a customer's email.

`build_message` makes a multipart/alternative message with the threading
headers (In-Reply-To, References), `Re:` subject, `Auto-Submitted:
auto-replied` (RFC 3834) and a Message-ID on the service's own domain.

The message is laid out here, with the standard library doing the encoding
(`email.header.Header` for folding and RFC 2047 words, `binascii.b2a_qp` for
quoted-printable bodies): the layout is fixed (one multipart/alternative with
a text and an HTML part), and the email package's generators cost 2.5 ms
(`EmailMessage`) or 0.8 ms (compat32) per reply where this costs ~0.15 ms,
measured in bench/inproc.py (docs/BENCHMARKS.md). Every header value is one
line of text before it gets here (`clean_header`, the parsed addr-spec,
Message-IDs matched by a pattern without whitespace) and `_header_line`
refuses CR and LF outright, so nothing a sender wrote can add a header;
tests/test_output_safety.py re-parses 12,000 hostile values with both of the
email package's parsers.
"""

from __future__ import annotations

import binascii
import re
import secrets
from dataclasses import dataclass
from datetime import date, datetime
from email.header import Header
from email.utils import format_datetime, make_msgid
from functools import lru_cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, Template, select_autoescape

from consultant.resources import templates_dir

LOOP_HEADER = "X-CaseConsultant-Loop"  # machine.py refuses any mail carrying it
KINDS = ("reply", "no_match", "over_quota", "register", "registered", "register_failed", "balance", "help", "rejected")
_RE_PREFIX = re.compile(r"^\s*((re|aw|sv|fw|fwd)\s*(\[\d+\])?\s*:\s*)+", re.IGNORECASE)


@dataclass(frozen=True)
class CodeView:
    """What a reply shows of one code."""

    code: str
    system: str
    status: str
    official: str = ""
    plain: str = ""
    release: str = ""
    deleted_on: str = ""
    replacements: tuple[CodeView, ...] = ()
    near: tuple[str, ...] = ()
    more_specific: str = ""
    new: bool = False

    @property
    def deleted_on_text(self) -> str:
        try:
            day = date.fromisoformat(self.deleted_on)
        except ValueError:
            return self.deleted_on
        return f"{day:%B} {day.day}, {day.year}"


@dataclass(frozen=True)
class Reply:
    kind: str
    to: str
    subject: str
    text: str
    html: str
    message_id: str
    in_reply_to: str = ""
    references: tuple[str, ...] = ()


@lru_cache(maxsize=4)
def template_environment(path: str | None = None) -> Environment:
    return Environment(
        loader=FileSystemLoader(path or str(templates_dir())),
        autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=StrictUndefined,
        trim_blocks=False,
        keep_trailing_newline=True,
        auto_reload=False,  # shipped templates: no stat() of both files for every reply
    )


@lru_cache(maxsize=64)  # names come from our code (the kinds, the digest), never from mail
def _template(name: str) -> Template:
    """A shipped template, loaded once (jinja2's own cache is looked up by weak reference
    and loader for every call)."""
    return template_environment().get_template(name)


def render_parts(kind: str, context: dict[str, Any]) -> tuple[str, str]:
    return _template(f"{kind}.txt").render(**context), _template(f"{kind}.html").render(**context)


def reply_subject(subject: str) -> str:
    # "=?" is broken up: Python 3.11.7's email package decodes RFC 2047 words in a value
    # it is given, so a literal "=?utf-8?q?=0D=0ABcc:...?=" would come out as a new header
    # (CVE-2024-6923, fixed only in later releases).
    clean = clean_header(subject).replace("=?", "= ?")
    stripped = _RE_PREFIX.sub("", clean).strip()
    return f"Re: {stripped}" if stripped else "Re: your coding question"


def clean_header(value: str, limit: int = 200) -> str:
    """One line of printable text: CR, LF, NEL, U+2028 and every other control become spaces."""
    printable = "".join(ch if ch.isprintable() else " " for ch in value)
    return " ".join(printable.split())[:limit]


def new_message_id(domain: str) -> str:
    """The stdlib's Message-ID (time, pid, 64 bits of the `random` module), with 64 bits from
    the OS beside them: `random` is a shared, seedable generator (Hypothesis seeds it for each
    example), and two replies of one process in one 10 ms tick must not share an ID, which the
    outbox's unique index would refuse."""
    return make_msgid(idstring=f"cc.{secrets.token_hex(8)}", domain=domain)


def render_reply(
    kind: str,
    *,
    to: str,
    subject: str,
    context: dict[str, Any],
    domain: str,
    in_reply_to: str = "",
    references: tuple[str, ...] = (),
    message_id: str | None = None,
) -> Reply:
    if kind not in KINDS:
        raise ValueError(f"unknown reply kind {kind!r}")
    text, html = render_parts(kind, context)
    return Reply(
        kind=kind,
        to=to,
        subject=reply_subject(subject),
        text=text,
        html=html,
        message_id=message_id or new_message_id(domain),
        in_reply_to=in_reply_to,
        references=references,
    )


_MSGID = re.compile(r"<[^<>\s]+@[^<>\s]+>")


def _message_ids(value: str) -> list[str]:
    """The <id@host> tokens of `value`, less any that hold an RFC 2047 word (see reply_subject)."""
    return [m for m in _MSGID.findall(value) if "=?" not in m]


def build_message(reply: Reply, *, sender: str, now: datetime) -> bytes:
    headers = [
        ("From", f"CaseConsultant <{sender}>"),
        ("To", reply.to),
        ("Subject", reply.subject),
        ("Date", format_datetime(now)),
        ("Message-ID", reply.message_id),
    ]
    in_reply_to = _message_ids(reply.in_reply_to)
    if in_reply_to:
        refs = [r for ref in reply.references for r in _message_ids(ref)]
        chain = [r for r in refs if r != in_reply_to[0]][-10:] + [in_reply_to[0]]
        headers += [("In-Reply-To", in_reply_to[0]), ("References", " ".join(chain))]
    parts = [_text_part(reply.text, "plain"), _text_part(reply.html, "html")]
    boundary = _boundary(parts)
    headers += [
        ("Auto-Submitted", "auto-replied"),
        (LOOP_HEADER, sender.rpartition("@")[2] or "localhost"),
        ("X-Auto-Response-Suppress", "All"),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative; boundary="{boundary}"'),
    ]
    out = [*(_header_line(name, value) for name, value in headers), b""]
    for part in parts:
        out += [b"--" + boundary.encode(), part]
    out += [b"--" + boundary.encode() + b"--", b""]
    return b"\r\n".join(out)


def _header_line(name: str, value: str) -> bytes:
    """`Name: value`, folded at 78 columns; refused if the value could end the line; RFC 2047
    words when it is not ASCII."""
    if "\r" in value or "\n" in value:
        raise ValueError(f"the {name} header may not contain CR or LF")
    if value.isascii() and len(name) + len(value) + 2 <= 78:
        return f"{name}: {value}".encode("ascii")
    charset = "us-ascii" if value.isascii() else "utf-8"
    folded = Header(value, charset, maxlinelen=78, header_name=name).encode(linesep="\r\n")
    return f"{name}: {folded}".encode("ascii")


_NOT_7BIT = re.compile(r"[^\t\n\x20-\x7e]")


def _text_part(body: str, subtype: str) -> bytes:
    """One text/* body part with its headers: 7bit when it is plain short-lined ASCII,
    quoted-printable UTF-8 otherwise (readable in a source view, safe on any relay)."""
    if not _NOT_7BIT.search(body) and all(len(line) <= 998 for line in body.split("\n")):
        head = f'Content-Type: text/{subtype}; charset="us-ascii"\r\nContent-Transfer-Encoding: 7bit\r\n\r\n'
        return head.encode("ascii") + body.replace("\n", "\r\n").encode("ascii")
    lines = body.replace("\r\n", "\n").replace("\r", "\n")
    encoded = binascii.b2a_qp(lines.encode("utf-8"), quotetabs=False, istext=True, header=False)
    head = f'Content-Type: text/{subtype}; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n'
    return head.encode("ascii") + encoded.replace(b"\n", b"\r\n")


def _boundary(parts: list[bytes]) -> str:
    """A random boundary no part contains ("=_" never occurs in quoted-printable text)."""
    while True:
        boundary = f"=_cc_{secrets.token_hex(12)}"
        if not any(boundary.encode() in part for part in parts):
            return boundary
