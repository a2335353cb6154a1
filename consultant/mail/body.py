"""A body's own text: what the sender wrote, without the mail around it.

`clean_body(text, subject=...)` drops quoted replies ("On ... wrote:", Outlook
header blocks, '>' lines), the headers of forwarded messages (keeping what was
forwarded), signatures and legal disclaimers, and caps the result at
MAX_BODY_CHARS; scans stop at MAX_SCAN_CHARS.
"""

from __future__ import annotations

import re

from consultant.mail.limits import MAX_BODY_CHARS, MAX_FORWARDS, MAX_SCAN_CHARS
from consultant.mail.subjects import is_generic_subject, strip_subject_prefixes, subject_kind
from consultant.mail.text import INVISIBLE, clean_line

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
    text = INVISIBLE.sub("", _BODY_CONTROL.sub("", text))
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
