"""RENDER: template data -> Reply (pure) -> MIME bytes.

Templates live in `templates/email/` as a text and an HTML part per kind
(reply, no_match, over_quota, ...). HTML is autoescaped and undefined
variables are errors (`StrictUndefined`), so a missing value never turns into
an empty string in a customer's email.

`build_message` makes a multipart/alternative message with the threading
headers (In-Reply-To, References), `Re:` subject, `Auto-Submitted:
auto-replied` (RFC 3834) and a Message-ID on the service's own domain. It uses
the email package's compat32 classes (`MIMEText`, `Header`, `BytesGenerator`):
the modern `EmailMessage` API re-parses and refolds every header through the
header registry and cost ~2.5 ms per reply, a tenth of the whole pipeline
(docs/BENCHMARKS.md). Every header value is one line of text before it gets
there (`clean_header`, the parsed addr-spec, Message-IDs matched by a pattern
without whitespace), `_header` refuses CR and LF outright, and non-ASCII
values become RFC 2047 words, so nothing a sender wrote can add a header.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from email.charset import QP, Charset
from email.generator import BytesGenerator
from email.header import Header
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime, make_msgid
from io import BytesIO
from functools import lru_cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

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
    replacements: tuple["CodeView", ...] = ()
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
    )


def render_parts(kind: str, context: dict[str, Any]) -> tuple[str, str]:
    env = template_environment()
    text = env.get_template(f"{kind}.txt").render(**context)
    html = env.get_template(f"{kind}.html").render(**context)
    return text, html


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
    return make_msgid(idstring="cc", domain=domain)


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
    msg = MIMEMultipart("alternative")
    msg["From"] = _header(f"CaseConsultant <{sender}>")
    msg["To"] = _header(reply.to)
    msg["Subject"] = _header(reply.subject)
    msg["Date"] = format_datetime(now)
    msg["Message-ID"] = _header(reply.message_id)
    in_reply_to = _message_ids(reply.in_reply_to)
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to[0]
        refs = [r for ref in reply.references for r in _message_ids(ref)]
        chain = [r for r in refs if r != in_reply_to[0]][-10:] + [in_reply_to[0]]
        msg["References"] = " ".join(chain)
    msg["Auto-Submitted"] = "auto-replied"
    msg[LOOP_HEADER] = sender.rpartition("@")[2] or "localhost"
    msg["X-Auto-Response-Suppress"] = "All"
    msg.attach(_text_part(reply.text, "plain"))
    msg.attach(_text_part(reply.html, "html"))
    out = BytesIO()
    BytesGenerator(out, mangle_from_=False, maxheaderlen=78).flatten(msg, linesep="\r\n")
    return out.getvalue()


def _utf8_qp() -> Charset:
    charset = Charset("utf-8")
    charset.body_encoding = QP  # readable in any mail client's source view, 7-bit safe
    return charset


_UTF8_QP = _utf8_qp()


def _header(value: str) -> str | Header:
    """One header value: refused if it could end the line; RFC 2047-encoded if not ASCII."""
    if "\r" in value or "\n" in value:
        raise ValueError("a header value may not contain CR or LF")
    if value.isascii():
        return value
    return Header(value, "utf-8", maxlinelen=78)


def _text_part(body: str, subtype: str) -> MIMEText:
    if body.isascii() and all(len(line) <= 998 for line in body.splitlines()):
        return MIMEText(body, subtype, "us-ascii")
    return MIMEText(body, subtype, _UTF8_QP)
