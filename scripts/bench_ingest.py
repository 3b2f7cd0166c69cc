"""Benchmark: file_search ingestion and search, in one process, on all-MiniLM-L6-v2 and embedded Chroma.

1. Ingestion: synthetic text files go through the whole pipeline (batch create -> background worker ->
   extract -> chunk -> embed -> Chroma upsert -> database), timed from the batch call until
   `file_counts.in_progress == 0`. Then raw `SentenceTransformer.encode` on exactly the same chunk texts in
   the same process. Chunks/s of both; the ratio is our overhead. Run with static 200/50 chunking (chunks
   fit MiniLM's 256-token window, so both embed the same tokens) and with auto 800/400 (a chunk longer than
   the window is embedded as the mean of its windows: raw encode is given those windows).
2. Search latency (hybrid: Chroma HNSW + BM25, fused) on stores of 10k and 100k chunks, p50/p95 over many
   queries, each query embedded for real. Embedding 100k chunks would take far too long on a small CPU, so
   the bulk is synthetic text with precomputed random unit vectors inserted straight into Chroma; the
   first (cold) query, which builds the store's BM25 index, is reported separately.

With `--format docx` the files are uploaded as .docx (one paragraph each, the same text), so that every
file goes through the capped text extraction process (plain text is decoded in the server itself).

Usage: .venv/bin/python scripts/bench_ingest.py [--quick] [--format txt|docx]
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

import numpy as np  # noqa: E402

from assistd.protocol.vector_stores import FileBatchCreate, VectorStoreCreate  # noqa: E402
from assistd.services.files import FileService  # noqa: E402
from assistd.services.vector_stores import VectorStoreService  # noqa: E402
from assistd.storage.blobs import BlobStore  # noqa: E402
from assistd.storage.db import Database  # noqa: E402
from assistd.storage.vector_store_files import VectorStoreFileRow  # noqa: E402
from assistd.tools.file_search.chunking import ChunkingSpec, chunk_segments  # noqa: E402
from assistd.tools.file_search.embedding import Embedder  # noqa: E402
from assistd.tools.file_search.extract import Segment  # noqa: E402
from assistd.tools.file_search.store import ChunkStore, chunk_id  # noqa: E402

TOPICS = [
    "river",
    "harbour",
    "engine",
    "orchard",
    "ledger",
    "glacier",
    "turbine",
    "library",
    "vaccine",
    "satellite",
]


def vocabulary(size: int, rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return ["".join(rng.choice(letters) for _ in range(rng.randint(3, 9))) for _ in range(size)]


def document(rng: random.Random, words: list[str], n_words: int) -> str:
    topic = rng.choice(TOPICS)
    sentences = []
    while sum(len(s.split()) for s in sentences) < n_words:
        body = " ".join(rng.choice(words) for _ in range(rng.randint(8, 16)))
        sentences.append(f"The {topic} report notes {body}.")
    return " ".join(sentences)


def build_service(tmp: Path, embedder: Embedder) -> tuple[VectorStoreService, FileService]:
    db = Database(f"sqlite:///{tmp / 'bench.db'}")
    db.create_schema()
    blobs = BlobStore(tmp / "files")
    files = FileService(db, blobs, 10**9)
    svc = VectorStoreService(db, blobs, ChunkStore(tmp / "chroma"), embedder, "bench:0:0")
    svc.worker.poll_seconds = 0.05
    svc.start()
    return svc, files


def windows_of(embedder: Embedder, texts: list[str]) -> list[str]:
    """What `encode_documents` feeds the model: the text, or its model-sized windows."""
    out = []
    width = embedder.window_tokens
    for text in texts:
        spans = embedder.tokenizer.offsets(text)
        if len(spans) <= width:
            out.append(text)
            continue
        for start in range(0, len(spans), width):
            out.append(text[spans[start][0] : spans[min(start + width, len(spans)) - 1][1]])
    return out


def as_docx(text: str) -> bytes:
    from docx import Document

    doc = Document()
    doc.add_paragraph(text)
    out = io.BytesIO()
    doc.save(out)
    return out.getvalue()


def bench_ingest(
    svc: VectorStoreService,
    files: FileService,
    docs: list[str],
    spec: dict | None,
    label: str,
    quiet: bool = False,
    fmt: str = "txt",
) -> None:
    ids = [
        files.upload(
            "bench", f"doc{i}.{fmt}", "assistants", io.BytesIO(as_docx(d) if fmt == "docx" else d.encode())
        ).id
        for i, d in enumerate(docs)
    ]
    store = svc.create("bench", VectorStoreCreate.parse({"name": label}))
    request = {"file_ids": ids}
    if spec:
        request["chunking_strategy"] = spec
    started = time.perf_counter()
    svc.files.create_batch("bench", store.id, FileBatchCreate.parse(request))
    while svc.get("bench", store.id).file_counts.in_progress:
        time.sleep(0.02)
    elapsed = time.perf_counter() - started
    counts = svc.get("bench", store.id).file_counts
    assert counts.completed == len(docs), counts
    chunking = ChunkingSpec.from_wire(spec) if spec else ChunkingSpec()
    texts = [c.text for d in docs for c in chunk_segments([Segment(d)], svc.embedder.tokenizer, chunking)]
    assert len(texts) == svc.chunks.count(store.id), (len(texts), svc.chunks.count(store.id))
    model_inputs = windows_of(svc.embedder, texts)
    started = time.perf_counter()
    svc.embedder.model.encode(model_inputs, batch_size=svc.embedder.batch_size, normalize_embeddings=True)
    raw = time.perf_counter() - started
    ours, theirs = len(texts) / elapsed, len(texts) / raw
    if quiet:
        return
    print(
        f"  {label:<22} {len(docs):>4} files {len(texts):>6} chunks ({len(model_inputs)} model inputs): "
        f"pipeline {ours:7.1f} chunks/s | raw encode {theirs:7.1f} chunks/s | "
        f"pipeline/raw {ours / theirs:.2f} (goal >= 0.90) | load average {load_average()}"
    )


def fill_store(svc: VectorStoreService, n_chunks: int, words: list[str], rng: random.Random) -> str:
    """A store of `n_chunks` synthetic chunks (about 60 words each) with random unit vectors, in files of
    1000 chunks, written to Chroma 5000 at a time."""
    per_file, per_write = 1000, 5000
    with svc.db.session() as s:
        store = svc.create_in(s, "bench", f"synthetic-{n_chunks}")
        store_id = store.id
    dim = svc.embedder.dimension
    gen = np.random.default_rng(7)
    for start in range(0, n_chunks, per_write):
        count = min(per_write, n_chunks - start)
        vectors = gen.standard_normal((count, dim)).astype(np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        owners = [f"file-bench{n_chunks}x{(start + i) // per_file:05d}" for i in range(count)]
        ids = [chunk_id(owner, (start + i) % per_file) for i, owner in enumerate(owners)]
        texts = [document(rng, words, 60) for _ in range(count)]
        metas = [
            {"file_id": owner, "filename": f"{owner}.txt", "chunk": (start + i) % per_file}
            for i, owner in enumerate(owners)
        ]
        svc.chunks.add_raw(store_id, ids, vectors, texts, metas)
    with svc.db.session() as s:
        for f in range(0, n_chunks, per_file):
            file_id = f"file-bench{n_chunks}x{f // per_file:05d}"
            s.add(
                VectorStoreFileRow(
                    vector_store_id=store_id,
                    id=file_id,
                    project="bench",
                    created_at=int(time.time()),
                    filename=f"{file_id}.txt",
                    status="completed",
                    chunk_count=min(per_file, n_chunks - f),
                )
            )
    return store_id


def bench_search(svc: VectorStoreService, n_chunks: int, queries: int, words: list[str], rng: random.Random):
    started = time.perf_counter()
    store_id = fill_store(svc, n_chunks, words, rng)
    filled = time.perf_counter() - started
    questions = [
        f"What does the {rng.choice(TOPICS)} report say about {rng.choice(words)} {rng.choice(words)}?"
        for _ in range(queries + 1)
    ]
    started = time.perf_counter()
    svc.search("bench", [store_id], questions[0], max_num_results=20)
    cold = time.perf_counter() - started
    latencies, embedding = [], []
    encode_query = svc.embedder.encode_query

    def timed_encode(text: str) -> np.ndarray:
        began = time.perf_counter()
        try:
            return encode_query(text)
        finally:
            embedding.append((time.perf_counter() - began) * 1000)

    svc.embedder.encode_query = timed_encode  # type: ignore[method-assign]
    try:
        for question in questions[1:]:
            started = time.perf_counter()
            hits = svc.search("bench", [store_id], question, max_num_results=20)
            latencies.append((time.perf_counter() - started) * 1000)
            assert hits
    finally:
        svc.embedder.encode_query = encode_query  # type: ignore[method-assign]
    retrieval = [total - emb for total, emb in zip(latencies, embedding, strict=True)]
    print(
        f"  {n_chunks:>7} chunks: p50 {percentile(latencies, 50):6.1f} ms  "
        f"p95 {percentile(latencies, 95):6.1f} ms"
        f"  | without the query embedding: p50 {percentile(retrieval, 50):6.1f} ms  "
        f"p95 {percentile(retrieval, 95):6.1f} ms  ({queries} queries, top 20; first query incl. BM25 build "
        f"{cold:4.1f} s; fill {filled:5.1f} s)"
    )


def load_average() -> str:
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} {five:.2f} {fifteen:.2f}"


def percentile(values: list[float], q: int) -> float:
    ordered = sorted(values)
    if q == 50:
        return statistics.median(ordered)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="smaller sizes (1k and 10k chunks, fewer files)")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--small-files", type=int, default=100, help="files of about 2 chunks each")
    parser.add_argument("--no-search", action="store_true", help="ingestion only")
    parser.add_argument(
        "--format", choices=("txt", "docx"), default="txt", help="format of the ingested files"
    )
    args = parser.parse_args()
    rng = random.Random(1)
    words = vocabulary(5000, rng)
    n_docs = 8 if args.quick else 16
    sizes = [1_000, 10_000] if args.quick else [10_000, 100_000]
    import platform

    import torch

    print(
        f"assistd file_search bench: {platform.node()} {platform.machine()}, {os.cpu_count()} CPU cores, "
        f"torch threads {torch.get_num_threads()}, cuda {torch.cuda.is_available()}, "
        f"load average {load_average()}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        embedder = Embedder()
        started = time.perf_counter()
        embedder.model  # noqa: B018  (load before timing)
        print(f"embedding model loaded in {time.perf_counter() - started:.1f} s ({embedder.model_path.name})")
        svc, files = build_service(Path(tmp), embedder)
        try:
            docs = [document(rng, words, 400) for _ in range(n_docs)]
            # one small file first: Chroma's client, the tokenizer and the worker are warm before timing
            fmt = args.format
            bench_ingest(svc, files, [document(rng, words, 50)], None, "warm-up", quiet=True, fmt=fmt)
            print("ingestion (whole pipeline vs raw SentenceTransformer.encode on the same chunks):")
            bench_ingest(
                svc,
                files,
                docs[: n_docs // 2],
                {"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50}},
                f"static 200/50 ({fmt})",
                fmt=fmt,
            )
            bench_ingest(svc, files, docs[n_docs // 2 :], None, f"auto 800/400 ({fmt})", fmt=fmt)
            small = [document(rng, words, 250) for _ in range(args.small_files)]
            static = {"type": "static", "static": {"max_chunk_size_tokens": 200, "chunk_overlap_tokens": 50}}
            bench_ingest(svc, files, small, static, f"small files ({fmt})", fmt=fmt)
            if args.no_search:
                return
            print("search latency (hybrid, random unit vectors + synthetic text for the bulk):")
            for size in sizes:
                bench_search(svc, size, args.queries, words, rng)
        finally:
            svc.close()


if __name__ == "__main__":
    main()
