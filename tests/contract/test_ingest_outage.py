"""Files attached while the Chroma server is down are retried, not failed: a real `chroma run` is stopped,
files are attached and the worker meets the outage, Chroma comes back on the same port and data, and the
files end `completed` and searchable."""

from __future__ import annotations

import time

import openai

from tests.chroma import ChromaProcess
from tests.support import KEY_A, ServerProcess


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_files_attached_while_chroma_is_down_complete_when_it_returns(tmp_path):
    chroma = ChromaProcess(tmp_path / "chroma")
    server = ServerProcess(
        tmp_path / "data",
        env={"ASSISTD_CHROMA_URL": chroma.url},
        args=["--kernel-pool-size", "0", "--ingest-retry-attempts", "12"],
    )
    try:
        client = openai.OpenAI(base_url=f"{server.base_url}/v1", api_key=KEY_A, max_retries=0, timeout=120)
        store = client.vector_stores.create(name="outage")
        warm = client.vector_stores.file_batches.upload_and_poll(  # the embedding model is loaded
            store.id, files=[("whales.md", b"Blue whales sing at very low frequencies.")]
        )
        assert warm.file_counts.completed == 1

        chroma.stop()
        texts = {
            "ferry.txt": "The night ferry leaves pier seven at midnight.",
            "orchard.txt": "The orchard grows quinces and medlars by the old wall.",
            "glacier.txt": "The glacier retreated four hundred metres in ten years.",
        }
        ids = [
            client.files.create(file=(name, body.encode()), purpose="assistants").id
            for name, body in texts.items()
        ]
        batch = client.vector_stores.file_batches.create(store.id, file_ids=ids)
        wait_for(lambda: "will be retried" in server.log(), 300, "the worker to meet the outage")
        during = client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
        assert during.file_counts.failed == 0 and during.file_counts.in_progress == 3

        chroma.start()

        def batch_done():
            got = client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
            return got.file_counts.in_progress == 0

        wait_for(batch_done, 600, "the files to be indexed after Chroma came back")
        done = client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=store.id)
        assert (done.file_counts.completed, done.file_counts.failed) == (3, 0), done
        for file_id in ids:
            vs_file = client.vector_stores.files.retrieve(file_id, vector_store_id=store.id)
            assert vs_file.status == "completed" and vs_file.last_error is None
        hits = client.vector_stores.search(store.id, query="night ferry pier midnight").data
        assert hits[0].filename == "ferry.txt"
    finally:
        server.stop()
        chroma.stop()
