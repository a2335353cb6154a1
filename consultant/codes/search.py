"""Full-text search over code descriptions, the same answers on SQLite and PostgreSQL.

    search_codes(engine, "broken wrist", limit=10, system=None) -> [SearchHit, ...]
    rebuild_index(engine)                                       -> rows indexed

What is indexed, per code: the official text, the plain-language text and
the inclusion terms (own and inherited from its category), reduced by
`terms()` to lower-case ASCII words, light plural stemming, no stop words.
Because that reduction happens in Python, the backend only has to match
whole words:

* SQLite:     FTS5 table `code_fts(terms)`, rowid = code.id, unicode61 tokenizer;
* PostgreSQL: table `code_search(code_id, terms, tsv)`, tsv generated with
              the 'simple' configuration (no stemming, no stop words), GIN index.

Both are made by the loader (not by migrations) and kept in step with the
`code` table by `rebuild_index`. A query matches codes containing all its
words (the last one as a prefix); when none do, any of them. The candidates
come back in one portable order (valid first, shorter official text first,
code in byte order), and the final ranking is computed here, so both
backends give identical results.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

STOP = frozenset("a an the of and or in on at to for by as from with is are be".split())
CANDIDATES = 300
_WORD = re.compile(r"[a-z0-9]+")


@dataclass(frozen=True)
class SearchHit:
    system: str
    code: str
    display: str
    official: str
    plain: str
    billable: bool
    status: str
    release: str
    score: float
    matched: str  # where every word was found: "official", "plain" or "terms"


@functools.lru_cache(maxsize=200_000)
def stem(word: str) -> str:
    """A deliberately small plural stemmer (the same on both backends)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "xes", "ches", "shes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def terms(text_: str) -> list[str]:
    """Index/query words: ASCII, lower case, stop words dropped, plurals stemmed."""
    text_ = (text_ or "").lower()
    if not text_.isascii():
        text_ = unicodedata.normalize("NFKD", text_).encode("ascii", "ignore").decode("ascii")
    return [stem(w) for w in _WORD.findall(text_) if w not in STOP]


def index_text(official: str, plain: str, notes: dict | None) -> str:
    """The words indexed for one code."""
    parts = [official, plain]
    notes = notes or {}
    parts += notes.get("inclusionTerm", [])
    for inh in notes.get("inherited", []):
        parts += inh.get("inclusionTerm", [])
    seen: dict[str, None] = {}
    for part in parts:
        for w in terms(part):
            seen.setdefault(w, None)
    return " ".join(seen)


# ---------------------------------------------------------------- index


def _is_sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"


def ensure_index(conn: Connection) -> None:
    """Create the backend's index objects if they do not exist yet."""
    if _is_sqlite(conn):
        conn.exec_driver_sql("CREATE VIRTUAL TABLE IF NOT EXISTS code_fts USING fts5(terms, tokenize='unicode61')")
    else:
        conn.exec_driver_sql(
            "CREATE TABLE IF NOT EXISTS code_search ("
            " code_id integer PRIMARY KEY REFERENCES code(id) ON DELETE CASCADE,"
            " terms text NOT NULL,"
            " tsv tsvector GENERATED ALWAYS AS (to_tsvector('simple', terms)) STORED)"
        )
        conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_code_search_tsv ON code_search USING gin (tsv)")


def rebuild_index(engine: Engine, *, full: bool = False) -> int:
    """Bring the search index in step with `code`; returns the number of rows (re)indexed.

    Rows of deleted codes are dropped and codes not yet indexed are added;
    full=True re-indexes everything.
    """
    with engine.begin() as conn:
        ensure_index(conn)
        table, key = ("code_fts", "rowid") if _is_sqlite(conn) else ("code_search", "code_id")
        # NOT EXISTS, not NOT IN: PostgreSQL turns a large NOT IN into a quadratic scan.
        if full:
            conn.exec_driver_sql(f"DELETE FROM {table}")
        else:
            conn.exec_driver_sql(
                f"DELETE FROM {table} WHERE NOT EXISTS (SELECT 1 FROM code c WHERE c.id = {table}.{key})"
            )
        rows = conn.execute(
            text(
                "SELECT c.id, c.official, c.plain, c.notes FROM code c "
                f"WHERE NOT EXISTS (SELECT 1 FROM {table} x WHERE x.{key} = c.id)"
            )
        ).all()
        json_type = _json_loader(conn)
        pairs = [(r[0], index_text(r[1], r[2], json_type(r[3]))) for r in rows]
        index_rows(conn, pairs)
    return len(pairs)


def forget_rows(conn: Connection, where_sql: str, params: dict) -> None:
    """Drop index rows of codes about to be deleted (`where_sql` filters table code)."""
    ensure_index(conn)
    if _is_sqlite(conn):
        conn.execute(text(f"DELETE FROM code_fts WHERE rowid IN (SELECT id FROM code WHERE {where_sql})"), params)
    # PostgreSQL: ON DELETE CASCADE removes them with the code rows.


def forget_ids(conn: Connection, ids: list[int]) -> None:
    """Drop index rows of these code ids (before the codes themselves are deleted)."""
    ensure_index(conn)
    table, key = ("code_fts", "rowid") if _is_sqlite(conn) else ("code_search", "code_id")
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        marks = ", ".join(str(int(i)) for i in part)
        conn.exec_driver_sql(f"DELETE FROM {table} WHERE {key} IN ({marks})")


def index_rows(conn: Connection, pairs: list[tuple[int, str]]) -> None:
    """Add (code id, index text) pairs to the index."""
    ensure_index(conn)
    insert = (
        "INSERT INTO code_fts(rowid, terms) VALUES (:id, :terms)"
        if _is_sqlite(conn)
        else "INSERT INTO code_search(code_id, terms) VALUES (:id, :terms)"
    )
    batch = [{"id": i, "terms": t} for i, t in pairs]
    for start in range(0, len(batch), 5000):
        conn.execute(text(insert), batch[start : start + 5000])


def _json_loader(conn: Connection):
    import json

    def load(value):
        if value is None or isinstance(value, dict):
            return value or {}
        return json.loads(value)

    return load


# ---------------------------------------------------------------- query


def _match_sqlite(words: list[str], any_word: bool) -> str:
    quoted = [f'"{w}"' for w in words]
    if not any_word:
        quoted[-1] += "*"
    return (" OR " if any_word else " AND ").join(quoted)


def _match_pg(words: list[str], any_word: bool) -> str:
    parts = list(words)
    if not any_word:
        parts[-1] += ":*"
    return (" | " if any_word else " & ").join(parts)


def _candidates(conn: Connection, words: list[str], system: str | None, any_word: bool) -> list:
    cols = "c.system, c.code, c.display, c.official, c.plain, c.billable, c.status, c.release, c.notes"
    params: dict = {"n": CANDIDATES}
    where_system = ""
    if system:
        where_system = " AND c.system = :system"
        params["system"] = system
    if _is_sqlite(conn):
        params["q"] = _match_sqlite(words, any_word)
        sql = (
            f"SELECT {cols} FROM code_fts f JOIN code c ON c.id = f.rowid WHERE code_fts MATCH :q{where_system} "
            "ORDER BY CASE WHEN c.status = 'valid' THEN 0 ELSE 1 END, length(c.official), c.system, c.code LIMIT :n"
        )
    else:
        params["q"] = _match_pg(words, any_word)
        sql = (
            f"SELECT {cols} FROM code_search s JOIN code c ON c.id = s.code_id "
            f"WHERE s.tsv @@ to_tsquery('simple', :q){where_system} "
            "ORDER BY CASE WHEN c.status = 'valid' THEN 0 ELSE 1 END, length(c.official), "
            'c.system COLLATE "C", c.code COLLATE "C" LIMIT :n'
        )
    return conn.execute(text(sql), params).all()


_SYSTEM_ORDER = {"ICD-10-CM": 0, "ICD-10-PCS": 1, "CPT": 2, "HCPCS": 3, "MOD": 4}


def _has_all(words: list[str], have: set[str]) -> bool:
    *full, last = words
    return all(w in have for w in full) and any(h.startswith(last) for h in have)


@functools.cache
def _common() -> frozenset[tuple[str, str]]:
    """The most asked codes: those with a hand-written plain description."""
    from consultant.codes.plain import overrides

    return frozenset(overrides())


def _notes(value) -> dict:
    if isinstance(value, dict):
        return value
    import json

    return json.loads(value) if value else {}


def _rank(words: list[str], row) -> tuple[tuple, str, float]:
    official_terms = terms(row.official)
    plain_terms = terms(row.plain)
    official_words, plain_words = set(official_terms), set(plain_terms)
    query_phrase = " ".join(words)
    official_text, plain_text = " ".join(official_terms), " ".join(plain_terms)
    phrase = query_phrase in official_text or query_phrase in plain_text
    starts = official_text.startswith(query_phrase) or plain_text.startswith(query_phrase)
    in_official = _has_all(words, official_words)
    in_plain = _has_all(words, plain_words)
    hits = sum(1 for w in words if w in official_words or w in plain_words)
    matched = "official" if in_official else "plain" if in_plain else "terms"
    valid = row.status == "valid"
    common = (row.system, row.code) in _common()
    base_len = len(row.official)
    seventh = _notes(row.notes).get("seventh") or {}
    if seventh.get("meaning"):
        # S51.821A and S51.821S tie on their shared text; the code order decides.
        base_len -= len(seventh["meaning"].split(" (includes:")[0])
    key = (not phrase, not starts, not (in_official or in_plain), not common, -hits, not valid, not row.billable, base_len)
    score = round(
        hits / len(words) + (1.0 if phrase else 0) + (0.5 if starts else 0) + (0.25 if valid else 0), 4
    )
    return key, matched, score


def search_codes(engine: Engine, text_: str, *, limit: int = 10, system: str | None = None) -> list[SearchHit]:
    """The codes whose descriptions best match `text_`, best first."""
    from consultant.codes.lookup import system_name

    words = terms(text_)
    if not words:
        return []
    sysname = system_name(system) if system else None
    with engine.connect() as conn:
        rows = _candidates(conn, words, sysname, any_word=False)
        if not rows and len(words) > 1:
            rows = _candidates(conn, words, sysname, any_word=True)
    ranked = []
    for row in rows:
        key, matched, score = _rank(words, row)
        ranked.append((key, _SYSTEM_ORDER.get(row.system, 9), row.code, row, matched, score))
    ranked.sort(key=lambda t: t[:3])
    return [
        SearchHit(r.system, r.code, r.display, r.official, r.plain, bool(r.billable), r.status, r.release, score, matched)
        for _, _, _, r, matched, score in ranked[:limit]
    ]
