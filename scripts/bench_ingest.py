"""Benchmark: file_search ingestion and search, in one process, on all-MiniLM-L6-v2 and embedded Chroma.

1. Ingestion: synthetic text files go through the whole pipeline (batch create -> background worker, which
   claims files in batches -> extract -> chunk -> embed the batch's chunks together -> Chroma upserts ->
   keyword index -> database), timed from the batch call until `file_counts.in_progress == 0`, between two
   raw `SentenceTransformer.encode` runs on exactly the same chunk texts in the same process (their mean is
   the reference). Chunks/s of both; pipeline/raw is the share of raw speed we keep (goal >= 0.9). Run with
   static 200/50 chunking (chunks fit MiniLM's 256-token window, so both embed the same tokens), with auto
   800/400 (a chunk longer than the window is embedded as the mean of its windows: raw encode is given
   those windows) and with many small files of about two chunks each (the per-file cost).
   `--workers N`: one batch of small files indexed by 1 worker process with all cores, then by N worker
   processes with cores/N torch threads each, on one SQLite database and one `chroma run`: chunks/s and
   each worker's share (they claim slices of the batch).
2. Search latency (hybrid: Chroma HNSW + BM25, fused) on stores of 10k and 100k chunks, p50/p95 over many
   queries, each query embedded for real. Embedding 100k chunks would take far too long on a small CPU, so
   the bulk is synthetic text with precomputed random unit vectors inserted straight into Chroma; the
   first (cold) query, which builds the store's BM25 index, is reported separately.

With `--format docx` the files are uploaded as .docx (one paragraph each, the same text), so that every
file goes through the capped text extraction process (plain text is decoded in the server itself).

The machine (cores, torch threads) and the load average are printed: on a shared box the load moves the
wall-clock numbers more than anything measured here, so the CPU seconds of the process (all its threads:
the worker's and the model's) are printed too; raw/pipeline CPU is the same ratio, less sensitive to load.

Usage: .venv/bin/python scripts/bench_ingest.py [--quick] [--format txt|docx] [--no-search] [--workers 2]
"""

from __future__ import annotations

import argparse
import io
import os
import random
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


def raw_encode_seconds(embedder: Embedder, model_inputs: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds (all threads of this process) of raw encode."""
    started, cpu = time.perf_counter(), time.process_time()
    embedder.model.encode(model_inputs, batch_size=embedder.batch_size, normalize_embeddings=True)
    return time.perf_counter() - started, time.process_time() - cpu


def chunk_texts(embedder: Embedder, docs: list[str], spec: dict | None) -> list[str]:
    chunking = ChunkingSpec.from_wire(spec) if spec else ChunkingSpec()
    return [c.text for d in docs for c in chunk_segments([Segment(d)], embedder.tokenizer, chunking)]


def bench_ingest(
    svc: VectorStoreService,
    files: FileService,
    docs: list[str],
    spec: dict | None,
    label: str,
    quiet: bool = False,
    fmt: str = "txt",
) -> None:
    """The pipeline timed between two raw encodes of the same chunks (their mean is the reference, so a
    change of load during the run weighs on both sides alike)."""
    ids = [
        files.upload(
            "bench", f"doc{i}.{fmt}", "assistants", io.BytesIO(as_docx(d) if fmt == "docx" else d.encode())
        ).id
        for i, d in enumerate(docs)
    ]
    texts = chunk_texts(svc.embedder, docs, spec)
    model_inputs = windows_of(svc.embedder, texts)
    raw_before, raw_cpu_before = (0.0, 0.0) if quiet else raw_encode_seconds(svc.embedder, model_inputs)
    store = svc.create("bench", VectorStoreCreate.parse({"name": label}))
    request = {"file_ids": ids}
    if spec:
        request["chunking_strategy"] = spec
    finished: list[tuple[float, float]] = []  # (wall, CPU) when each batch of files was recorded
    complete = svc.worker.queue.complete

    def timed_complete(*args, **kwargs):
        kept = complete(*args, **kwargs)
        finished.append((time.perf_counter(), time.process_time()))
        return kept

    svc.worker.queue.complete = timed_complete  # type: ignore[method-assign]
    started, cpu = time.perf_counter(), time.process_time()
    try:
        svc.files.create_batch("bench", store.id, FileBatchCreate.parse(request))
        while svc.get("bench", store.id).file_counts.in_progress:
            time.sleep(0.5)  # the end is taken from the worker's last record, not from this loop
    finally:
        svc.worker.queue.complete = complete  # type: ignore[method-assign]
    elapsed, ours_cpu = max(finished)[0] - started, max(finished)[1] - cpu
    counts = svc.get("bench", store.id).file_counts
    assert counts.completed == len(docs), counts
    assert len(texts) == svc.chunks.count(store.id), (len(texts), svc.chunks.count(store.id))
    if quiet:
        return
    raw_after, raw_cpu_after = raw_encode_seconds(svc.embedder, model_inputs)
    raw, raw_cpu = (raw_before + raw_after) / 2, (raw_cpu_before + raw_cpu_after) / 2
    ours, theirs = len(texts) / elapsed, len(texts) / raw
    print(
        f"  {label:<22} {len(docs):>4} files {len(texts):>6} chunks ({len(model_inputs)} model inputs): "
        f"pipeline {ours:7.1f} chunks/s | raw encode {theirs:7.1f} chunks/s "
        f"(before {len(texts) / raw_before:.1f}, after {len(texts) / raw_after:.1f}) | "
        f"pipeline/raw {ours / theirs:.2f} (goal >= 0.90) | CPU s: pipeline {ours_cpu:.1f}, "
        f"raw {raw_cpu:.1f}, raw/pipeline {raw_cpu / ours_cpu:.2f} | load average {load_average()}"
    )


def worker_process(db_url: str, chroma_url: str, files_dir: str, name: str, threads: int) -> None:
    """One indexing worker in a process of its own (`--worker-process`), until its stdin closes."""
    import torch

    torch.set_num_threads(threads)
    db = Database(db_url)
    embedder = Embedder()
    embedder.model  # noqa: B018  (loaded before the clock starts)
    svc = VectorStoreService(db, BlobStore(Path(files_dir)), ChunkStore(url=chroma_url), embedder, name)
    svc.worker.poll_seconds = 0.5  # the batch is made in another process: no local wake-up
    svc.start()
    print("ready", flush=True)
    sys.stdin.read()
    svc.close()


def start_chroma(path: Path) -> tuple[subprocess.Popen, str]:
    import httpx

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    chroma = Path(sys.executable).parent / "chroma"
    cmd = [str(chroma), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v2/heartbeat", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError("chroma run did not start")


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_workers(
    tmp: Path, chroma_url: str, embedder: Embedder, docs: list[str], spec: dict, workers: int, threads: int
) -> None:
    """`workers` processes of `threads` torch threads each index one batch of `docs` together (one SQLite
    database, one `chroma run`); chunks/s from the batch call until no file is in progress, and each
    worker's share of the files."""
    from sqlalchemy import func
    from sqlmodel import select

    run = tmp / f"workers-{workers}x{threads}"
    run.mkdir()
    db = Database(f"sqlite:///{run / 'bench.db'}")
    db.create_schema()
    blobs = BlobStore(run / "files")
    files = FileService(db, blobs, 10**9)
    svc = VectorStoreService(db, blobs, ChunkStore(url=chroma_url), embedder, "bench-main")  # never started
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                __file__,
                "--worker-process",
                db.url,
                chroma_url,
                str(run / "files"),
                f"w{i}",
                str(threads),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(workers)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        ids = [
            files.upload("bench", f"doc{i}.txt", "assistants", io.BytesIO(d.encode())).id
            for i, d in enumerate(docs)
        ]
        store = svc.create("bench", VectorStoreCreate.parse({"name": "workers"}))
        started = time.perf_counter()
        svc.files.create_batch(
            "bench", store.id, FileBatchCreate.parse({"file_ids": ids, "chunking_strategy": spec})
        )
        while svc.get("bench", store.id).file_counts.in_progress:
            time.sleep(0.1)
        elapsed = time.perf_counter() - started
        assert svc.get("bench", store.id).file_counts.completed == len(docs)
        T = VectorStoreFileRow
        with db.session() as s:
            shares = s.exec(
                select(T.worker_id, func.count(), func.sum(T.chunk_count))
                .where(T.vector_store_id == store.id)
                .group_by(T.worker_id)
            ).all()
        chunks = sum(int(n) for _, _, n in shares)
        split = ", ".join(f"{w}: {n} files {c} chunks" for w, n, c in sorted(shares))
        print(
            f"  {workers} worker process(es) x {threads} torch thread(s): {len(docs)} files {chunks} chunks "
            f"in {elapsed:.1f} s = {chunks / elapsed:.1f} chunks/s ({split}) | load average {load_average()}"
        )
    finally:
        for proc in procs:
            if proc.stdin:
                proc.stdin.close()
        for proc in procs:
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


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
        "--workers",
        type=int,
        default=0,
        help="also index one batch of small files by 1 worker process (all cores) and by N worker processes "
        "(cores/N torch threads each) on one database and one `chroma run`",
    )
    parser.add_argument("--worker-process", nargs=5, help=argparse.SUPPRESS)
    parser.add_argument(
        "--format", choices=("txt", "docx"), default="txt", help="format of the ingested files"
    )
    args = parser.parse_args()
    if args.worker_process:
        db_url, chroma_url, files_dir, name, threads = args.worker_process
        worker_process(db_url, chroma_url, files_dir, name, int(threads))
        return
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
            if args.workers:
                cores = os.cpu_count() or 1
                proc, chroma_url = start_chroma(Path(tmp) / "chroma-server")
                try:
                    print(f"worker processes on one batch of {len(small)} small files (static 200/50):")
                    spread = [document(rng, words, 250) for _ in range(len(small))]
                    bench_workers(Path(tmp), chroma_url, svc.embedder, spread, static, 1, cores)
                    threads = max(1, cores // args.workers)
                    bench_workers(Path(tmp), chroma_url, svc.embedder, spread, static, args.workers, threads)
                finally:
                    proc.terminate()
                    proc.wait(timeout=30)
            if args.no_search:
                return
            print("search latency (hybrid, random unit vectors + synthetic text for the bulk):")
            for size in sizes:
                bench_search(svc, size, args.queries, words, rng)
        finally:
            svc.close()


if __name__ == "__main__":
    main()
