"""Ranked text search over code descriptors and ICD-10-CM inclusion terms.

SQLite: an FTS5 table (porter stemmer) keyed by ``codes_search.id``.  PostgreSQL: the stored
``codes_search.tsv`` column (``to_tsvector('english', body)``) under a GIN index (declared in
models).  Both backends only *find* candidates; the final order comes from one Python ranking
(query words covered, then shorter text first), so the two backends and the two databases (main
and built-in ICD-10-CM) rank alike and merge cleanly.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from sqlalchemy import text
from sqlalchemy.orm import Session

FTS_TABLE = "codes_search_fts"
CANDIDATES = 200
# Words so common in code text that requiring them only hides matches.
STOPWORDS = frozenset(
    "a an and are as at by for from in into is of on or other per than the to with without"
    " unspecified nos".split()
)
_WORD = re.compile(r"[a-z0-9]+")


def ensure(session: Session) -> None:
    """Create the SQLite FTS5 table if missing (idempotent; Alembic cannot see virtual tables)."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(text(
            f"CREATE VIRTUAL TABLE IF NOT EXISTS {FTS_TABLE} USING fts5("
            "body, tokenize='porter unicode61 remove_diacritics 2')"
        ))


def index_release(session: Session, release_id: int) -> None:
    """Index a release's ``codes_search`` rows: FTS5 on SQLite, the ``tsv`` column on PostgreSQL."""
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            text(f"INSERT INTO {FTS_TABLE}(rowid, body) SELECT id, body FROM codes_search "
                 "WHERE release_id = :r"),
            {"r": release_id},
        )
    else:
        session.execute(
            text("UPDATE codes_search SET tsv = to_tsvector('english', body) WHERE release_id = :r"),
            {"r": release_id},
        )
        # A bulk write leaves the new entries in the GIN index's unsorted "pending list", which
        # every query then scans linearly until a vacuum merges it (4 ms per query instead of
        # 0.1 ms); merge it now, inside the import's transaction.
        session.execute(text("SELECT gin_clean_pending_list('ix_codes_search_tsv'::regclass)"))


def unindex_release(session: Session, release_id: int) -> None:
    if session.get_bind().dialect.name == "sqlite":
        session.execute(
            text(f"DELETE FROM {FTS_TABLE} WHERE rowid IN "
                 "(SELECT id FROM codes_search WHERE release_id = :r)"),
            {"r": release_id},
        )


# Dropped when *finding* candidates (too common), but they still tell matches apart when ranking:
# "Traumatic subdural hemorrhage NOS" is an inclusion term of S06.5XA, not of header S06.5.
RANK_KEEP = frozenset({"nos", "unspecified", "without", "other"})


def words(value: str, keep: frozenset[str] = frozenset()) -> list[str]:
    """Lower-case words of ``value`` without stopwords (duplicates removed, order kept)."""
    seen: dict[str, None] = {}
    for w in _WORD.findall(value.lower()):
        if w not in STOPWORDS or w in keep:
            seen.setdefault(w, None)
    return list(seen)


@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """A light suffix stripper, enough to match 'injections' to 'injection' when ranking."""
    for suffix in ("ations", "ation", "ings", "ing", "ies", "es", "ed", "s", "al", "ic"):
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


@lru_cache(maxsize=32768)
def _stems(value: str) -> frozenset[str]:
    """Stemmed ranking words of a text.  Cached: the same descriptors come back query after
    query, and stemming them each time was most of a search's CPU (~3 ms of 4 on SQLite)."""
    return frozenset(_stem(w) for w in words(value, RANK_KEEP))


@dataclass
class Hit:
    system: str
    code: str
    field: str
    body: str
    order: int  # position in the backend's own ranking (tie-breaker)


def _fts_query(tokens: list[str], dialect: str, mode: str) -> str:
    if dialect == "sqlite":
        quoted = [f'"{t}"' + ("*" if mode == "or" and len(t) >= 4 else "") for t in tokens]
        return (" OR " if mode == "or" else " ").join(quoted)
    return (" | " if mode == "or" else " & ").join(
        t + (":*" if mode == "or" and len(t) >= 4 else "") for t in tokens
    )


def candidates(
    session: Session, query: str, release_ids: Iterable[int], system: str | None = None
) -> list[Hit]:
    """Rows whose text matches every query word, or (if too few) any of them."""
    tokens = words(query)
    ids = list(release_ids)
    if not tokens or not ids:
        return []
    dialect = session.get_bind().dialect.name
    placeholders = ", ".join(f":r{i}" for i in range(len(ids)))
    params: dict[str, object] = {f"r{i}": rid for i, rid in enumerate(ids)}
    params["n"] = CANDIDATES
    sys_filter = ""
    if system:
        sys_filter = " AND s.system = :system"
        params["system"] = system
    if dialect == "sqlite":
        sql = (
            f"SELECT s.system, s.code, s.field, s.body FROM {FTS_TABLE} f "
            f"JOIN codes_search s ON s.id = f.rowid WHERE {FTS_TABLE} MATCH :q "
            f"AND s.release_id IN ({placeholders}){sys_filter} ORDER BY bm25({FTS_TABLE}) LIMIT :n"
        )
    else:
        sql = (
            "SELECT s.system, s.code, s.field, s.body FROM codes_search s, "
            "to_tsquery('english', :q) q WHERE s.tsv @@ q "
            f"AND s.release_id IN ({placeholders}){sys_filter} "
            "ORDER BY ts_rank_cd(s.tsv, q, 1) DESC LIMIT :n"
        )
    hits: list[Hit] = []
    seen: set[tuple[str, str, str]] = set()
    # Tiers, cheapest and most precise first: every word; every word but one (a stray word in
    # the question must not hide the answer); any word (slow on common words: last resort).
    tiers: list[tuple[list[str], str]] = [(tokens, "and")]
    if 2 < len(tokens) <= 8:
        tiers += [([t for t in tokens if t != drop], "and") for drop in tokens]
    tiers.append((tokens, "or"))
    for subset, mode in tiers:
        # The any-word tier ranks every row holding any query word ("disease" alone matches
        # tens of thousands): ~40 ms on PostgreSQL.  With three or more words the drop-one
        # tiers have already relaxed the query, so it runs only if they found nothing.
        if mode == "or" and (len(hits) >= 5 or (hits and len(tokens) > 2)):
            break
        params["q"] = _fts_query(subset, dialect, mode)
        for row in session.execute(text(sql), params):
            key = (row.system, row.code, row.body)
            if key not in seen:
                seen.add(key)
                hits.append(Hit(row.system, row.code, row.field, row.body, len(hits)))
        if len(hits) >= 20 or len(tokens) == 1:
            break
    return hits


def rank(query: str, hits: Iterable[Hit], limit: int) -> list[dict[str, object]]:
    """Order hits by query words covered, then by text length; one entry per code."""
    wanted = _stems(query)
    scored = []
    for hit in hits:
        body_words = _stems(hit.body)
        covered = len(wanted & body_words)
        prefix = sum(1 for t in wanted - body_words if any(b.startswith(t) for b in body_words))
        extra = len(body_words - wanted)
        score = covered + 0.5 * prefix - 0.03 * extra - (0.05 if hit.field != "descriptor" else 0)
        scored.append((-score, hit.order, hit))
    scored.sort(key=lambda item: (item[0], item[1]))
    out: list[dict[str, object]] = []
    seen: set[tuple[str, str]] = set()
    for neg, _, hit in scored:
        if (hit.system, hit.code) in seen:
            continue
        seen.add((hit.system, hit.code))
        out.append({
            "system": hit.system, "code": hit.code, "matched": hit.body, "field": hit.field,
            "score": round(-neg, 3),
        })
        if len(out) >= limit:
            break
    return out
