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
text scanned. The limits are the MAX_* constants below.
"""

from __future__ import annotations

import binascii
import codecs
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

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 30 * 1024 * 1024
MAX_HEADER_BYTES = 128 * 1024
MAX_HEADER_FIELDS = 500
MAX_MIME_DEPTH = 20
MAX_MIME_PARTS = 500
MAX_PART_BYTES = 2 * 1024 * 1024
MAX_HTML_CHARS = 200_000
MAX_SCAN_CHARS = 100_000
MAX_BODY_CHARS = 20_000
MAX_SUBJECT_CHARS = 1_000
MAX_NAME_CHARS = 255
MAX_ATTACHMENTS = 100
MAX_REFERENCES = 100
MAX_PARAM_CHARS = 4096
MAX_PARAMS = 64
MAX_FORWARDS = 10

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
        sender, sender_name = parse_address(_unfold(_decode_raw(from_values[0])))
    except AddressError as exc:
        raise NoSender(f"From address refused: {exc}") from None

    reply_to = ""
    reply_values = [v for n, v in raw_headers if n.strip().lower() == "reply-to"]
    if len(reply_values) == 1:
        try:
            reply_to, _ = parse_address(_unfold(_decode_raw(reply_values[0])))
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


# --- text decoding -----------------------------------------------------------

_UNKNOWN_CHARSETS = frozenset({"", "unknown", "unknown-8bit", "x-unknown", "8bit", "default", "x-user-defined"})
# Codecs that are not plain text encodings, or whose decoders are slow or odd.
_REFUSED_CODECS = frozenset({"idna", "punycode", "raw_unicode_escape", "unicode_escape", "undefined", "mbcs", "oem"})
_CHARSET_NAME = re.compile(r"[a-z0-9_.:+-]{1,40}")


def _codec_for(charset: str | None) -> str | None:
    name = (charset or "").strip().strip("\"'").lower()
    if name in _UNKNOWN_CHARSETS or not _CHARSET_NAME.fullmatch(name):
        return None
    for candidate in (name, name.replace("-", ""), name.replace("_", "-")):
        try:
            info = codecs.lookup(candidate)
        except (LookupError, ValueError, TypeError):
            continue
        if info.name in _REFUSED_CODECS or not getattr(info, "_is_text_encoding", True):
            return None
        return info.name
    return None


def decode_bytes(data: bytes, charset: str | None) -> str:
    """Bytes -> str without ever raising: declared charset, else UTF-8, else Windows-1252."""
    codec = _codec_for(charset)
    if codec is not None and codec != "ascii":
        for errors in ("strict", "replace"):
            try:
                return data.decode(codec, errors)
            except (LookupError, ValueError, TypeError):
                continue
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def _decode_raw(value: str) -> str:
    """A header value as the byte parser left it (8-bit bytes as surrogates) -> text."""
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    return decode_bytes(value.encode("utf-8", "surrogateescape"), None)


_ENCODED_WORD = re.compile(r"=\?([^?\s]{1,75})\?([bBqQ])\?([^?\s]*)\?=")
_BASE64_JUNK = re.compile(rb"[^A-Za-z0-9+/]")


def _b64decode(data: bytes) -> bytes:
    data = _BASE64_JUNK.sub(b"", data)
    if len(data) % 4 == 1:
        data = data[:-1]
    return binascii.a2b_base64(data + b"=" * (-len(data) % 4))


def _word_bytes(match: re.Match[str]) -> tuple[str, bytes]:
    charset = match.group(1).split("*", 1)[0]
    payload = match.group(3).encode("utf-8", "surrogateescape")
    if match.group(2) in "bB":
        return charset, _b64decode(payload)
    return charset, binascii.a2b_qp(payload, header=True)


def decode_words(text: str) -> str:
    """Decode RFC 2047 encoded words; adjacent words of one charset are joined first."""
    pieces: list[str] = []
    run_charset: str | None = None
    run: bytearray = bytearray()
    pos = 0
    for match in _ENCODED_WORD.finditer(text):
        gap = text[pos : match.start()]
        charset, data = _word_bytes(match)
        adjacent = run_charset is not None and not gap.strip()
        if adjacent and charset.lower() == run_charset:
            run += data
        else:
            if run_charset is not None:
                pieces.append(decode_bytes(bytes(run), run_charset))
            if not adjacent:
                pieces.append(gap)
            run_charset, run = charset.lower(), bytearray(data)
        pos = match.end()
    if run_charset is not None:
        pieces.append(decode_bytes(bytes(run), run_charset))
    pieces.append(text[pos:])
    return "".join(pieces)


def decode_header_value(value: str) -> str:
    return decode_words(_unfold(_decode_raw(value)))


def _unfold(value: str) -> str:
    return value.replace("\r", "").replace("\n", "")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_SPACES = re.compile(r"[ \t\xa0\u2028\u2029\u3000]+")


def clean_line(value: str) -> str:
    """One line of display text: no CR/LF or other controls, no bidi or zero-width marks."""
    value = _CONTROL.sub(" ", value.replace("\r", " ").replace("\n", " "))
    value = _INVISIBLE.sub("", value)
    return _SPACES.sub(" ", value).strip()


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


# --- addresses ---------------------------------------------------------------


class AddressError(ValueError):
    """An address header we will not guess at."""


def _scan_quoted(value: str, start: int) -> tuple[str, int]:
    out: list[str] = []
    i = start + 1
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise AddressError("unterminated quoted string")


def _scan_comment(value: str, start: int) -> tuple[str, int]:
    depth, i, out = 0, start, []
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            out.append(value[i + 1])
            i += 2
            continue
        if ch == "(":
            depth += 1
            if depth > 1:
                out.append(ch)
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return "".join(out), i + 1
            out.append(ch)
        else:
            out.append(ch)
        i += 1
    raise AddressError("unterminated comment")


_ATOM_STOP = frozenset(' \t"()<>,:;[]\\')


def _tokenize(value: str) -> list[tuple[str, str]]:
    """Split an address header into (kind, text) tokens, refusing stray specials."""
    tokens: list[tuple[str, str]] = []
    i, size = 0, len(value)
    while i < size:
        ch = value[i]
        if ch in " \t":
            i += 1
            if tokens and tokens[-1][0] != "ws":
                tokens.append(("ws", " "))
        elif ch == '"':
            text, i = _scan_quoted(value, i)
            tokens.append(("quoted", text))
        elif ch == "(":
            text, i = _scan_comment(value, i)
            tokens.append(("comment", text))
        elif ch == "<":
            end = value.find(">", i + 1)
            if end < 0 or "<" in value[i + 1 : end]:
                raise AddressError("unbalanced angle brackets")
            tokens.append(("angle", value[i + 1 : end].strip()))
            i = end + 1
        elif ch == ",":
            tokens.append((",", ","))
            i += 1
        elif ch == "=" and (word := _ENCODED_WORD.match(value, i)):
            tokens.append(("word", word.group(0)))
            i = word.end()
        elif ch in _ATOM_STOP:
            raise AddressError(f"unexpected {ch!r}")
        else:
            start = i
            while i < size and value[i] not in _ATOM_STOP:
                i += 1
            tokens.append(("atom", value[start:i]))
    return tokens


def _has_address(segment: list[tuple[str, str]]) -> bool:
    return any(kind == "angle" or (kind == "atom" and "@" in text) for kind, text in segment)


def _phrase(tokens: list[tuple[str, str]]) -> str:
    text = "".join(" " if kind == "ws" else t for kind, t in tokens if kind != "comment")
    return clean_line(decode_words(text))


def parse_address(value: str) -> tuple[str, str]:
    """Exactly one mailbox -> (addr-spec with lower-case domain, display name).

    Raises AddressError for anything ambiguous: no address, several, group
    syntax, unbalanced brackets or quotes, '@' in an unquoted display name.
    """
    tokens = _tokenize(value)
    segments: list[list[tuple[str, str]]] = [[]]
    for token in tokens:
        if token[0] == ",":
            segments.append([])
        else:
            segments[-1].append(token)
    segments = [s for s in segments if any(kind != "ws" for kind, _ in s)]
    with_address = [s for s in segments if _has_address(s)]
    if not with_address:
        raise AddressError("no address")
    if len(with_address) > 1:
        raise AddressError("more than one address")
    mailbox = with_address[0]
    leading = [_phrase(s) for s in segments[: segments.index(mailbox)]]
    if len(segments) > 1 and segments[-1] is not mailbox:
        raise AddressError("text after the address")

    angles = [i for i, (kind, _) in enumerate(mailbox) if kind == "angle"]
    comments = [text for kind, text in mailbox if kind == "comment"]
    if len(angles) > 1:
        raise AddressError("more than one address")
    if angles:
        at = angles[0]
        before, after = mailbox[:at], mailbox[at + 1 :]
        if any(kind not in ("ws", "comment") for kind, _ in after):
            raise AddressError("text after the address")
        if any(kind == "atom" and "@" in text for kind, text in before):
            raise AddressError("address-like display name")
        addr_spec = mailbox[at][1]
        name = _phrase(before)
    else:
        words = [(kind, text) for kind, text in mailbox if kind not in ("ws", "comment")]
        if len(words) != 1 or words[0][0] != "atom":
            raise AddressError("not a single address")
        addr_spec = words[0][1]
        name = ""
    if not name and comments:
        name = clean_line(decode_words(comments[0]))
    if leading:
        name = clean_line(", ".join([*leading, name]))
    return normalise_addr_spec(addr_spec), name[:MAX_NAME_CHARS]


_LOCAL_ASCII = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+/=?^_`{|}~-")


def _local_ok(local: str) -> bool:
    if not local or len(local) > 128 or local.startswith(".") or local.endswith(".") or ".." in local:
        return False
    return all(ch == "." or ch in _LOCAL_ASCII or (ord(ch) > 127 and ch.isalnum()) for ch in local)


def _label_ok(label: str) -> bool:
    if not label or len(label) > 63 or label[0] == "-" or label[-1] == "-":
        return False
    return all(ch == "-" or (ch.isalnum() and (ch.isascii() or ord(ch) > 127)) for ch in label)


def normalise_addr_spec(addr: str) -> str:
    """Validate local@domain; the domain is lower-cased, IDNs become A-labels."""
    if addr.count("@") != 1 or any(ch.isspace() for ch in addr):
        raise AddressError("not local@domain")
    local, domain = addr.split("@")
    domain = domain.lower()
    domain = domain.removesuffix(".")
    if not _local_ok(local) or len(domain) > 253:
        raise AddressError("bad local part or domain")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_label_ok(label) for label in labels):
        raise AddressError("bad domain")
    if not any(ch.isalpha() for ch in labels[-1]):
        raise AddressError("bad domain")
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            raise AddressError("bad international domain") from None
    return f"{local}@{domain}"


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
    name = clean_line(decode_words(_decode_raw(name)))
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


# --- body cleaning -----------------------------------------------------------

_BODY_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x84\x86-\x9f]")
_FORWARD_MARKER = re.compile(
    r"^(-{2,}\s*forwarded message\s*-{2,}|begin forwarded message:?|"
    r"-{2,}\s*(weitergeleitete nachricht|message transf[ée]r[ée]|mensaje reenviado)\s*-{2,})$",
    re.IGNORECASE,
)
_ORIGINAL_MESSAGE = re.compile(
    r"^-{2,}\s*(original message|urspr[üu]ngliche nachricht|message d'origine|mensaje original)\s*-{2,}$",
    re.IGNORECASE,
)
_UNDERSCORE_RULE = re.compile(r"^_{10,}$")
_FROM_FIELD = re.compile(r"^(from|de|von|van|da)\s*:", re.IGNORECASE)
_SENT_FIELD = re.compile(r"^(sent|date|gesendet|datum|envoy[ée]|enviado|fecha|verzonden)\s*:", re.IGNORECASE)
_TO_FIELD = re.compile(r"^(to|subject|an|betreff|[àa]|objet|para|asunto|cc)\s*:", re.IGNORECASE)
_ON_WROTE = re.compile(
    r"^(on|le|am|el|op|il|em|den|på)\s.{0,400}?"
    r"((wrote|a [ée]crit|escribi[óo]|schreef|ha scritto|escreveu|skrev)\s*|schrieb(\s.{0,200})?):$",
    re.IGNORECASE,
)
_MOBILE_SIGNATURE = re.compile(
    r"^(sent from my \S.{0,40}|sent from (outlook|mail|yahoo mail|aol|samsung|proton).{0,40}|"
    r"get outlook for (ios|android).{0,20}|sent via .{1,40}|envoy[ée] de mon \S.{0,30}|"
    r"von meinem \S.{0,30} gesendet|enviado desde mi \S.{0,30})$",
    re.IGNORECASE,
)
_FORWARD_HEADER = re.compile(
    r"^(from|sent|date|to|cc|bcc|reply-to|subject|importance|von|gesendet|an|betreff|datum)\s*:\s*(.*)$",
    re.IGNORECASE,
)
_DISCLAIMER_HEAD = re.compile(
    r"^\W*(confidential(ity)?\s+(notice|statement|note|warning)|privileged\s+(and|&)\s+confidential|"
    r"disclaimer|legal notice|hipaa\b.{0,30}notice|caution|warning|notice|external email|external)\b",
    re.IGNORECASE,
)
_DISCLAIMER_PHRASES = (
    "intended recipient",
    "intended only for",
    "intended solely",
    "confidential",
    "privileged",
    "prohibited",
    "unauthorized",
    "unauthorised",
    "notify the sender",
    "notify us",
    "delete this",
    "delete the",
    "destroy",
    "dissemination",
    "distribution",
    "copying",
    "legally protected",
    "originated from outside",
    "outside of the organization",
    "outside your organization",
    "do not click",
)


def _quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _next_nonblank(lines: list[str], start: int) -> int:
    for index in range(start, min(len(lines), start + 6)):
        if lines[index].strip():
            return index
    return -1


def _on_wrote_span(lines: list[str], i: int) -> int:
    """How many lines an "On <date>, <name> wrote:" attribution takes (0 if none)."""
    first = lines[i].strip()
    if not first or first.split(" ", 1)[0].lower() not in ("on", "le", "am", "el", "op", "il", "em", "den", "på"):
        return 0
    joined = first
    for span in range(1, 4):
        if _ON_WROTE.match(joined):
            return span
        if i + span >= len(lines):
            break
        joined = f"{joined} {lines[i + span].strip()}"
    return 0


def _outlook_block(lines: list[str], i: int) -> bool:
    line = lines[i].strip()
    if _ORIGINAL_MESSAGE.match(line):
        return True
    if _UNDERSCORE_RULE.match(line):
        nxt = _next_nonblank(lines, i + 1)
        return nxt >= 0 and bool(_FROM_FIELD.match(lines[nxt].strip()))
    if not _FROM_FIELD.match(line):
        return False
    window = [lines[j].strip() for j in range(i + 1, min(len(lines), i + 8))]
    return any(_SENT_FIELD.match(w) for w in window[:4]) and any(_TO_FIELD.match(w) for w in window)


def _unquote_rest(lines: list[str], start: int) -> None:
    for index in range(start, len(lines)):
        stripped = lines[index].lstrip()
        if stripped.startswith(">"):
            lines[index] = stripped[2:] if stripped.startswith("> ") else stripped[1:]


def _copy_forward_head(lines: list[str], i: int, section: list[str]) -> int:
    """Move a forwarded message's From/Date/To block into `section` unexamined."""
    while i < len(lines) and not lines[i].strip():
        i += 1
    if i < len(lines) and _FORWARD_HEADER.match(lines[i].strip()):
        while i < len(lines) and lines[i].strip():
            section.append(lines[i])
            i += 1
    return i


def _split_sections(lines: list[str], *, kind: str) -> list[list[str]]:
    """The sender's own text, then each forwarded message; quoted reply history cut off.

    Outlook's "From:/Sent:" and "-----Original Message-----" blocks mark both
    replies and forwards; the subject's prefix decides (`kind`), and only for
    the first such block. A block with no text above it in a message that is
    not a reply is kept: someone pasted a letter, or forwarded without "Fwd:".
    """
    sections: list[list[str]] = [[]]
    forward_pending = kind == "forward"
    has_text = False
    unquotes = 0
    i = 0
    while i < len(lines):
        line = lines[i]
        stripped = line.strip()
        if not _quoted(line):
            boundary = bool(_FORWARD_MARKER.match(stripped))
            if boundary:
                nxt = _next_nonblank(lines, i + 1)
                if nxt >= 0 and _quoted(lines[nxt]) and unquotes < MAX_FORWARDS:
                    unquotes += 1
                    _unquote_rest(lines, nxt)
                i += 1
            elif _outlook_block(lines, i):
                if not forward_pending and (has_text or kind == "reply"):
                    break
                boundary = True
                if not _FROM_FIELD.match(stripped):
                    i += 1
            if boundary:
                sections.append([])
                forward_pending = has_text = False
                i = _copy_forward_head(lines, i, sections[-1])
                continue
            span = _on_wrote_span(lines, i)
            if span:
                nxt = _next_nonblank(lines, i + span)
                if (nxt < 0 or not _quoted(lines[nxt])) and (has_text or kind == "reply"):
                    break
                i += span
                continue
            has_text = has_text or bool(stripped)
        sections[-1].append(line)
        i += 1
    return sections


def _drop_forward_headers(lines: list[str], seen_subjects: set[str]) -> list[str]:
    """Remove the From/Date/To block at the top of a forwarded message; keep its subject."""
    start = 0
    while start < len(lines) and not lines[start].strip():
        start += 1
    out: list[str] = []
    index = start
    in_address_list = False
    while index < len(lines) and lines[index].strip():
        found = _FORWARD_HEADER.match(lines[index].strip())
        if found:
            name = found.group(1).lower()
            in_address_list = name in ("to", "cc", "bcc", "an")
            if name in ("subject", "betreff"):
                subject = strip_subject_prefixes(clean_line(found.group(2)))
                if subject and not is_generic_subject(subject) and subject.lower() not in seen_subjects:
                    seen_subjects.add(subject.lower())
                    out.append(subject)
        elif not (in_address_list and ("@" in lines[index] or ";" in lines[index])):
            break
        index += 1
    if index == start:
        return lines
    return out + lines[index:]


def _cut_signature(lines: list[str]) -> list[str]:
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped == "--" or _MOBILE_SIGNATURE.match(stripped):
            return lines[:index]
    return lines


def _disclaimer_kind(paragraph: str) -> str:
    """'heading' for a bare "CONFIDENTIALITY NOTICE:", 'text' for boilerplate, '' otherwise."""
    lowered = paragraph.lower()
    phrases = sum(phrase in lowered for phrase in _DISCLAIMER_PHRASES)
    head = _DISCLAIMER_HEAD.match(paragraph)
    if head and not re.search(r"\w", paragraph[head.end() :]):
        return "heading"
    if (head and phrases >= 2) or phrases >= 3:
        return "text"
    return ""


def _drop_disclaimers(lines: list[str]) -> str:
    kept: list[str] = []
    after_heading = False
    for paragraph in re.split(r"\n\s*\n", "\n".join(lines)):
        if not paragraph.strip():
            continue
        kind = _disclaimer_kind(paragraph)
        lowered = paragraph.lower()
        if kind or (after_heading and any(phrase in lowered for phrase in _DISCLAIMER_PHRASES)):
            after_heading = kind == "heading"
            continue
        after_heading = False
        kept.append(paragraph)
    return "\n\n".join(kept)


def normalise_text(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\u2028", "\n").replace("\u2029", "\n\n")
    text = text.replace("\x85", "\n").replace("\xa0", " ").replace("\t", "    ")
    text = _INVISIBLE.sub("", _BODY_CONTROL.sub("", text))
    return "\n".join(line.rstrip() for line in text.split("\n"))


def clean_body(text: str, *, subject: str = "") -> str:
    """The question in a body: quotes, signatures and disclaimers gone, forwards kept.

    `subject` is the message's subject: a forward prefix (Fwd:, FW:) makes the
    first Outlook header block a forward rather than a reply, and a forwarded
    message's subject is kept only when it adds something.
    """
    lines = normalise_text(text[: MAX_SCAN_CHARS * 2])[:MAX_SCAN_CHARS].split("\n")
    seen_subjects = {strip_subject_prefixes(clean_line(subject)).lower()}
    kept: list[str] = []
    sections = _split_sections(lines, kind=subject_kind(subject))
    for number, section in enumerate(sections):
        if number:
            section = _drop_forward_headers(section, seen_subjects)
        section = [line for line in section if not _quoted(line)]
        chunk = _drop_disclaimers(_cut_signature(section))
        if chunk.strip():
            kept.append(chunk.strip())
    body = re.sub(r"\n{3,}", "\n\n", "\n\n".join(kept))
    return body[:MAX_BODY_CHARS].strip()


# --- subjects ----------------------------------------------------------------

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
