"""Benchmark: file_search's keyword index in the database, and hybrid search, on SQLite and PostgreSQL.

1. Latency: stores of 10k and 100k synthetic chunks (about 60 words each, words drawn from a Zipf
   distribution over a 30k-word vocabulary, like natural text: a few words are in most chunks, most words in
   few). Queries are questions of three content words (one common, one mid-frequency, one rare) plus stop
   words. p50/p95 of
   - keyword: KeywordIndex.search (top 80, what the retriever asks for 20 results),
   - hybrid: HybridRetriever.search (Chroma nearest neighbours + keyword hits + fetching keyword-only hits
     from Chroma + fusion), with the query vector given (the embedding model's encode_query, a few ms on
     MiniLM, comes on top; it does not depend on the store).
   Vectors are random unit vectors inserted straight into an embedded Chroma (embedding 100k chunks would
   take far too long on a small CPU).
2. Memory per node (--memory): a `chroma run` server holds the vectors (the cluster setup); a fresh process
   (a "node") searches one store 200 times, then 50 stores (1k chunks each) in turn, 4 rounds; its RSS
   after each phase. The keyword index is in the database, so the node's memory must not grow with stores.

PostgreSQL: a throwaway cluster (tests/postgres.py, Debian's binaries). The machine's cores and load
average are printed with the numbers: on a loaded box p95 is mostly waiting for a CPU.

Usage: .venv/bin/python scripts/bench_search.py [--sizes 10000,100000] [--backends sqlite,postgres]
       [--queries 200] [--memory]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from sqlalchemy import text  # noqa: E402

from assistd.storage.db import Database  # noqa: E402
from assistd.tools.file_search.keywords import KeywordIndex  # noqa: E402
from assistd.tools.file_search.retrieval import HybridRetriever, Scope  # noqa: E402
from assistd.tools.file_search.store import ChunkStore, chunk_id  # noqa: E402

DIM = 384
PER_FILE = 1000
STOP = ["the", "of", "and", "to", "in", "is", "for", "on", "with", "that", "this", "what", "does", "how"]


class Corpus:
    """Synthetic text with a Zipf word distribution."""

    def __init__(self, seed: int = 1, vocabulary: int = 30_000) -> None:
        self.rng = random.Random(seed)
        syllables = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"]
        words: set[str] = set()
        while len(words) < vocabulary:
            words.add("".join(self.rng.choice(syllables) for _ in range(self.rng.randint(2, 4))))
        self.words = sorted(words)
        self.rng.shuffle(self.words)
        weights = 1.0 / np.arange(1, vocabulary + 1) ** 1.07
        self.cdf = np.cumsum(weights / weights.sum())
        self.np_rng = np.random.default_rng(seed)

    def chunk(self, n: int = 60) -> str:
        picks = np.searchsorted(self.cdf, self.np_rng.random(n))
        out = []
        for i, p in enumerate(picks):
            out.append(self.words[int(p)])
            if i % 4 == 3:
                out.append(self.rng.choice(STOP))
        return " ".join(out)

    def question(self) -> str:
        common = self.words[self.rng.randint(0, 50)]
        mid = self.words[self.rng.randint(200, 2000)]
        rare = self.words[self.rng.randint(5000, len(self.words) - 1)]
        return f"What does the report say about {common} and {mid} with {rare}?"


def unit_vectors(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    v /= np.linalg.norm(v, axis=1, keepdims=True)
    return v


def fill(
    keywords: KeywordIndex, chunks: ChunkStore, store_id: str, n: int, corpus: Corpus, seed: int
) -> dict[str, dict]:
    """`n` chunks in files of PER_FILE, in the keyword index and in Chroma (random vectors)."""
    texts = [corpus.chunk() for _ in range(n)]
    fill_keywords(keywords, store_id, texts)
    return fill_chroma(chunks, store_id, texts, seed)


class GivenVector:
    """The retriever's embedder: a fixed random query vector (the model's cost is not the store's)."""

    def __init__(self, seed: int = 3) -> None:
        self.vector = unit_vectors(np.random.default_rng(seed), 1)[0]

    def encode_query(self, text: str) -> np.ndarray:
        return self.vector


def percentile(values: list[float], q: int) -> float:
    ordered = sorted(values)
    if q == 50:
        return statistics.median(ordered)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def timed(fn, queries: list[str]) -> list[float]:
    out = []
    for q in queries:
        began = time.perf_counter()
        fn(q)
        out.append((time.perf_counter() - began) * 1000)
    return out


def machine() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{os.cpu_count()} cores, load average {one:.2f} {five:.2f} {fifteen:.2f}"


def open_database(backend: str, workdir: Path, name: str, pg) -> Database:
    if backend == "sqlite":
        db = Database(f"sqlite:///{workdir}/{name}.db")
    else:
        db = Database(pg.new_database(name))
    db.create_schema()
    return db


def latency(backends: list[str], sizes: list[int], queries: int, workdir: Path, pg) -> None:
    corpus = Corpus()
    questions = [corpus.question() for _ in range(queries)]
    for n in sizes:
        # One Chroma per size, the same chunks in every database.
        chunks = ChunkStore(workdir / f"chroma-{n}")
        texts = [corpus.chunk() for _ in range(n)]
        began = time.perf_counter()
        files = fill_chroma(chunks, "vs_bench", texts, seed=n)
        chroma_fill = time.perf_counter() - began
        for backend in backends:
            db = open_database(backend, workdir, f"lat{n}", pg)
            keywords = KeywordIndex(db)
            began = time.perf_counter()
            fill_keywords(keywords, "vs_bench", texts)
            keyword_fill = time.perf_counter() - began
            if db.is_postgres:  # the statistics autovacuum gathers after big inserts (steady state)
                with db.session() as s:
                    s.execute(text("ANALYZE keyword_chunks"))
            retriever = HybridRetriever(chunks, GivenVector(), keywords)  # type: ignore[arg-type]
            scope = Scope("vs_bench", files, {f: f"{f}.txt" for f in files}, complete=True, chunks=n)
            for q in questions[:5]:  # warm caches (both sides) before timing
                retriever.search([scope], q, 20)
            kw = timed(lambda q, k=keywords, n=n: k.search(["vs_bench"], q, 80, total=n), questions)
            hy = timed(lambda q, r=retriever, s=scope: r.search([s], q, 20), questions)
            hits = [len(keywords.search(["vs_bench"], q, 80, total=n)) for q in questions[:20]]
            print(
                f"  {backend:<8} {n:>7} chunks | keyword p50 {percentile(kw, 50):6.1f} ms p95 "
                f"{percentile(kw, 95):6.1f} ms | hybrid p50 {percentile(hy, 50):6.1f} ms p95 "
                f"{percentile(hy, 95):6.1f} ms | {queries} queries, keyword hits/query "
                f"~{statistics.mean(hits):.0f} | fill: keywords {keyword_fill:5.1f} s, Chroma "
                f"{chroma_fill:5.1f} s | {machine()}",
                flush=True,
            )
            db.dispose()


def fill_chroma(chunks: ChunkStore, store_id: str, texts: list[str], seed: int) -> dict[str, dict]:
    gen = np.random.default_rng(seed)
    files: dict[str, dict] = {}
    for start in range(0, len(texts), PER_FILE):
        part = texts[start : start + PER_FILE]
        file_id = f"file-{store_id}-{start // PER_FILE:05d}"
        files[file_id] = {}
        ids = [chunk_id(file_id, i) for i in range(len(part))]
        metas = [{"file_id": file_id, "filename": f"{file_id}.txt", "chunk": i} for i in range(len(part))]
        chunks.upsert(store_id, ids, unit_vectors(gen, len(part)), part, metas)
    return files


def fill_keywords(keywords: KeywordIndex, store_id: str, texts: list[str]) -> None:
    for start in range(0, len(texts), PER_FILE):
        part = texts[start : start + PER_FILE]
        file_id = f"file-{store_id}-{start // PER_FILE:05d}"
        keywords.add(store_id, file_id, [(chunk_id(file_id, i), t) for i, t in enumerate(part)])


# ---------------------------------------------------------------------------------------------- memory
NODE = r"""
import json, os, sys, time
sys.path.insert(0, os.path.join(sys.argv[1], "src"))
from assistd.storage.db import Database
from assistd.tools.file_search.keywords import KeywordIndex
from assistd.tools.file_search.retrieval import HybridRetriever, Scope
from assistd.tools.file_search.store import ChunkStore
sys.path.insert(0, os.path.join(sys.argv[1], "scripts"))
from bench_search import Corpus, GivenVector

def rss_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

spec = json.loads(sys.argv[2])
db = Database(spec["db"])
keywords = KeywordIndex(db)
retriever = HybridRetriever(ChunkStore(url=spec["chroma"]), GivenVector(), keywords)
corpus = Corpus(seed=9)
scopes = [
    Scope(s, {f: {} for f in files}, complete=True, chunks=spec["per_store"])
    for s, files in spec["stores"].items()
]
out = {"start": rss_mb()}
for _ in range(200):
    retriever.search(scopes[:1], corpus.question(), 20)
out["1 store"] = rss_mb()
for _ in range(4):
    for scope in scopes:
        retriever.search([scope], corpus.question(), 20)
out["50 stores"] = rss_mb()
print(json.dumps(out))
"""


def memory(backend: str, workdir: Path, pg, stores: int = 50, per_store: int = 1000) -> None:
    sys.path.insert(0, str(ROOT / "tests"))
    from tests.contract.test_ingest_outage import Chroma

    chroma = Chroma(workdir / f"chroma-server-{backend}")
    chroma.start()
    try:
        db = open_database(backend, workdir, "mem", pg)
        keywords, chunks, corpus = KeywordIndex(db), ChunkStore(url=chroma.url), Corpus(seed=5)
        spec = {"db": db.url, "chroma": chroma.url, "stores": {}, "per_store": per_store}
        began = time.perf_counter()
        for i in range(stores):
            store_id = f"vs_mem{i:03d}"
            spec["stores"][store_id] = list(fill(keywords, chunks, store_id, per_store, corpus, seed=i))
        filled = time.perf_counter() - began
        db.dispose()
        got = subprocess.run(
            [sys.executable, "-c", NODE, str(ROOT), json.dumps(spec)],
            capture_output=True,
            text=True,
            check=True,
        )
        rss = json.loads(got.stdout.strip().splitlines()[-1])
        print(
            f"  {backend:<8} node RSS: at start {rss['start']:6.1f} MB | after 200 searches of 1 store "
            f"{rss['1 store']:6.1f} MB | after 4 rounds over {stores} stores ({per_store} chunks each) "
            f"{rss['50 stores']:6.1f} MB | fill {filled:5.1f} s | {machine()}",
            flush=True,
        )
    finally:
        chroma.stop()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--memory", action="store_true", help="node RSS with 1 vs 50 stores (chroma run)")
    parser.add_argument("--no-latency", action="store_true")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # clean up (PostgreSQL, temp dir) when stopped
    backends = args.backends.split(",")
    sizes = [int(s) for s in args.sizes.split(",")]
    pg = None
    if "postgres" in backends:
        from tests.postgres import PostgresServer

        pg = PostgresServer()
    print(f"machine: {machine()}, {os.uname().machine}, Python {sys.version.split()[0]}")
    try:
        with tempfile.TemporaryDirectory(prefix="bench-search-") as tmp:
            workdir = Path(tmp)
            if not args.no_latency:
                latency(backends, sizes, args.queries, workdir, pg)
            if args.memory:
                for backend in backends:
                    memory(backend, workdir, pg)
    finally:
        if pg is not None:
            pg.close()


if __name__ == "__main__":
    main()
