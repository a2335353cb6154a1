"""PARSE: raw message bytes -> Question. Pure: no I/O, no clock, no logging of content.

`parse_message(raw)` returns a frozen `Question` or raises a `SenderError`
(`UnparseableMessage`, `NoSender`); nothing else escapes, whatever the bytes.

Why the standard library's `email` package with `policy.compat32`, and our own
header decoding, rather than mail-parser or `policy.default`:

* mail-parser walks every part, parses Received and Date headers, and
  re-encodes attachments: work and attack surface we do not need, and its
  failures are harder to bound than a small set of our own.
* `policy.default` parses header values with `email._header_value_parser`,
  which is quadratic on Python 3.11 (CPython gh-136063): a 36 KB Content-Type
  took 0.8 s to parse against 0.02 s under `compat32`. `compat32` only splits
  the MIME tree; every value we keep is decoded here, in linear time, with
  rules we control: RFC 2047 words, raw 8-bit bytes (UTF-8, else
  Windows-1252), unknown charsets (never a LookupError).
* Email address parsing is strict and ours on every Python version: 3.11.7
  lacks the CVE-2023-27043 fix, and even `getaddresses(strict=True)` splits
  on a comma inside an encoded display name (`=?utf-8?q?Doe,_John?=`), so it
  is not used where it exists either. Ambiguous From values are refused
  rather than guessed (`alice@example.org)<bob@example.org>`, `a@b@c`, two
  addresses, group syntax, '@' in an unquoted display name).

HTML-only mail is turned into text by html2text. Costs are capped before any
work grows with the input: message size, header block, MIME parameter
headers (compat32's own splitter is quadratic too, see `_BoundedMessage`),
MIME depth and part count, bytes decoded per part, HTML fed to html2text, and
text scanned. The limits are the MAX_* constants in `consultant.mail.limits`;
the decoding, the address parser, body cleaning and subject rules are the
modules beside it in `consultant.mail`.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field
from email import policy
from email.message import Message
from email.parser import BytesParser
from html.parser import HTMLParser

import html2text

from consultant.errors import NoSender, SenderError, UnparseableMessage
from consultant.mail.addresses import AddressError, parse_address
from consultant.mail.body import clean_body
from consultant.mail.limits import (
    MAX_ATTACHMENTS,
    MAX_HEADER_BYTES,
    MAX_HEADER_FIELDS,
    MAX_HTML_CHARS,
    MAX_MESSAGE_BYTES,
    MAX_MIME_DEPTH,
    MAX_MIME_PARTS,
    MAX_NAME_CHARS,
    MAX_PARAM_CHARS,
    MAX_PARAMS,
    MAX_PART_BYTES,
    MAX_REFERENCES,
    MAX_SCAN_CHARS,
    MAX_SUBJECT_CHARS,
)
from consultant.mail.subjects import is_generic_subject, strip_subject_prefixes
from consultant.mail.text import clean_line, decode_bytes, decode_header_value, decode_raw, decode_words, unfold

log = logging.getLogger(__name__)


_INTERNAL_FAILURE = "parser failed on this message"


@dataclass(frozen=True)
class Question:
    message_id: str
    sender: str
    sender_name: str
    subject: str
    body: str
    text: str
    references: tuple[str, ...]
    reply_to: str
    attachments: tuple[str, ...]
    content_hash: str
    headers: tuple[tuple[str, str], ...]

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case), or None."""
        wanted = name.lower()
        for key, value in self.headers:
            if key == wanted:
                return value
        return None

    def header_values(self, name: str) -> tuple[str, ...]:
        wanted = name.lower()
        return tuple(value for key, value in self.headers if key == wanted)


def parse_message(raw: bytes) -> Question:
    """Turn one raw RFC 5322 message into a Question.

    Raises UnparseableMessage for garbage or over-limit structure, NoSender
    when there is no single, unambiguous From address.
    """
    try:
        return _parse(bytes(raw))
    except SenderError:
        raise
    except RecursionError as exc:
        raise UnparseableMessage("MIME structure nested too deeply") from exc
    except Exception as exc:  # the last line of defence: a bug here must not kill the worker
        log.warning("parse_message internal failure: %s", type(exc).__name__)
        raise UnparseableMessage(_INTERNAL_FAILURE) from exc


def _parse(raw: bytes) -> Question:
    if not raw.strip():
        raise UnparseableMessage("empty message")
    if len(raw) > MAX_MESSAGE_BYTES:
        raise UnparseableMessage("message too large")
    content_hash = hashlib.sha256(raw).hexdigest()
    normalised = raw.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    _check_header_block(normalised)
    msg = BytesParser(_class=_BoundedMessage, policy=policy.compat32).parsebytes(normalised)
    raw_headers = [(str(name), str(value)) for name, value in msg.raw_items()]
    if not raw_headers:
        raise UnparseableMessage("no headers")
    headers = tuple((name.strip().lower(), clean_line(decode_header_value(value))) for name, value in raw_headers)

    from_values = [v for n, v in raw_headers if n.strip().lower() == "from"]
    if not from_values:
        raise NoSender("no From header")
    if len(from_values) > 1:
        raise NoSender("several From headers")
    try:
        sender, sender_name = parse_address(unfold(decode_raw(from_values[0])))
    except AddressError as exc:
        raise NoSender(f"From address refused: {exc}") from None

    reply_to = ""
    reply_values = [v for n, v in raw_headers if n.strip().lower() == "reply-to"]
    if len(reply_values) == 1:
        try:
            reply_to, _ = parse_address(unfold(decode_raw(reply_values[0])))
        except AddressError:
            reply_to = ""

    subject = _first(headers, "subject")[:MAX_SUBJECT_CHARS]
    walk = _Walk()
    segments = _walk_part(msg, 0, walk)
    body = clean_body("\n\n".join(segments), subject=subject)
    question_subject = strip_subject_prefixes(subject)
    if is_generic_subject(question_subject):
        question_subject = ""
    text = "\n".join(part for part in (question_subject, body) if part)

    return Question(
        message_id=_message_id(_first(headers, "message-id")),
        sender=sender,
        sender_name=sender_name,
        subject=subject,
        body=body,
        text=text,
        references=_references(headers),
        reply_to=reply_to,
        attachments=tuple(walk.attachments[:MAX_ATTACHMENTS]),
        content_hash=content_hash,
        headers=headers,
    )


# --- header block limits ----------------------------------------------------

_HEADER_LINE = re.compile(rb"From |[\x21-\x39\x3b-\x7e]*:|[ \t]")


def _check_header_block(raw: bytes) -> None:
    """Refuse a header block too large to parse cheaply, before the parser sees it.

    Mirrors the feed parser's idea of where headers end: the first blank line,
    or the first line that is neither a field nor a continuation.
    """
    pos, fields, size = 0, 0, len(raw)
    while pos < size:
        end = raw.find(b"\n", pos)
        if end < 0:
            end = size
        if end - pos > MAX_HEADER_BYTES:
            raise UnparseableMessage("header line too long")
        line = raw[pos:end]
        if not line.strip() or not _HEADER_LINE.match(line):
            return
        if line[:1] not in (b" ", b"\t"):
            fields += 1
        pos = end + 1
        if pos > MAX_HEADER_BYTES or fields > MAX_HEADER_FIELDS:
            raise UnparseableMessage("header block too large")


_PARAM_HEADERS = frozenset({"content-type", "content-disposition"})


class _BoundedMessage(Message):
    """A compat32 Message whose MIME parameter headers are cut short before use.

    The standard library splits parameters with a loop that is quadratic in the
    number of ';' inside an unclosed quote (40,000 of them took 12 s). Every
    parameter lookup (boundary, charset, filename) goes through `get`, so
    bounding the value here bounds them all, in every part.
    """

    def get(self, name, failobj=None):  # type: ignore[override]
        value = super().get(name, failobj)
        if isinstance(value, str) and name.lower() in _PARAM_HEADERS:
            return _shorten_params(value)
        return value


def _shorten_params(value: str) -> str:
    if len(value) > MAX_PARAM_CHARS:
        value = value[:MAX_PARAM_CHARS]
    if value.count(";") > MAX_PARAMS:
        cut = -1
        for _ in range(MAX_PARAMS + 1):
            cut = value.index(";", cut + 1)
        value = value[:cut]
    return value


# --- header values -----------------------------------------------------------


def _first(headers: tuple[tuple[str, str], ...], name: str) -> str:
    for key, value in headers:
        if key == name:
            return value
    return ""


_MSG_ID = re.compile(r"<[^<>\s]{1,990}>")


def _message_id(value: str) -> str:
    found = _MSG_ID.search(value)
    if found:
        return found.group(0)
    value = value.strip()
    if value and " " not in value and len(value) <= 990:
        return f"<{value.strip('<>')}>"
    return ""


def _references(headers: tuple[tuple[str, str], ...]) -> tuple[str, ...]:
    found: list[str] = []
    for name in ("references", "in-reply-to"):
        for key, value in headers:
            if key != name:
                continue
            for ref in _MSG_ID.findall(value):
                if ref not in found and len(found) < MAX_REFERENCES:
                    found.append(ref)
    return tuple(found)


# --- the MIME walk -----------------------------------------------------------


@dataclass
class _Walk:
    parts: int = 0
    text_chars: int = 0
    html_chars: int = 0
    attachments: list[str] = field(default_factory=list)

    def attach(self, name: str) -> None:
        if len(self.attachments) < MAX_ATTACHMENTS:
            self.attachments.append(name)


_SIGNATURE_TYPES = frozenset(
    {"application/pgp-signature", "application/pkcs7-signature", "application/x-pkcs7-signature"}
)
_FORWARD_LINE = "---------- Forwarded message ---------"


def _safe_str(getter, default: str = "") -> str:
    try:
        value = getter()
    except Exception:  # noqa: BLE001 - the stdlib's parameter helpers have raised TypeError, IndexError, ...
        return default
    return value if isinstance(value, str) else default


def _content_type(part: Message) -> str:
    return _safe_str(part.get_content_type, "text/plain").lower()


def _disposition(part: Message) -> str:
    raw = _safe_str(lambda: str(part.get("content-disposition", "")))
    return raw.split(";", 1)[0].strip().lower()


def _filename(part: Message) -> str:
    name = _safe_str(part.get_filename)
    if not name:
        return ""
    name = clean_line(decode_words(decode_raw(name)))
    name = re.split(r"[/\\]", name)[-1].strip()
    return name[:MAX_NAME_CHARS]


def _part_bytes(part: Message) -> bytes:
    # decode=True undoes the transfer encoding only; decode=False would decode
    # 8-bit text with the part's own charset parameter, which may be hostile.
    data = part.get_payload(decode=True)
    return data[:MAX_PART_BYTES] if isinstance(data, bytes) else b""


def _walk_part(part: Message, depth: int, walk: _Walk) -> list[str]:
    """Text segments of one MIME part, in reading order; attachments noted on `walk`."""
    walk.parts += 1
    if walk.parts > MAX_MIME_PARTS or depth > MAX_MIME_DEPTH:
        return []
    ctype = _content_type(part)
    if part.is_multipart():
        payload = part.get_payload()
        children = [c for c in payload if isinstance(c, Message)] if isinstance(payload, list) else []
        if ctype.startswith("message/"):
            return _walk_forwarded(part, children, depth, walk)
        if ctype == "multipart/alternative":
            return _walk_alternative(children, depth, walk)
        if ctype == "multipart/report":
            children = [c for c in children[:1] if not _content_type(c).startswith("message/")]
        segments: list[str] = []
        for child in children:
            segments.extend(_walk_part(child, depth + 1, walk))
        return segments

    disposition = _disposition(part)
    name = _filename(part)
    if ctype in ("text/plain", "text/html") and disposition != "attachment" and not name:
        if walk.text_chars >= MAX_SCAN_CHARS:
            return []
        text = decode_bytes(_part_bytes(part), _safe_str(part.get_content_charset))
        if ctype == "text/html":
            # one budget for all HTML parts: html2text is the slowest step per character
            limit = max(0, MAX_HTML_CHARS - walk.html_chars)
            walk.html_chars += min(len(text), limit)
            text = html_to_text(text, limit=limit) if limit else ""
            walk.text_chars += len(text)
            return [text]
        walk.text_chars += len(text)
        if _safe_str(lambda: part.get_param("format", "")).lower() == "flowed":
            delsp = _safe_str(lambda: part.get_param("delsp", "")).lower() == "yes"
            text = unflow(text, delsp=delsp)
        text, uu_names = strip_uuencoded(text)
        for uu_name in uu_names:
            walk.attach(uu_name)
        return [text]
    if ctype not in _SIGNATURE_TYPES and (name or disposition == "attachment"):
        walk.attach(name)
    return []


def _walk_alternative(children: list[Message], depth: int, walk: _Walk) -> list[str]:
    """Prefer the text/plain alternative; fall back to the richest one that has text."""
    tried: set[int] = set()
    for index, child in enumerate(children):
        if _content_type(child) == "text/plain":
            tried.add(index)
            segments = _walk_part(child, depth + 1, walk)
            if any(s.strip() for s in segments):
                return segments
            break
    for index in reversed(range(len(children))):
        if index in tried:
            continue
        segments = _walk_part(children[index], depth + 1, walk)
        if any(s.strip() for s in segments):
            return segments
    return []


def _walk_forwarded(part: Message, children: list[Message], depth: int, walk: _Walk) -> list[str]:
    """A message/rfc822 part: someone forwarded a whole message; keep its text."""
    name = _filename(part)
    if name or _disposition(part) == "attachment":
        walk.attach(name)
    if _content_type(part) != "message/rfc822" or not children:
        return []
    inner = children[0]
    subject = clean_line(decode_header_value(_safe_str(lambda: str(inner.get("subject", "")))))
    segments = _walk_part(inner, depth + 1, walk)
    head = f"{_FORWARD_LINE}\nSubject: {subject[:MAX_SUBJECT_CHARS]}\n"
    return [head + "\n" + "\n\n".join(segments)]


def unflow(text: str, *, delsp: bool) -> str:
    """Undo RFC 3676 format=flowed soft line breaks (quoted lines are left alone)."""
    out: list[str] = []
    pending = ""
    for line in text.replace("\r\n", "\n").split("\n"):
        if line.startswith(">"):
            if pending:
                out.append(pending)
                pending = ""
            out.append(line)
            continue
        line = line.removeprefix(" ")
        if line.endswith(" ") and line.rstrip() != "--":
            pending += line[:-1] if delsp else line
        else:
            out.append(pending + line)
            pending = ""
    if pending:
        out.append(pending)
    return "\n".join(out)


_UU_BEGIN = re.compile(r"begin [0-7]{3,4} (\S.{0,250})")


def strip_uuencoded(text: str) -> tuple[str, list[str]]:
    """Remove inline uuencoded blocks ("begin 644 name" ... "end"); return their names."""
    if "begin " not in text:
        return text, []
    names: list[str] = []
    out: list[str] = []
    inside = False
    for line in text.split("\n"):
        if not inside and (found := _UU_BEGIN.fullmatch(line.strip())):
            inside = True
            names.append(clean_line(found.group(1))[:MAX_NAME_CHARS])
            continue
        if inside:
            if line.strip() == "end":
                inside = False
            continue
        out.append(line)
    return "\n".join(out), names


# --- HTML --------------------------------------------------------------------

_MD_ESCAPE = re.compile(r"\\([\\`*_{}\[\]()#+\-.!>])")
_MD_TABLE_RULE = re.compile(r"^[ |:-]*-{3,}[ |:-]*$", re.MULTILINE)


def html_to_text(html: str, *, limit: int = MAX_HTML_CHARS) -> str:
    """HTML -> plain text via html2text: no links, no images, no remote fetches."""
    if len(html) > limit:
        # cut before the last tag start so no half tag is left to show as text
        html = html[:limit]
        html = html[: html.rfind("<")] if "<" in html else html
    try:
        converter = html2text.HTML2Text()
        converter.body_width = 0
        converter.ignore_links = True
        converter.ignore_mailto_links = True
        converter.ignore_images = True
        converter.ignore_emphasis = True
        converter.unicode_snob = True
        text = converter.handle(html)
    except Exception:  # noqa: BLE001 - a third-party converter on hostile HTML; fall back, do not fail
        return _html_fallback(html)
    text = _MD_TABLE_RULE.sub("", text)
    return _MD_ESCAPE.sub(r"\1", text)


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.chunks: list[str] = []
        self._skip = 0

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag in ("script", "style"):
            self._skip += 1
        elif tag in ("br", "p", "div", "tr", "li"):
            self.chunks.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("script", "style") and self._skip:
            self._skip -= 1

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.chunks.append(data)


def _html_fallback(html: str) -> str:
    collector = _TextCollector()
    try:
        collector.feed(html)
        collector.close()
    except Exception:  # noqa: BLE001 - last resort: no text rather than no answer
        return ""
    return "".join(collector.chunks)
