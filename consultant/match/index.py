"""The in-memory code index, built once from the `code` table.

Everything the matcher needs at question time lives here as plain lists and
dicts: each code's display form, title and status; the title tokens of every
reportable code with their roles; an inverted index; and the few notes the
coding rules use (Excludes1, use additional code, code first).

ICD-10-CM codes that differ only in their 7th character are searched as one
"family" (S42.001 with A, B, D, G, K, P, S): the base title is matched and the
7th character is picked afterwards from what the text says about the
encounter. That keeps the search space near 40,000 documents instead of
98,000.

Building takes a few seconds on the full code set, so `load_index` keeps a
pickled copy next to the database, keyed by a fingerprint of the table.

Memory: a worker holds the index for its whole life, so the per-document and
per-title data are flat arrays (`Docs`, `Titles`, postings as `array('i')`)
rather than millions of small Python objects, the strings that repeat
(system, status, release, parent) are shared, and the long ones (official
and plain titles) are kept as UTF-8 (`Texts`). Unpickling arrays is also much
faster than unpickling tuples. Display forms are worked out from the keys
(`Displays`), and a loaded index holds one int object per row number however
many maps name it (`CodeIndex.__setstate__`): together 21 MB less per worker.
"""

from __future__ import annotations

import gc
import hashlib
import logging
import math
import os
import pickle
import re
import sys
import tempfile
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from consultant.match.text import DEFAULT_WORDS, STOPWORDS, compounds, stem, tokenize, words

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

log = logging.getLogger(__name__)

INDEX_VERSION = 12
ICD = "ICD-10-CM"
SEARCHED_SYSTEMS = frozenset({ICD, "ICD-10-PCS", "CPT", "HCPCS"})
DX, PX = "dx", "px"  # diagnoses are searched apart from procedures and supplies

# Token roles inside a title: how much an unmatched token costs.
NORMAL, DEFAULT, WITHOUT, OTHER, OPTIONAL, WEAK, ANCESTOR = 0, 1, 2, 3, 4, 5, 6
ROLE_COST = (1.0, 0.08, 0.12, 0.45, 0.15, 0.35, 0.15)
# head nouns people leave out ("carpal tunnel", "restless legs", "cluster headaches")
WEAK_WORDS = frozenset({"syndrome", "disorder", "disease", "primary"})

_SOURCES = (Path(__file__), Path(__file__).with_name("text.py"))
_CODE_REF = re.compile(r"\b([A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?)(?:\.?-)?")


class Texts:
    """Many strings kept as one UTF-8 buffer (text i is data[start[i]:start[i + 1]]),
    without the ~50-byte header of a str object each; a text is decoded when read."""

    def __init__(self) -> None:
        self.data = bytearray()
        self.start = array("I", [0])

    def append(self, text: str) -> None:
        self.data += text.encode()
        self.start.append(len(self.data))

    def __getitem__(self, i: int) -> str:
        return self.data[self.start[i] : self.start[i + 1]].decode()

    def __len__(self) -> int:
        return len(self.start) - 1

    def __iter__(self) -> Iterator[str]:
        return (self[i] for i in range(len(self)))


class Displays:
    """Each row's display form, worked out from its key when it is read: an ICD-10-CM code
    longer than three characters takes a dot after the third (E119 -> E11.9), and any other
    code is shown as its key. Only a row written otherwise is kept (`odd`; none in the
    shipped code set). A list of 177,000 display strings beside the keys held 11 MB."""

    def __init__(self, key: list[str], system: list[str]) -> None:
        self.key = key
        self.system = system
        self.odd: dict[int, str] = {}

    def add(self, row: int, display: str) -> None:
        if display != self._derived(row):
            self.odd[row] = display

    def _derived(self, row: int) -> str:
        key = self.key[row]
        return f"{key[:3]}.{key[3:]}" if len(key) > 3 and self.system[row] == ICD else key

    def __getitem__(self, row: int) -> str:
        return self.odd.get(row) or self._derived(row)


@dataclass
class Docs:
    """The searchable names (~150,000), one per reportable code's title or
    inclusion term (or 7th-character family), as parallel flat arrays.
    Document d's tokens are `tokens[start[d]:start[d + 1]]`, with their roles
    at the same positions of `roles`."""

    target: array = field(default_factory=lambda: array("i"))  # row number, or -(family number + 1)
    cost: array = field(default_factory=lambda: array("d"))  # sum of idf * role cost over the tokens
    alias: bytearray = field(default_factory=bytearray)  # 1: an inclusion term rather than the title
    start: array = field(default_factory=lambda: array("I", [0]))
    tokens: array = field(default_factory=lambda: array("i"))
    roles: bytearray = field(default_factory=bytearray)

    def __len__(self) -> int:
        return len(self.target)

    def add(self, target: int, tokens: list[int], roles: list[int], cost: float, alias: bool) -> int:
        self.target.append(target)
        self.cost.append(cost)
        self.alias.append(alias)
        self.tokens.extend(tokens)
        self.roles.extend(roles)
        self.start.append(len(self.tokens))
        return len(self.target) - 1


@dataclass
class Titles:
    """Every row's official title as `title_roles` reads it, computed once at build:
    row r's (word, role) pairs are `words[tokens[i]], roles[i]` for i in `start[r]:start[r + 1]`."""

    words: list[str] = field(default_factory=list)
    start: array = field(default_factory=lambda: array("I", [0]))
    tokens: array = field(default_factory=lambda: array("i"))
    roles: bytearray = field(default_factory=bytearray)

    def add(self, pairs: list[tuple[str, int]], ids: dict[str, int]) -> None:
        for word, role in pairs:
            wid = ids.get(word)
            if wid is None:
                wid = ids[word] = len(self.words)
                self.words.append(word)
            self.tokens.append(wid)
            self.roles.append(role)
        self.start.append(len(self.tokens))

    def __getitem__(self, row: int) -> list[tuple[str, int]]:
        lo, hi = self.start[row], self.start[row + 1]
        words = self.words
        return [(words[t], r) for t, r in zip(self.tokens[lo:hi], self.roles[lo:hi])]


@dataclass
class Family:
    base: str  # display form of the 6-character base, e.g. S42.001
    title: str
    members: tuple[int, ...]  # row numbers, in code order
    ext_tokens: list[frozenset[int]]  # tokens of each member's 7th-character phrase (shared between families)


@dataclass
class CodeIndex:
    version: int = INDEX_VERSION
    fingerprint: str = ""
    system: list[str] = field(default_factory=list)
    key: list[str] = field(default_factory=list)
    display: Displays = field(init=False)
    official: Texts = field(default_factory=Texts)
    plain: Texts = field(default_factory=Texts)
    billable: list[bool] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    change: list[str] = field(default_factory=list)
    release: list[str] = field(default_factory=list)
    parent: list[str] = field(default_factory=list)
    replaced_by: list[tuple[str, ...]] = field(default_factory=list)
    by_key: dict[str, int] = field(default_factory=dict)  # canonical key -> its first row
    same_key: dict[str, tuple[int, ...]] = field(default_factory=dict)  # the few keys on several rows -> rows
    titles: Titles = field(default_factory=Titles)
    children: dict[int, list[int]] = field(default_factory=dict)
    excludes1: dict[int, tuple[str, ...]] = field(default_factory=dict)  # row -> code prefixes
    use_additional: dict[int, tuple[str, ...]] = field(default_factory=dict)
    code_first: dict[int, tuple[str, ...]] = field(default_factory=dict)
    vocab: dict[str, int] = field(default_factory=dict)
    idf: dict[str, list[float]] = field(default_factory=dict)  # group -> token weights
    docs: Docs = field(default_factory=Docs)
    postings: dict[str, list[array]] = field(default_factory=dict)  # group -> token -> docs (array('i'))
    families: list[Family] = field(default_factory=list)
    family_of: dict[int, int] = field(default_factory=dict)  # row -> family number
    said_absent: dict[int, frozenset[str]] = field(default_factory=dict)  # target -> words an inclusion term is without

    def __post_init__(self) -> None:
        self.display = Displays(self.key, self.system)

    def __len__(self) -> int:
        return len(self.key)

    # The cache (`_write_cache`) holds row numbers as flat arrays, not as the ints of dicts
    # and tuples: pickle writes an int out wherever it is held, and each comes back as an
    # object of its own (28 bytes), about 290,000 more than there are rows. Loading gives
    # every map below the same object for one row number; `by_key` is rebuilt from `key`.
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["by_key"], state["family_of"]
        state["children"] = [(parent, array("i", kids)) for parent, kids in self.children.items()]
        state["families"] = [(f.base, f.title, array("i", f.members), f.ext_tokens) for f in self.families]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("version") != INDEX_VERSION:  # an older cache: `load_cached` sees its version and rebuilds
            self.__dict__.update(state)
            return
        rows = list(range(len(state["key"])))  # one object per row number, shared by the maps
        state["children"] = {rows[parent]: [rows[k] for k in kids] for parent, kids in state["children"]}
        families, family_of = [], {}
        for number, (base, title, members, ext_tokens) in enumerate(state["families"]):
            families.append(Family(base, title, tuple(rows[m] for m in members), ext_tokens))
            for m in members:
                family_of[rows[m]] = number
        state["families"], state["family_of"] = families, family_of
        by_key: dict[str, int] = {}
        for row, key in enumerate(state["key"]):
            by_key.setdefault(key, rows[row])
        state["by_key"] = by_key
        self.__dict__.update(state)

    def rows_for(self, key: str, system: str | None = None) -> list[int]:
        key = key.upper().replace(".", "")
        rows = self.same_key.get(key)
        if rows is None:
            row = self.by_key.get(key)
            rows = () if row is None else (row,)
        return [r for r in rows if system is None or self.system[r] == system]

    def row(self, system: str, key: str) -> int | None:
        rows = self.rows_for(key, system)
        return rows[0] if rows else None

    def token_id(self, token: str) -> int | None:
        return self.vocab.get(token)

    def ancestors(self, row: int) -> list[int]:
        out = []
        seen = set()
        parent = self.parent[row]
        while parent and parent not in seen:
            seen.add(parent)
            prow = self.row(self.system[row], parent)
            if prow is None:
                break
            out.append(prow)
            parent = self.parent[prow]
        return out

    def billable_descendants(self, row: int) -> list[int]:
        out: list[int] = []
        stack = list(reversed(self.children.get(row, [])))
        while stack:
            r = stack.pop()
            if self.billable[r] and self.status[r] == "valid":
                out.append(r)
            stack.extend(reversed(self.children.get(r, [])))
        return out


# ---------------------------------------------------------------- loading


def table_fingerprint(engine: Engine) -> str:
    from sqlalchemy import func, select

    from consultant.models import Code

    with engine.connect() as conn:
        count, max_id = conn.execute(select(func.count(Code.id), func.max(Code.id))).one()
        releases = conn.execute(select(Code.system, Code.release).distinct()).all()
    # a change to the index or tokenizer code rebuilds the cache too
    source = hashlib.sha256(b"".join(p.read_bytes() for p in _SOURCES)).hexdigest()[:12]
    text = f"v{INDEX_VERSION}|{source}|{count}|{max_id}|{sorted(map(tuple, releases))}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def default_cache_path(engine: Engine) -> Path | None:
    """Next to a SQLite file; under var/ (or $CONSULTANT_INDEX_DIR) otherwise."""
    url = engine.url
    if url.get_backend_name() == "sqlite":
        if not url.database or url.database == ":memory:":
            return None
        return Path(url.database).with_suffix(".match-index.pickle")
    base = Path(os.environ.get("CONSULTANT_INDEX_DIR", "var"))
    name = hashlib.sha256(str(url.set(password="")).encode()).hexdigest()[:12]
    return base / f"match-index-{name}.pickle"


def load_index(engine: Engine, *, cache_path: Path | None | bool = True) -> CodeIndex:
    """The index for `engine`'s code table, from the cache when it is current."""
    fingerprint = table_fingerprint(engine)
    path = default_cache_path(engine) if cache_path is True else (cache_path or None)
    cached = load_cached(path, fingerprint) if path is not None else None
    if cached is not None:
        return cached
    index = build_index(_read_rows(engine))
    index.fingerprint = fingerprint
    gc.collect()
    gc.freeze()
    if path is not None:
        _write_cache(index, path)
    return index


def load_cached(path: Path, fingerprint: str) -> CodeIndex | None:
    """The cached index at `path` when it is there and current for `fingerprint`, else None.
    Needs no database (the match helper process loads its index this way)."""
    if not path.exists():
        return None
    try:
        with path.open("rb") as fh:
            index = _unpickle(fh)
    except Exception:  # noqa: BLE001 - a stale or truncated cache is rebuilt, never trusted
        log.warning("ignoring unreadable match index cache %s", path)
        return None
    if isinstance(index, CodeIndex) and index.version == INDEX_VERSION and index.fingerprint == fingerprint:
        return index
    return None


def _unpickle(fh: Any) -> Any:
    # The index is millions of small objects; the cyclic collector adds
    # seconds to loading them and finds nothing to free.
    enabled = gc.isenabled()
    gc.disable()
    try:
        return pickle.load(fh)
    finally:
        # The index lives as long as the process: frozen, the collector never
        # walks its millions of objects again (a full pass is a 0.5 s pause
        # in the middle of some later question).
        gc.freeze()
        if enabled:
            gc.enable()


def _write_cache(index: CodeIndex, path: Path) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(index, fh, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(tmp, path)
    except OSError as exc:
        log.warning("could not write match index cache %s: %s", path, exc)


def _read_rows(engine: Engine) -> Iterator[dict[str, Any]]:
    from sqlalchemy import select

    from consultant.models import Code

    cols = [
        Code.system, Code.code, Code.display, Code.official, Code.short, Code.plain, Code.billable,
        Code.parent, Code.status, Code.change, Code.replaced_by, Code.notes, Code.release, Code.kind,
    ]
    # Streamed a batch at a time: read whole into a list, with its notes parsed, it held 475 MB.
    with engine.connect() as conn:
        result = conn.execution_options(yield_per=5_000).execute(select(*cols).order_by(Code.system, Code.code))
        for r in result:
            yield dict(r._mapping)


# ---------------------------------------------------------------- building


def build_index(rows: Iterable[dict[str, Any]]) -> CodeIndex:
    """The index of `rows` (the code table's columns by name), read once, in order."""
    index = CodeIndex()
    # of a row's notes only its inclusion terms are needed after the row is read
    inclusions: dict[int, list[str]] = {}
    for r in rows:
        if r.get("kind") in ("chapter", "block"):
            continue
        row = len(index.key)
        key = str(r["code"]).upper().replace(".", "")
        # the strings that repeat are shared (pickle keeps them shared)
        index.system.append(sys.intern(r["system"]))
        index.key.append(key)
        index.display.add(row, r.get("display") or key)
        index.official.append(r.get("official") or "")
        index.plain.append(r.get("plain") or "")
        index.billable.append(bool(r.get("billable")))
        index.status.append(sys.intern(r.get("status") or "valid"))
        index.change.append(sys.intern(r.get("change") or ""))
        index.release.append(sys.intern(r.get("release") or ""))
        index.parent.append(sys.intern((r.get("parent") or "").upper().replace(".", "")))
        index.replaced_by.append(tuple(r.get("replaced_by") or ()))
        if key in index.by_key:
            index.same_key[key] = (*index.same_key.get(key, (index.by_key[key],)), row)
        else:
            index.by_key[key] = row
        notes = _note_lists(r.get("notes") or {})
        _read_notes(index, row, notes)
        if notes.get("inclusion"):
            inclusions[row] = notes["inclusion"]
    for row in range(len(index.key)):
        parent = index.parent[row]
        if parent:
            prow = index.row(index.system[row], parent)
            if prow is not None:
                index.children.setdefault(prow, []).append(row)
    _build_families(index)
    _build_docs(index, inclusions)
    # the title words the matcher checks (sides, "unspecified ...") for any row;
    # a searched word has the same number as in `vocab`
    ids = dict(index.vocab)
    index.titles.words = list(ids)
    for title in index.official:
        index.titles.add(title_roles(title), ids)
    return index


def _note_lists(notes: dict[str, Any]) -> dict[str, list[str]]:
    """Normalise the loader's note keys to inclusion/excludes1/use_additional/code_first."""
    out: dict[str, list[str]] = {}
    for raw_key, value in notes.items():
        k = re.sub(r"[^a-z0-9]", "", str(raw_key).lower())
        if "inclusion" in k or k == "includes":
            name = "inclusion"
        elif "excludes1" in k or k == "excl1":
            name = "excludes1"
        elif "useadditional" in k:
            name = "use_additional"
        elif "codefirst" in k:
            name = "code_first"
        else:
            continue
        if isinstance(value, str):
            items = [value]
        elif isinstance(value, dict):
            items = [str(v) for v in value.values()]
        else:
            items = [str(v) for v in value or ()]
        out.setdefault(name, []).extend(items)
    return out


_CODE_RANGE = re.compile(r"\b([A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?)\.?-?\s*-\s*([A-Z]\d[0-9A-Z](?:\.[0-9A-Z]{1,4})?)")


def _code_refs(items: list[str]) -> tuple[str, ...]:
    """Code prefixes a note names; a range ("N18.1-N18.6", "E08-E13") names every code between."""
    refs = []
    for item in items:
        for m in _CODE_RANGE.finditer(item):
            refs.extend(_range_prefixes(m.group(1).replace(".", ""), m.group(2).replace(".", "")))
        for m in _CODE_REF.finditer(item):
            refs.append(m.group(1).replace(".", ""))
    return tuple(dict.fromkeys(refs))


def _range_prefixes(first: str, last: str) -> list[str]:
    prefix = os.path.commonprefix([first, last])
    if len(prefix) >= 3:
        return [prefix]
    if first[0] == last[0] and first[1:3].isdigit() and last[1:3].isdigit() and int(last[1:3]) - int(first[1:3]) < 30:
        return [f"{first[0]}{n:02d}" for n in range(int(first[1:3]), int(last[1:3]) + 1)]
    return []


def _read_notes(index: CodeIndex, row: int, lists: dict[str, list[str]]) -> None:
    if lists.get("excludes1"):
        index.excludes1[row] = _code_refs(lists["excludes1"])
    if lists.get("use_additional"):
        index.use_additional[row] = _code_refs(lists["use_additional"])
    if lists.get("code_first"):
        index.code_first[row] = _code_refs(lists["code_first"])


def _common_base(titles: list[str]) -> str:
    prefix = os.path.commonprefix(titles)
    cut = prefix.rfind(", ")
    return prefix[:cut] if cut > 0 else ""


def _build_families(index: CodeIndex) -> None:
    groups: dict[str, list[int]] = {}
    shared_ext: dict[frozenset[int], frozenset[int]] = {}  # a few dozen 7th-character phrases in all
    for row, key in enumerate(index.key):
        if index.system[row] == ICD and len(key) == 7 and index.billable[row] and index.status[row] == "valid":
            groups.setdefault(key[:6], []).append(row)
    for base_key, members in groups.items():
        if len(members) < 2:
            continue
        titles = [index.official[r] for r in members]
        base = _common_base(titles)
        if not base:
            continue
        fam = len(index.families)
        exts = [frozenset(_ids(index, tokenize(t[len(base) :]))) for t in titles]
        index.families.append(
            Family(base=_display_base(base_key), title=base, members=tuple(members),
                   ext_tokens=[shared_ext.setdefault(e, e) for e in exts])
        )
        for r in members:
            index.family_of[r] = fam


def _display_base(key: str) -> str:
    return f"{key[:3]}.{key[3:]}".rstrip("X").rstrip(".")


def _ids(index: CodeIndex, tokens: list[str]) -> list[int]:
    out = []
    for t in tokens:
        tid = index.vocab.get(t)
        if tid is None:
            tid = len(index.vocab)
            index.vocab[t] = tid
        out.append(tid)
    return out


# "unspecified X" where X is a side-bearing body part or a coding axis: the
# text need not name X for this code (it is the default when X is not given).
UNSPECIFIED_HEADS = frozenset(
    """ear eye eyelid orbit knee hip shoulder elbow wrist hand foot ankle leg arm thigh forearm lower upper limb lung
    kidney breast ovary testis side finger toe thumb great lesser fallopian ureter organism cause agent site part
    region trimester severity episode substance intent body quadrant""".split()
)
_TWO_WORD_SIDES = frozenset({"lower", "upper", "great", "lesser", "fallopian"})
_SIDE_WORDS = frozenset({"right", "left", "bilateral", "unspecified"})
MAX_PROPAGATED = 40
ANCESTOR_LEVELS = 2  # parent titles whose words a title inherits as optional words
# never inherited: a parent's "other" or side words say nothing about the child
SIDE_FREE_WORDS = frozenset({"right", "left", "bilateral", "other", "unspecified"})  # descendants (families count once) that share a header's inclusion terms

_SEGMENT_BREAK = {"with", "without", "and", "in", "due", "of"}


def title_roles(title: str) -> list[tuple[str, int]]:
    """Tokens of a title with their roles (see ROLE_COST)."""
    out: list[tuple[str, int]] = []
    mode = NORMAL
    depth_paren = depth_bracket = 0
    negate_next = False
    after_unspecified = 0  # words still inside "unspecified lower leg", "unspecified organism"
    # "Syncope and collapse", "Cramp and spasm": either word names the code
    pair = re.fullmatch(r"\s*([A-Za-z\-]+) and ([A-Za-z\-]+)\s*", title)
    second_of_pair = stem(pair.group(2).lower()) if pair else None
    # keep punctuation that changes roles as separate marks
    pieces = re.findall(r"\(|\)|\[|\]|,|[^\s(),\[\]]+", title)
    for p_index, piece in enumerate(pieces):
        if piece == "(":
            depth_paren += 1
            continue
        if piece == ")":
            depth_paren = max(0, depth_paren - 1)
            continue
        if piece == "[":
            depth_bracket += 1
            continue
        if piece == "]":
            depth_bracket = max(0, depth_bracket - 1)
            continue
        if piece == ",":
            if mode == WITHOUT:
                mode = NORMAL
            continue
        piece_words = words(piece)
        for k, w in enumerate(piece_words):
            if w == "without":
                mode = WITHOUT
                out.append((w, WITHOUT))
                continue
            if w == "non" and k + 1 < len(piece_words):
                negate_next = True  # "non-insulin", "non-pressure": the word is what the code is not
                continue
            if w == "with":
                mode = NORMAL
                continue
            if w in ("in", "due") and mode == WITHOUT:
                mode = NORMAL  # "without complications in remission": the remission is asked for
            if w == "of" and mode == WITHOUT and (
                _next_word(pieces, p_index, piece_words, k) in _SIDE_WORDS
                or [t for t, _ in out[-2:]] == ["foreign", "body"]
            ):
                # "without foreign body of left index finger", "... of other part of head",
                # "... of scalp": the site is asked for
                mode = NORMAL
            if w == "not" or (w == "as" and out and out[-1][0] == "unspecified"):
                # "not having achieved remission", "not specified as recurrent",
                # "unspecified as acute or chronic": the default, said as a negation
                mode = WITHOUT
                if w == "not":
                    out.append(("not", DEFAULT))
                continue
            if w in ("including", "nec"):
                mode = OPTIONAL if w == "including" else mode
                continue
            t = stem(w)
            if not t or t in STOPWORDS:
                continue
            unspecified_head = after_unspecified > 0 and t in UNSPECIFIED_HEADS
            after_unspecified = 2 if t == "unspecified" else (after_unspecified - 1 if t in _TWO_WORD_SIDES else 0)
            if negate_next:
                negate_next = False
                out.append((t, WITHOUT))
                continue
            if depth_paren or depth_bracket:
                role = OPTIONAL
            elif unspecified_head:
                role = DEFAULT  # "unspecified ear": a text that names no ear asks for this code
            elif t in DEFAULT_WORDS:
                role = DEFAULT
            elif t == "other":
                role = OTHER
            elif (t in WEAK_WORDS or t == second_of_pair) and mode == NORMAL:
                role = WEAK
            else:
                role = mode
            out.append((t, role))
    # "stage 2", "type 1", "third trimester": the number with its axis (text.compounds)
    for i, c in enumerate(compounds([t for t, _ in out])):
        if c not in dict(out):
            out.append((c, OPTIONAL))
    # one token per word: keep the cheapest role when a word repeats
    best: dict[str, int] = {}
    for t, role in out:
        if t not in best or ROLE_COST[role] > ROLE_COST[best[t]]:
            best[t] = role if t not in best else best[t]
    seen: dict[str, int] = {}
    for t, role in out:
        if t not in seen or ROLE_COST[role] < ROLE_COST[seen[t]]:
            seen[t] = role
    return list(seen.items())


def _with_ancestors(index: CodeIndex, row: int, roles: list[tuple[str, int]]) -> list[tuple[str, int]]:
    """A title and, as optional words, what its parents' titles add ("Swimmer's ear" is an
    otitis externa; "Nocturia" a symptom of the urinary system)."""
    if index.system[row] != ICD:
        return roles
    own = {t for t, _ in roles}
    out = list(roles)
    for anc in index.ancestors(row)[:ANCESTOR_LEVELS]:
        for t, role in title_roles(index.official[anc]):
            if t not in own and role in (NORMAL, WEAK) and t not in SIDE_FREE_WORDS:
                own.add(t)
                out.append((t, ANCESTOR))
    return out


def _next_word(pieces: list[str], p_index: int, piece_words: list[str], k: int) -> str:
    if k + 1 < len(piece_words):
        return piece_words[k + 1]
    following = words(pieces[p_index + 1]) if p_index + 1 < len(pieces) else []
    return following[0] if following else ""


_EPONYM = re.compile(r"\[([A-Z][a-z]+(?:[- ][A-Z][a-z]+)*)\](.*)$")


def _eponym_names(title: str) -> tuple[str, ...]:
    """ "Mucocutaneous lymph node syndrome [Kawasaki]" is what people call Kawasaki disease (or
    syndrome): the bracketed eponym names the code, with whatever the title says after it
    ("[Jaccoud], right knee")."""
    m = _EPONYM.search(title)
    if m is None:
        return ()
    name, rest = m.groups()
    return f"{name} disease{rest}", f"{name} syndrome{rest}"


def _build_docs(index: CodeIndex, inclusions: dict[int, list[str]]) -> None:
    # Every document is held until the words' frequencies are known: kept as one shared
    # string per word and the roles as bytes, not a tuple per word (160 -> 50 MB at the peak).
    raw_docs: list[tuple[int, tuple[str, ...], bytes, bool]] = []

    def add(target: int, toks: list[tuple[str, int]], alias: bool) -> None:
        raw_docs.append((target, tuple(sys.intern(t) for t, _ in toks), bytes(r for _, r in toks), alias))

    for row in range(len(index.key)):
        if not index.billable[row] or index.status[row] != "valid" or row in index.family_of:
            continue
        if index.system[row] not in SEARCHED_SYSTEMS:
            continue
        add(row, _with_ancestors(index, row, title_roles(index.official[row])), False)
        for term in (*inclusions.get(row, ()), *_eponym_names(index.official[row])):
            add(row, title_roles(term), True)
    for row in range(len(index.key)):
        # "Hypo-osmolality and hyponatremia": either word names the code, so the
        # pair is also indexed the other way round
        title = index.official[row]
        pair = re.fullmatch(r"\s*([A-Za-z\-]+) and ([A-Za-z\-]+)\s*", title)
        if pair and index.billable[row] and index.status[row] == "valid" and row not in index.family_of:
            add(row, title_roles(f"{pair.group(2)} and {pair.group(1)}"), True)
    for fam, family in enumerate(index.families):
        add(-(fam + 1), _with_ancestors(index, family.members[0], title_roles(family.title)), False)
    # A header's inclusion terms are synonyms of its title: each billable
    # descendant gets the term plus the words its own title adds (right,
    # left, unspecified, "with ..."), so "Fracture of wrist NOS" under S62.10
    # reaches "right wrist" (S62.101-) as well as the unspecified wrist.
    # Headers with very many descendants give the term to the default child.
    for row in range(len(index.key)):
        if index.billable[row] or index.system[row] != ICD or index.status[row] != "valid":
            continue
        terms = inclusions.get(row, ())
        if not terms:
            continue
        targets: dict[int, str] = {}
        for leaf in index.billable_descendants(row):
            fam = index.family_of.get(leaf)
            if fam is not None:
                targets.setdefault(-(fam + 1), index.families[fam].title)
            else:
                targets.setdefault(leaf, index.official[leaf])
        if len(targets) > MAX_PROPAGATED:
            child = default_child(index, row)
            if child is None:
                continue
            fam = index.family_of.get(child)
            targets = {-(fam + 1): index.families[fam].title} if fam is not None else {child: index.official[child]}
        header = {t for t, _ in title_roles(index.official[row])}
        for term in terms:
            term_roles = title_roles(term)
            own = {t for t, _ in term_roles}
            for target, title in targets.items():
                extra = [(t, r) for t, r in title_roles(title) if t not in header and t not in own]
                add(target, term_roles + extra, True)

    df: dict[str, dict[str, int]] = {DX: {}, PX: {}}
    for target, tokens, _, _ in raw_docs:
        counts = df[_group(index, target)]
        for t in tokens:
            counts[t] = counts.get(t, 0) + 1
    for counts in df.values():
        _ids(index, list(counts))
    for group, counts in df.items():
        n = max(1, sum(1 for target, _, _, _ in raw_docs if _group(index, target) == group))
        index.idf[group] = [math.log(1 + n / (1 + counts.get(t, 0))) for t in index.vocab]
        index.postings[group] = [array("i") for _ in index.vocab]
    absent: dict[int, set[str]] = {}
    for target, tokens, packed_roles, alias in raw_docs:
        if not tokens:
            continue
        group = _group(index, target)
        idf = index.idf[group]
        ids = [index.vocab[t] for t in tokens]
        roles = list(packed_roles)
        cost = sum(idf[i] * ROLE_COST[r] for i, r in zip(ids, roles))
        doc_id = index.docs.add(target, ids, roles, cost, alias)
        for i in ids:
            index.postings[group][i].append(doc_id)
        if alias:
            without = {t for t, role in zip(tokens, roles) if role == WITHOUT}
            if without:
                absent.setdefault(target, set()).update(without)
    index.said_absent = {target: frozenset(ts) for target, ts in absent.items()}


def _group(index: CodeIndex, target: int) -> str:
    return DX if target < 0 or index.system[target] == ICD else PX


def default_child(index: CodeIndex, row: int) -> int | None:
    """The billable code a header defaults to: its unspecified child, else the first."""
    leaves = index.billable_descendants(row)
    if not leaves:
        return None
    for r in leaves:
        title = index.official[r].lower()
        if "unspecified" in title and "other" not in title.split(",")[0]:
            return r
    for r in leaves:
        if index.key[r].endswith("9") and len(index.key[r]) == len(index.key[row]) + 1:
            return r
    return leaves[0]
