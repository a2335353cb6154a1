"""The From address, parsed strictly and by our own rules (`consultant.parse` says why).

`parse_address(value)` returns (display name, addr-spec) or raises `AddressError`.
Ambiguous values are refused rather than guessed: two addresses, group syntax,
an '@' in an unquoted display name, `alice@example.org)<bob@example.org>`.
"""

from __future__ import annotations

from consultant.mail.limits import MAX_NAME_CHARS
from consultant.mail.text import ENCODED_WORD, clean_line, decode_words


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
        elif ch == "=" and (word := ENCODED_WORD.match(value, i)):
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
