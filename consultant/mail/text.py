"""Bytes and header values to text, without ever raising.

Charsets: the declared one when it is a real text codec, else UTF-8, else
Windows-1252; unknown or odd charsets never raise a LookupError. Header values:
raw 8-bit bytes (left by the byte parser as surrogates) decoded the same way,
then RFC 2047 encoded words, adjacent words of one charset joined before
decoding. Display lines lose controls and bidi or zero-width marks.
"""

from __future__ import annotations

import binascii
import codecs
import re

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


_SURROGATES = re.compile("[\udc80-\udcff]")  # 8-bit bytes the byte parser could not decode


def decode_raw(value: str) -> str:
    """A header value as the byte parser left it (8-bit bytes as surrogates) -> text."""
    if value.isascii() or not _SURROGATES.search(value):
        return value
    return decode_bytes(value.encode("utf-8", "surrogateescape"), None)


ENCODED_WORD = re.compile(r"=\?([^?\s]{1,75})\?([bBqQ])\?([^?\s]*)\?=")
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
    for match in ENCODED_WORD.finditer(text):
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
    return decode_words(unfold(decode_raw(value)))


def unfold(value: str) -> str:
    return value.replace("\r", "").replace("\n", "")


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
INVISIBLE = re.compile(r"[\u200b-\u200f\u202a-\u202e\u2060-\u2064\u2066-\u2069\ufeff]")
_SPACES = re.compile(r"[ \t\xa0\u2028\u2029\u3000]+")


def clean_line(value: str) -> str:
    """One line of display text: no CR/LF or other controls, no bidi or zero-width marks."""
    value = _CONTROL.sub(" ", value.replace("\r", " ").replace("\n", " "))
    value = INVISIBLE.sub("", value)
    return _SPACES.sub(" ", value).strip()
