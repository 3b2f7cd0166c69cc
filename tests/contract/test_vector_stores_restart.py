"""Servers of their own: a server killed in the middle of indexing resumes the file after a restart (once
the dead holder's lease runs out: liveness is the lease only), and the Chroma server mode (`--chroma-url`,
`chroma run`) works end to end through the SDK."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.support import KEY_A, ServerProcess, free_port, wait_until

NO_KERNELS = ["--kernel-pool-size", "0"]


def sdk(proc: ServerProcess) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{proc.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=120)


def test_indexing_resumes_after_a_crash(tmp_path):
    data = tmp_path / "data"
    lease = ["--ingest-lease-seconds", "6"]
    first = ServerProcess(data, args=NO_KERNELS + lease)
    client = sdk(first)
    text = " ".join(
        f"Log line {i}: the night ferry departed from pier {i % 17} on schedule." for i in range(3000)
    )
    file = client.files.create(file=("ferry.txt", text.encode()), purpose="assistants")
    store = client.vector_stores.create(name="crash")
    strategy = {"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}}
    client.vector_stores.files.create(vector_store_id=store.id, file_id=file.id, chunking_strategy=strategy)
    time.sleep(2)
    assert client.vector_stores.files.retrieve(file.id, vector_store_id=store.id).status == "in_progress"
    first.proc.kill()  # no shutdown: the file is left in_progress, held by a dead process
    first.proc.wait()
    first.stop()

    second = ServerProcess(data, args=NO_KERNELS + lease)
    try:
        client = sdk(second)
        vs_file = client.vector_stores.files.poll(file.id, vector_store_id=store.id, poll_interval_ms=250)
        assert vs_file.status == "completed", vs_file
        assert client.vector_stores.retrieve(store.id).file_counts.in_progress == 0
        hits = client.vector_stores.search(store.id, query="night ferry pier", max_num_results=50).data
        assert len(hits) == 50 and hits[0].file_id == file.id
        # by the second server, after the lease ran out (logged just after the commit the poll saw)
        wait_until(lambda: "indexed 1 file(s)" in second.log(), "the second server's 'indexed 1 file(s)'")
    finally:
        second.stop()


@pytest.mark.skipif(
    shutil.which("chroma", path=str(Path(sys.executable).parent)) is None, reason="no chroma CLI"
)
def test_chroma_server_mode(tmp_path):
    port = free_port()
    chroma = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "chroma"),
            "run",
            "--path",
            str(tmp_path / "chroma"),
            "--port",
            str(port),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://localhost:{port}/api/v2/heartbeat", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        proc = ServerProcess(
            tmp_path / "data", env={"ASSISTD_CHROMA_URL": f"http://localhost:{port}"}, args=NO_KERNELS
        )
        try:
            client = sdk(proc)
            store = client.vector_stores.create(name="remote")
            batch = client.vector_stores.file_batches.upload_and_poll(
                store.id, files=[("whales.md", b"Blue whales sing at very low frequencies.")]
            )
            assert batch.file_counts.completed == 1
            assert client.vector_stores.search(store.id, query="whale song").data[0].filename == "whales.md"
            assert not (tmp_path / "data" / "chroma").exists()  # nothing embedded locally
            collections = httpx.get(
                f"http://localhost:{port}/api/v2/tenants/default_tenant/databases/default_database/collections"
            ).json()
            assert store.id in {c["name"] for c in collections}
        finally:
            proc.stop()
    finally:
        chroma.terminate()
        chroma.wait(timeout=20)
