"""The keyword half of hybrid search, in the SQL database: every node sees one index, none holds it in RAM.

SQLite: an FTS5 table ranked with its bm25() (k1 = 1.2, b = 0.75; document frequencies over all stores of the
database). PostgreSQL: a tsvector per chunk with a GIN index; the score of a chunk is a BM25-like sum over
the query's terms of idf(term) * ts_rank(chunk, term) (ts_rank saturates with repetitions and is normalised
by the chunk's length), idf from the term's document frequency in the stores searched. A term that ANALYZE's
statistics list among the table's most common elements takes its frequency from its share of the table;
the others are counted, up to PG_COMMON_TERM_ROWS. Terms in more chunks than that ("common") still score but
do not select candidates when the query has rarer ones, and at most CANDIDATE_ROWS chunks are ranked: the
query's cost stays bounded on big stores whatever words it holds. SQLite counts up to COMMON_TERM_ROWS (FTS5
reads a doclist fast) and scores only the rarer terms when there are some.

Query words are split and filtered like bm25.terms (stop words dropped); 'simple' text search configuration
on PostgreSQL (no stemming), unicode61 without diacritics on SQLite.

Stores indexed before these tables existed are listed in `keyword_backfill`; `ensure_backfilled` copies
their chunks (from Chroma) once, whichever node searches them first.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import bindparam, text
from sqlalchemy.orm import Session

from assistd.storage.db import Database
from assistd.storage.retry import retrying
from assistd.tools.file_search.bm25 import STOPWORDS, terms

COMMON_TERM_ROWS = 5_000
PG_COMMON_TERM_ROWS = 1_000  # counting reads table rows (the store filter): a lower cap
CANDIDATE_ROWS = 20_000
KNOWN_INDEXED_STORES = 4096
INSERT_BATCH = 500


@dataclass(frozen=True)
class KeywordHit:
    store_id: str
    chunk_id: str
    file_id: str
    score: float  # > 0, higher is better; comparable within one search only


def clean(value: str) -> str:
    """Text as the database may store it: no NUL (PostgreSQL refuses it in text)."""
    return value.replace("\x00", " ")


class KeywordIndex:
    def __init__(self, db: Database) -> None:
        self.db = db
        self.postgres = db.is_postgres
        # Stores seen indexed (absent from keyword_backfill, which only migration 0004 fills): they never
        # need a backfill again, so their searches skip the check. Bounded: memory does not grow with stores.
        self._indexed: OrderedDict[str, None] = OrderedDict()
        self._lock = threading.Lock()

    # ------------------------------------------------------------------------------------------ writes
    def add(self, store_id: str, file_id: str, chunks: Sequence[tuple[str, str]]) -> None:
        """Indexes (chunk_id, text) pairs of one file; a chunk id indexed before is replaced."""
        self._insert(store_id, file_id, chunks, replace=True)

    def _insert(
        self, store_id: str, file_id: str | None, chunks: Sequence[tuple[str, str]], replace: bool, s=None
    ) -> None:
        rows = [
            {"s": store_id, "c": cid, "f": file_id if file_id is not None else file_of(cid), "t": clean(body)}
            for cid, body in chunks
        ]
        if not rows:
            return
        if self.postgres:
            conflict = (
                "DO UPDATE SET file_id = excluded.file_id, tsv = excluded.tsv" if replace else "DO NOTHING"
            )
            sql = text(
                "INSERT INTO keyword_chunks (store_id, chunk_id, file_id, tsv) "
                f"VALUES (:s, :c, :f, to_tsvector('simple', :t)) ON CONFLICT (store_id, chunk_id) {conflict}"
            )
        else:
            conflict = (
                "DO UPDATE SET file_id = excluded.file_id, body = excluded.body" if replace else "DO NOTHING"
            )
            sql = text(
                "INSERT INTO keyword_chunks (store_id, chunk_id, file_id, body) "
                f"VALUES (:s, :c, :f, :t) ON CONFLICT (store_id, chunk_id) {conflict}"
            )
        if s is not None:
            for start in range(0, len(rows), INSERT_BATCH):
                s.execute(sql, rows[start : start + INSERT_BATCH])
            return
        with self.db.session() as session:
            for start in range(0, len(rows), INSERT_BATCH):
                session.execute(sql, rows[start : start + INSERT_BATCH])

    def delete_file(self, store_id: str, file_id: str) -> None:
        with self.db.session() as s:
            delete_file_in(s, store_id, file_id)

    def drop(self, store_id: str) -> None:
        with self.db.session() as s:
            drop_in(s, store_id)

    # ---------------------------------------------------------------------------------------- backfill
    def needs_backfill(self, store_id: str) -> bool:
        with self._lock:
            if store_id in self._indexed:
                self._indexed.move_to_end(store_id)
                return False
        with self.db.session() as s:
            found = s.execute(text("SELECT 1 FROM keyword_backfill WHERE store_id = :s"), {"s": store_id})
            needed = found.first() is not None
        if not needed:
            with self._lock:
                self._indexed[store_id] = None
                while len(self._indexed) > KNOWN_INDEXED_STORES:
                    self._indexed.popitem(last=False)
        return needed

    def ensure_backfilled(self, store_id: str, load: Callable[[], Sequence[tuple[str, str, str]]]) -> bool:
        """Copies a store's chunks ((chunk_id, file_id, text) from `load`) into the index if the store is
        still listed in keyword_backfill; True when this call did it. Chunks already indexed (files added
        since) are kept as they are. Two nodes may both load; the database lets one of them write."""
        if not self.needs_backfill(store_id):
            return False
        chunks = load()
        with self.db.session() as s:
            claim = "DELETE FROM keyword_backfill WHERE store_id = :s"
            if self.postgres:  # a node copying it now holds the row: do not wait for it (lock_timeout)
                claim += " AND store_id IN (SELECT store_id FROM keyword_backfill WHERE store_id = :s "
                claim += "FOR UPDATE SKIP LOCKED)"
            claimed = s.execute(text(claim), {"s": store_id})
            if claimed.rowcount == 0:
                return False  # another node did it, or is doing it (its words are found once it commits)
            by_file: dict[str, list[tuple[str, str]]] = {}
            for cid, fid, body in chunks:
                by_file.setdefault(fid, []).append((cid, body))
            for fid, part in by_file.items():
                self._insert(store_id, fid, part, replace=False, s=s)
        return True

    # ------------------------------------------------------------------------------------------ search
    def search(
        self,
        store_ids: Sequence[str],
        query: str,
        k: int,
        file_ids: Sequence[str] | None = None,
        total: int | None = None,
    ) -> list[KeywordHit]:
        """The `k` best chunks of `store_ids` (restricted to `file_ids` unless None) for the query's words.
        `total`: the number of chunks in the stores when the caller knows it (PostgreSQL's idf; else
        counted)."""
        if not store_ids or k <= 0 or (file_ids is not None and not file_ids):
            return []
        if self.postgres:
            run = lambda: self._search_postgres(list(store_ids), query, k, file_ids, total)  # noqa: E731
        else:
            run = lambda: self._search_sqlite(list(store_ids), query, k, file_ids)  # noqa: E731
        return retrying(run, what="keyword search", attempts=4)

    def _search_sqlite(
        self, store_ids: list[str], query: str, k: int, file_ids: Sequence[str] | None
    ) -> list[KeywordHit]:
        words = list(dict.fromkeys(terms(query)))
        if not words:
            return []
        phrases = ['"' + w.replace('"', '""') + '"' for w in words]
        where = "c.store_id IN :stores" + (" AND c.file_id IN :files" if file_ids is not None else "")
        sql = text(
            "SELECT c.store_id, c.chunk_id, c.file_id, bm25(keyword_fts) AS rank "
            "FROM keyword_fts JOIN keyword_chunks c ON c.rowid = keyword_fts.rowid "
            f"WHERE keyword_fts MATCH :match AND {where} ORDER BY rank, c.chunk_id LIMIT :k"
        ).bindparams(bindparam("stores", expanding=True))
        params: dict = {"stores": store_ids, "k": k}
        if file_ids is not None:
            sql = sql.bindparams(bindparam("files", expanding=True))
            params["files"] = list(file_ids)
        with self.db.session() as s:
            # Document frequencies (over the whole table, as bm25() counts them), each counted up to the cap.
            counts = s.execute(
                text(
                    "SELECT "
                    + ", ".join(
                        f"(SELECT count(*) FROM (SELECT rowid FROM keyword_fts WHERE keyword_fts MATCH :p{i} "
                        "LIMIT :cap))"
                        for i in range(len(phrases))
                    )
                ),
                {"cap": COMMON_TERM_ROWS, **{f"p{i}": p for i, p in enumerate(phrases)}},
            ).one()
            rare = [p for p, n in zip(phrases, counts, strict=True) if 0 < n < COMMON_TERM_ROWS]
            if not any(counts):
                return []
            if rare:  # common words only score with others: they would make every chunk a candidate
                rows = s.execute(sql, {**params, "match": " OR ".join(rare)}).all()
            else:  # only common words: the chunks with all of them, else any of them
                used = [p for p, n in zip(phrases, counts, strict=True) if n]
                rows = s.execute(sql, {**params, "match": " AND ".join(used)}).all()
                if len(rows) < k and len(used) > 1:
                    rows = s.execute(sql, {**params, "match": " OR ".join(used)}).all()
        # bm25() is negative, lower is better; a chunk can score ~0 when a word is in over half the chunks.
        return [KeywordHit(r[0], r[1], r[2], max(-float(r[3]), 1e-6)) for r in rows]

    def _search_postgres(
        self,
        store_ids: list[str],
        query: str,
        k: int,
        file_ids: Sequence[str] | None,
        total: int | None,
    ) -> list[KeywordHit]:
        with self.db.session() as s:
            if not total:
                total = int(
                    s.execute(
                        text("SELECT count(*) FROM keyword_chunks WHERE store_id = ANY(:stores)"),
                        {"stores": store_ids},
                    ).scalar_one()
                )
            # The query's words, each with its share of all chunks when ANALYZE's statistics list it among
            # the table's most common elements (no count needed for those).
            found = s.execute(
                text(
                    "WITH q AS (SELECT unnest(tsvector_to_array(to_tsvector('simple', :q))) AS lex), "
                    "e AS (SELECT u.elem, u.freq FROM pg_stats p, "
                    "unnest(p.most_common_elems::text::text[], p.most_common_elem_freqs) AS u(elem, freq) "
                    "WHERE p.tablename = 'keyword_chunks' AND p.attname = 'tsv') "
                    "SELECT q.lex, e.freq FROM q LEFT JOIN e ON e.elem = q.lex"
                ),
                {"q": clean(query)},
            ).all()
            share = {lex: float(freq or 0.0) for lex, freq in found if lex not in STOPWORDS}
            if not share:
                return []
            df = {lex: int(f * total) for lex, f in share.items() if f * total >= PG_COMMON_TERM_ROWS}
            lexemes = [lex for lex in share if lex not in df]
            scope = "store_id = ANY(:stores)" + (" AND file_id = ANY(:files)" if file_ids is not None else "")
            # Limits are written into the SQL (our integers): psycopg prepares a statement run five times on a
            # connection, and PostgreSQL's generic plan for `LIMIT $n` is a sequential scan (35 ms at 10k
            # chunks instead of 2).
            params: dict = {"stores": store_ids, "files": list(file_ids or [])}
            if lexemes:  # one capped count per word, its word a constant: the GIN index finds the rows
                counts = s.execute(
                    text(
                        "SELECT "
                        + ", ".join(
                            f"(SELECT count(*) FROM (SELECT 1 FROM keyword_chunks WHERE {scope} "
                            f"AND tsv @@ to_tsquery('simple', quote_literal(:c{i})) "
                            f"LIMIT {int(PG_COMMON_TERM_ROWS)}) x{i})"
                            for i in range(len(lexemes))
                        )
                    ),
                    {**params, **{f"c{i}": lex for i, lex in enumerate(lexemes)}},
                ).one()
                df.update({lex: int(n) for lex, n in zip(lexemes, counts, strict=True) if n})
            if not df:
                return []
            total = max(total, max(df.values()))
            used = sorted(df)
            weights = [math.log(1 + (total - df[lex] + 0.5) / (df[lex] + 0.5)) for lex in used]
            score = " + ".join(
                f"{w!r} * ts_rank(tsv, to_tsquery('simple', quote_literal(:l{i})), 1)"
                for i, w in enumerate(weights)
            )
            for i, lex in enumerate(used):
                params[f"l{i}"] = lex

            def ranked(lexes: list[str], op: str) -> list:
                select = f" {op} ".join(
                    f"to_tsquery('simple', quote_literal(:r{i}))" for i in range(len(lexes))
                )
                sql = text(
                    f"SELECT store_id, chunk_id, file_id, {score} AS score FROM ("
                    f"SELECT store_id, chunk_id, file_id, tsv FROM keyword_chunks WHERE {scope} "
                    f"AND tsv @@ ({select}) LIMIT {int(CANDIDATE_ROWS)}) c "
                    f"ORDER BY score DESC, chunk_id LIMIT {int(k)}"
                )
                chosen = {f"r{i}": lex for i, lex in enumerate(lexes)}
                return s.execute(sql, {**params, **chosen}).all()

            rare = [lex for lex in used if df[lex] < PG_COMMON_TERM_ROWS]
            if rare:  # common words score on the chunks the rarer ones find (else every chunk is a candidate)
                rows = ranked(rare, "||")
            else:  # only common words: the chunks with all of them, else any of them (at most CANDIDATE_ROWS)
                rows = ranked(used, "&&")
                if len(rows) < k and len(used) > 1:
                    rows = ranked(used, "||")
        return [KeywordHit(r[0], r[1], r[2], float(r[3])) for r in rows if r[3] > 0]


def delete_file_in(s: Session, store_id: str, file_id: str) -> None:
    """Removes a file's chunks in the caller's transaction (with the vector_store_files row that goes)."""
    s.execute(
        text("DELETE FROM keyword_chunks WHERE store_id = :s AND file_id = :f"), {"s": store_id, "f": file_id}
    )


def drop_in(s: Session, store_id: str) -> None:
    """Removes a store's chunks in the caller's transaction (with the vector_stores row that goes)."""
    s.execute(text("DELETE FROM keyword_chunks WHERE store_id = :s"), {"s": store_id})
    s.execute(text("DELETE FROM keyword_backfill WHERE store_id = :s"), {"s": store_id})


def file_of(chunk_id: str) -> str:
    """The file of a chunk id made by store.chunk_id (`file_id#index`)."""
    return chunk_id.rpartition("#")[0] or chunk_id
